"""Structural diffs, their rendering, and the per-object version history they are computed from."""

from __future__ import annotations

import pytest

from kelemetry.diff import compute
from kelemetry.diff.history import BodyHistory
from kelemetry.diff.redact import Redacted
from kelemetry.model.diffs import Diff
from kelemetry.model.objects import ObjectKey


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            {"spec": {"replicas": 2}}, {"spec": {"replicas": 4}}, [Diff("spec.replicas", 2, 4)], id="scalar"
        ),
        pytest.param({}, {"a": {"b": 1}}, [Diff("a", None, {"b": 1})], id="added-map"),
        pytest.param({"a": 1}, {}, [Diff("a", 1, None)], id="removed"),
        pytest.param(
            {"metadata": {"labels": {"app.kubernetes.io/name": "x"}}},
            {"metadata": {"labels": {"app.kubernetes.io/name": "y"}}},
            [Diff('metadata.labels["app.kubernetes.io/name"]', "x", "y")],
            id="quoted-key",
        ),
        pytest.param(
            {"c": [1, 2]}, {"c": [1, 3, 4]}, [Diff("c[1]", 2, 3), Diff("c[2]", None, 4)], id="list-by-index"
        ),
        pytest.param(True, 1, [Diff("", True, 1)], id="bool-vs-int"),
        pytest.param(1, 1.0, [Diff("", 1, 1.0)], id="int-vs-float"),
        pytest.param({"x": [1]}, {"x": [1]}, [], id="equal"),
        pytest.param({"k": {'q"uote': 1}}, {"k": {'q"uote': 2}}, [Diff('k["q\\"uote"]', 1, 2)], id="escaped"),
    ],
)
def test_compute(old: object, new: object, expected: list[Diff]) -> None:
    assert compute.compute(old, new) == expected


def test_render_lines_and_abbreviation() -> None:
    diffs = [Diff("status.observedGeneration", 1, 2), Diff("a", None, "x" * 500), Diff("s", "v", None)]
    lines = compute.render(diffs).split("\n")
    assert lines[0] == "status.observedGeneration 1 -> 2"
    assert lines[1].startswith('a null -> "xxx') and lines[1].endswith("...(502 chars)")
    assert lines[2] == 's "v" -> null'


def test_redacted_values_render_as_a_marker() -> None:
    old, new = Redacted.of("hunter2"), Redacted.of("hunter3")
    assert compute.render(compute.compute({"data": {"p": old}}, {"data": {"p": new}})) == (
        "data.p <redacted> -> <redacted>"
    )
    assert compute.compute({"data": {"p": old}}, {"data": {"p": Redacted.of("hunter2")}}) == []
    assert compute.snapshot({"data": {"p": old}}) == '{"data":{"p":"<redacted>"}}'
    assert compute.render([Diff("data", None, {"p": old})]) == 'data null -> {"p":"<redacted>"}'


def _key(name: str) -> ObjectKey:
    return ObjectKey("c", "apps", "deployments", "default", name)


def test_history_finds_the_version_before_even_on_redelivery() -> None:
    history = BodyHistory()
    history.put(_key("a"), "10", {"v": 1})
    history.put(_key("a"), "12", {"v": 2})
    assert history.previous(_key("a"), "12") == ("10", {"v": 1})
    assert history.previous(_key("a"), "12") == ("10", {"v": 1})  # the same event again
    assert history.previous(_key("a"), "11") == ("10", {"v": 1})
    assert history.previous(_key("a"), "10") is None
    assert history.latest(_key("a")) == ("12", {"v": 2})
    history.put(_key("a"), "9", {"v": 0})  # late arrival is placed by version, not by arrival
    assert history.previous(_key("a"), "10") == ("9", {"v": 0})


def test_history_is_bounded() -> None:
    history = BodyHistory(max_objects=2)
    for name in ("a", "b", "c"):
        history.put(_key(name), "1", {})
    assert len(history) == 2 and history.latest(_key("a")) is None
    for rv in range(10):
        history.put(_key("c"), str(rv + 2), {"rv": rv})
    assert history.previous(_key("c"), "3") is None  # only the last few versions are kept
