"""Diff lines read back from spans (frontend.spanfacts): paths with quoted keys, values that hold the
arrow or were abbreviated, and requests in the shared answer shape."""

from __future__ import annotations

import pytest

from frontend import spanfacts
from kelemetry.diff import compute
from tests.frontend.spantrees import obj, us


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param({"a b": "x -> y"}, {"a b": "z"}, id="quoted-key-and-arrow-in-a-value"),
        pytest.param({"spec": {"replicas": 2}}, {"spec": {"replicas": 4}}, id="number"),
        pytest.param({"m": None}, {"m": {"k": "v"}}, id="null-to-object"),
        pytest.param({"s": "a -> b"}, {"s": "c -> d"}, id="arrows-on-both-sides"),
    ],
)
def test_every_rendered_line_splits_back_into_its_path_and_values(old: object, new: object) -> None:
    diffs = compute.compute(old, new)
    for diff, line in zip(diffs, compute.render(diffs).splitlines(), strict=True):
        parsed = spanfacts.parse_line(line)
        assert parsed is not None and parsed.path == diff.path
        assert parsed.new_value() == diff.new and parsed.text == line
        assert parsed.old_value() == diff.old


def test_an_abbreviated_value_is_kept_as_text_and_not_decoded() -> None:
    diffs = compute.compute({"c": None}, {"c": {"message": "x" * 500, "reason": "R"}})
    parsed = spanfacts.parse_line(compute.render(diffs))
    assert parsed is not None and parsed.path == "c" and parsed.old == "null"
    assert parsed.new.endswith("chars)") and parsed.new_value() is None


def test_a_line_without_an_arrow_is_no_diff_line() -> None:
    assert spanfacts.parse_line("No-op update") is None
    assert spanfacts.parse_line("") is None


def test_a_request_in_the_shared_shape() -> None:
    deployment = obj("deployments", "web").request(
        3.5, "patch", "spec.replicas 2 -> 4", user="admin", subresource="scale"
    )
    span = deployment.node.children[0].span
    request = spanfacts.request_json(span)
    assert request["time"] == spanfacts.format_time(us(3.5)) and request["time"].endswith(".500Z")
    assert (request["user"], request["verb"], request["subresource"], request["code"]) == (
        "admin",
        "patch",
        "scale",
        200,
    )
    assert len(request["span_id"]) == 16 and len(request["trace_id"]) == 32
    assert spanfacts.actor(span) == "admin (kubectl) patch/scale"
