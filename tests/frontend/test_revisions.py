"""frontend.revisions, the pure part of the object at a moment: which version is in effect, the
manifest of a deletion or a reconstructed version, and the line diffs (side by side and unified)."""

from __future__ import annotations

import pytest

from frontend import revisions
from kelemetry import errors
from kelemetry.model.versions import DELETED_RV, ObjectVersion


def v(rv: str, time_us: int, **fields: object) -> ObjectVersion:
    return ObjectVersion(1, "u", rv, time_us, "audit", **fields)  # type: ignore[arg-type]


VERSIONS = [
    v("10", 100, verb="create", user="admin"),
    v("11", 200, complete=False, verb="patch scale"),
    v(DELETED_RV, 300, deleted=True, user="admin"),
]
BODIES = {
    "10": {"kind": "Deployment", "metadata": {"name": "d", "resourceVersion": "10"}, "spec": {"replicas": 2}},
    "11": {"kind": "Deployment", "metadata": {"name": "d", "resourceVersion": "10"}, "spec": {"replicas": 4}},
}


@pytest.mark.parametrize(
    ("at", "rv"), [(100, "10"), (199, "10"), (200, "11"), (299, "11"), (10**18, DELETED_RV)]
)
def test_the_version_in_effect_is_the_last_one_at_or_before_the_moment(at: int, rv: str) -> None:
    assert revisions.in_effect(VERSIONS, at, "d").resource_version == rv


def test_before_the_first_version_says_when_the_first_is() -> None:
    first = r"the first known is rv 10 at 1970-01-01T00:00:00.000100Z by admin \(create\)"
    with pytest.raises(
        errors.NotFound, match=r"no version of d is known at 1970-01-01T00:00:00.000099Z; " + first
    ):
        revisions.in_effect(VERSIONS, 99, "d")
    with pytest.raises(errors.NotFound, match="no version of d is stored"):
        revisions.in_effect([], 99, "d")


def test_a_deletion_shows_the_last_state_and_says_so() -> None:
    shown = revisions.manifest(VERSIONS, VERSIONS[2], BODIES.get)
    assert shown.body == {**BODIES["11"], "metadata": {"name": "d", "resourceVersion": "10"}}
    assert shown.notes[0] == "deleted at 1970-01-01T00:00:00.000300Z by admin"
    assert shown.notes[1].startswith("its last known state: rv 11 at")


def test_a_reconstructed_version_carries_its_own_resource_version_and_a_note() -> None:
    shown = revisions.manifest(VERSIONS, VERSIONS[1], BODIES.get)
    assert shown.body["metadata"]["resourceVersion"] == "11" and shown.body["spec"]["replicas"] == 4
    assert BODIES["11"]["metadata"]["resourceVersion"] == "10"  # the stored body is not changed
    assert "reconstructed" in shown.notes[0]


def test_neighbours() -> None:
    assert revisions.neighbours(VERSIONS, VERSIONS[1]) == ("10", DELETED_RV)
    assert revisions.neighbours(VERSIONS, VERSIONS[0]) == (None, "11")


def test_side_by_side_pairs_changes_and_leaves_gaps_for_lines_one_side_has() -> None:
    rows = revisions.side_by_side("a\nb\nc\nd\n", "a\nB\nc\nd\ne\n")
    assert [(r.kind, r.left_no, r.left, r.right_no, r.right) for r in rows] == [
        ("same", 1, "a", 1, "a"),
        ("changed", 2, "b", 2, "B"),
        ("same", 3, "c", 3, "c"),
        ("same", 4, "d", 4, "d"),
        ("added", None, None, 5, "e"),
    ]
    removed = revisions.side_by_side("a\nb\n", "a\n")
    assert removed[-1] == revisions.DiffRow("removed", 2, "b", None, None)


def test_changed_only_keeps_context_and_marks_what_it_left_out() -> None:
    left = "\n".join(str(i) for i in range(20))
    right = left.replace("10", "ten")
    kept = revisions.changed_only(revisions.side_by_side(left, right), context=2)
    assert kept[0] is None and [r.left for r in kept[1:] if r is not None] == ["8", "9", "10", "11", "12"]
    assert kept[-1] is None


def test_columns_fit_the_width_and_use_sdiff_marks() -> None:
    rows = revisions.side_by_side("x: 1\nlong: " + "y" * 200 + "\n", "x: 2\n")
    text = revisions.render_columns(rows, 60)
    lines = text.splitlines()
    assert lines[0].startswith("x: 1") and " | x: 2" in lines[0]
    assert " <" in lines[1] and all(len(line) <= 60 for line in lines)


def test_yaml_keeps_the_apiserver_order_and_long_values_on_one_line() -> None:
    text = revisions.to_yaml({"kind": "K", "apiVersion": "v1", "data": {"k": "z" * 300}})
    assert text.splitlines()[:2] == ["kind: K", "apiVersion: v1"] and len(text.splitlines()) == 4
    assert revisions.to_yaml(None) == ""
