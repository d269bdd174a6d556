"""Structural diffs, their rendering, and the per-object version history they are computed from.

Keyed list diffs are covered here case by case and against the recorded Deployment sample; which
list takes which key is `test_mergekeys`' business.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from kelemetry.diff import compute
from kelemetry.diff.history import BodyHistory, Version
from kelemetry.diff.redact import Redactor
from kelemetry.model.diffs import Diff, Segment
from kelemetry.model.objects import ObjectKey

DEPLOYMENT_LOG = Path(__file__).resolve().parents[3] / "samples" / "deployment" / "audit.log"

# An independent reading of the path grammar, so a test fails if a rendered path is ambiguous or
# disagrees with its segments.
_STEP = re.compile(
    r"""(?P<dot>\.)?(?P<ident>\w+)
    | \[(?P<index>\d+)\]
    | \["(?P<key>(?:[^"\\]|\\.)*)"\]
    | \[(?P<field>\w+)=(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<plain>[^\[\]="\\\s]+))\]""",
    re.VERBOSE,
)


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_path(path: str) -> tuple[Segment, ...]:
    steps: list[Segment] = []
    pos = 0
    while pos < len(path):
        m = _STEP.match(path, pos)
        assert m is not None, f"cannot read {path!r} at {pos}"
        if m["ident"] is not None:
            assert (m["dot"] is not None) == (pos > 0), f"misplaced dot in {path!r}"
            steps.append(m["ident"])
        elif m["index"] is not None:
            steps.append(int(m["index"]))
        elif m["key"] is not None:
            steps.append(_unescape(m["key"]))
        else:
            value = m["plain"] if m["plain"] is not None else _unescape(m["quoted"])
            steps.append((m["field"], value))
        pos = m.end()
    return tuple(steps)


def _cond(type_: str, status: str, at: str = "2026-11-23T07:23:30Z", reason: str = "R") -> dict[str, Any]:
    return {"type": type_, "status": status, "lastTransitionTime": at, "lastUpdateTime": at, "reason": reason}


def _pod_spec(containers: list[dict[str, Any]]) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"containers": containers}}}}


_C = ("spec", "template", "spec", "containers")
_AVAILABLE = ("status", "conditions", ("type", "Available"))
_INTERNAL = {"type": "InternalIP", "address": "10.0.0.1"}


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            {"spec": {"replicas": 2}},
            {"spec": {"replicas": 4}},
            [Diff("spec.replicas", 2, 4, ("spec", "replicas"))],
            id="scalar",
        ),
        pytest.param({}, {"a": {"b": 1}}, [Diff("a", None, {"b": 1}, ("a",))], id="added-map"),
        pytest.param({"a": 1}, {}, [Diff("a", 1, None, ("a",))], id="removed"),
        pytest.param(
            {"metadata": {"labels": {"app.kubernetes.io/name": "x"}}},
            {"metadata": {"labels": {"app.kubernetes.io/name": "y"}}},
            [
                Diff(
                    'metadata.labels["app.kubernetes.io/name"]',
                    "x",
                    "y",
                    ("metadata", "labels", "app.kubernetes.io/name"),
                )
            ],
            id="quoted-key",
        ),
        pytest.param(
            {"c": [1, 2]},
            {"c": [1, 3, 4]},
            [Diff("c[1]", 2, 3, ("c", 1)), Diff("c[2]", None, 4, ("c", 2))],
            id="scalar-list-by-position",
        ),
        pytest.param(True, 1, [Diff("", True, 1)], id="bool-vs-int"),
        pytest.param(1, 1.0, [Diff("", 1, 1.0)], id="int-vs-float"),
        pytest.param({"x": [1]}, {"x": [1]}, [], id="equal"),
        pytest.param(
            {"k": {'q"uote': 1}},
            {"k": {'q"uote': 2}},
            [Diff('k["q\\"uote"]', 1, 2, ("k", 'q"uote'))],
            id="escaped",
        ),
        pytest.param({"k": {"": 1}}, {"k": {"": 2}}, [Diff('k[""]', 1, 2, ("k", ""))], id="empty-key"),
        pytest.param(
            {"k": {"a\n": 1}},
            {"k": {"a\n": 2}},
            [Diff('k["a\n"]', 1, 2, ("k", "a\n"))],
            id="newline-key-quoted",
        ),
        pytest.param(
            {"status": {"conditions": [_cond("Progressing", "True"), _cond("Available", "False")]}},
            {"status": {"conditions": [_cond("Available", "False"), _cond("Progressing", "True")]}},
            [],
            id="reordered-conditions",
        ),
        pytest.param(
            {"status": {"conditions": [_cond("Progressing", "True"), _cond("Available", "False")]}},
            {
                "status": {
                    "conditions": [
                        _cond("Available", "True", at="2026-11-23T07:24:00Z"),
                        _cond("Progressing", "True"),
                    ]
                }
            },
            [
                Diff(
                    "status.conditions[type=Available].lastTransitionTime",
                    "2026-11-23T07:23:30Z",
                    "2026-11-23T07:24:00Z",
                    (*_AVAILABLE, "lastTransitionTime"),
                ),
                Diff(
                    "status.conditions[type=Available].lastUpdateTime",
                    "2026-11-23T07:23:30Z",
                    "2026-11-23T07:24:00Z",
                    (*_AVAILABLE, "lastUpdateTime"),
                ),
                Diff("status.conditions[type=Available].status", "False", "True", (*_AVAILABLE, "status")),
            ],
            id="condition-flips",
        ),
        pytest.param(
            {"status": {"conditions": [_cond("Progressing", "True")]}},
            {"status": {"conditions": [_cond("Progressing", "True"), _cond("Available", "False")]}},
            [Diff("status.conditions[type=Available]", None, _cond("Available", "False"), _AVAILABLE)],
            id="condition-added-whole",
        ),
        pytest.param(
            {"status": {"phase": "Pending"}},
            {"status": {"phase": "Pending", "conditions": [_cond("PodScheduled", "True")]}},
            [
                Diff(
                    "status.conditions[type=PodScheduled]",
                    None,
                    _cond("PodScheduled", "True"),
                    ("status", "conditions", ("type", "PodScheduled")),
                )
            ],
            id="keyed-list-appears-as-items",
        ),
        pytest.param(
            {"metadata": {"ownerReferences": [{"uid": "u1"}, {"uid": "u2"}]}},
            {"metadata": {}},
            [
                Diff(
                    "metadata.ownerReferences[uid=u1]",
                    {"uid": "u1"},
                    None,
                    ("metadata", "ownerReferences", ("uid", "u1")),
                ),
                Diff(
                    "metadata.ownerReferences[uid=u2]",
                    {"uid": "u2"},
                    None,
                    ("metadata", "ownerReferences", ("uid", "u2")),
                ),
            ],
            id="keyed-list-disappears-as-items",
        ),
        pytest.param(
            {"spec": {}},
            {"spec": {"args": ["a", "b"], "tolerations": [{"operator": "Exists"}], "env": []}},
            [
                Diff("spec.args", None, ["a", "b"], ("spec", "args")),
                Diff("spec.env", None, [], ("spec", "env")),
                Diff("spec.tolerations", None, [{"operator": "Exists"}], ("spec", "tolerations")),
            ],
            id="unkeyed-or-empty-list-appears-whole",
        ),
        pytest.param(
            {"status": {"conditions": []}},
            {"status": {"conditions": [_cond("Available", "False")]}},
            [Diff("status.conditions[type=Available]", None, _cond("Available", "False"), _AVAILABLE)],
            id="empty-list-gains-keyed-item",
        ),
        pytest.param(
            _pod_spec([{"name": "nginx", "image": "nginx:1.27"}]),
            _pod_spec([{"name": "sidecar", "image": "envoy"}, {"name": "nginx", "image": "nginx:1.28"}]),
            [
                Diff(
                    "spec.template.spec.containers[name=sidecar]",
                    None,
                    {"name": "sidecar", "image": "envoy"},
                    (*_C, ("name", "sidecar")),
                ),
                Diff(
                    "spec.template.spec.containers[name=nginx].image",
                    "nginx:1.27",
                    "nginx:1.28",
                    (*_C, ("name", "nginx"), "image"),
                ),
            ],
            id="container-image",
        ),
        pytest.param(
            _pod_spec([{"name": "app", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]),
            _pod_spec([{"name": "app", "env": [{"name": "C", "value": "3"}, {"name": "B", "value": "2"}]}]),
            [
                Diff(
                    "spec.template.spec.containers[name=app].env[name=C]",
                    None,
                    {"name": "C", "value": "3"},
                    (*_C, ("name", "app"), "env", ("name", "C")),
                ),
                Diff(
                    "spec.template.spec.containers[name=app].env[name=A]",
                    {"name": "A", "value": "1"},
                    None,
                    (*_C, ("name", "app"), "env", ("name", "A")),
                ),
            ],
            id="env-added-then-removed",
        ),
        pytest.param(
            _pod_spec(
                [{"name": "app", "ports": [{"containerPort": 80}, {"containerPort": 8080, "name": "a"}]}]
            ),
            _pod_spec(
                [{"name": "app", "ports": [{"containerPort": 8080, "name": "b"}, {"containerPort": 80}]}]
            ),
            [
                Diff(
                    "spec.template.spec.containers[name=app].ports[containerPort=8080].name",
                    "a",
                    "b",
                    (*_C, ("name", "app"), "ports", ("containerPort", "8080"), "name"),
                )
            ],
            id="container-port-int-key",
        ),
        pytest.param(
            {"spec": {"ports": [{"port": 443, "targetPort": 8443}, {"port": 80, "targetPort": 8080}]}},
            {"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 9443}]}},
            [
                Diff(
                    "spec.ports[port=443].targetPort",
                    8443,
                    9443,
                    ("spec", "ports", ("port", "443"), "targetPort"),
                )
            ],
            id="service-port",
        ),
        pytest.param(
            {"spec": {"ports": [{"port": 53, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}},
            {"spec": {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}},
            [
                Diff("spec.ports[0].protocol", "TCP", "UDP", ("spec", "ports", 0, "protocol")),
                Diff("spec.ports[1].protocol", "UDP", "TCP", ("spec", "ports", 1, "protocol")),
            ],
            id="service-port-duplicate-falls-back",
        ),
        pytest.param(
            {"metadata": {"ownerReferences": [{"uid": "24bf-1", "kind": "ReplicaSet"}, {"uid": "9c1e-2"}]}},
            {
                "metadata": {
                    "ownerReferences": [
                        {"uid": "9c1e-2"},
                        {"uid": "24bf-1", "kind": "ReplicaSet", "controller": True},
                    ]
                }
            },
            [
                Diff(
                    "metadata.ownerReferences[uid=24bf-1].controller",
                    None,
                    True,
                    ("metadata", "ownerReferences", ("uid", "24bf-1"), "controller"),
                )
            ],
            id="owner-reference-by-uid",
        ),
        pytest.param(
            {"status": {"addresses": [{"type": "Hostname", "address": "n0"}, _INTERNAL]}},
            {"status": {"addresses": [_INTERNAL, {"type": "Hostname", "address": "n1"}]}},
            [
                Diff(
                    "status.addresses[type=Hostname].address",
                    "n0",
                    "n1",
                    ("status", "addresses", ("type", "Hostname"), "address"),
                )
            ],
            id="node-address-by-type",
        ),
        pytest.param(
            {"status": {"addresses": [_INTERNAL, {"type": "InternalIP", "address": "fd00::1"}]}},
            {"status": {"addresses": [_INTERNAL, {"type": "InternalIP", "address": "fd00::2"}]}},
            [
                Diff(
                    "status.addresses[1].address", "fd00::1", "fd00::2", ("status", "addresses", 1, "address")
                )
            ],
            id="duplicate-key-falls-back",
        ),
        pytest.param(
            {"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}, {"key": "k", "effect": "NoExecute"}]}},
            {
                "spec": {
                    "taints": [
                        {"key": "k", "effect": "NoSchedule"},
                        {"key": "k", "effect": "PreferNoSchedule"},
                    ]
                }
            },
            [Diff("spec.taints[1].effect", "NoExecute", "PreferNoSchedule", ("spec", "taints", 1, "effect"))],
            id="duplicate-taint-key-falls-back",
        ),
        pytest.param(
            {"status": {"conditions": [_cond("Ready", "True"), {"status": "x"}]}},
            {"status": {"conditions": [_cond("Ready", "True"), {"status": "y"}]}},
            [Diff("status.conditions[1].status", "x", "y", ("status", "conditions", 1, "status"))],
            id="missing-key-falls-back",
        ),
        pytest.param(
            {"status": {"conditions": [{"type": {"a": 1}, "status": "x"}]}},
            {"status": {"conditions": [{"type": {"a": 1}, "status": "y"}]}},
            [Diff("status.conditions[0].status", "x", "y", ("status", "conditions", 0, "status"))],
            id="non-scalar-key-falls-back",
        ),
        pytest.param(
            {"status": {"conditions": [{"type": True, "status": "x"}]}},
            {"status": {"conditions": [{"type": True, "status": "y"}]}},
            [Diff("status.conditions[0].status", "x", "y", ("status", "conditions", 0, "status"))],
            id="bool-key-falls-back",
        ),
        pytest.param(
            {"status": {"conditions": [_cond("Ready", "True")]}},
            {"status": {"conditions": [_cond("Ready", "False"), "odd"]}},
            [
                Diff("status.conditions[0].status", "True", "False", ("status", "conditions", 0, "status")),
                Diff("status.conditions[1]", None, "odd", ("status", "conditions", 1)),
            ],
            id="non-map-item-falls-back",
        ),
        pytest.param(
            {"spec": {"members": [{"name": "a", "weight": 1}, {"name": "b", "weight": 2}]}},
            {"spec": {"members": [{"name": "b", "weight": 3}, {"name": "a", "weight": 1}]}},
            [Diff("spec.members[name=b].weight", 2, 3, ("spec", "members", ("name", "b"), "weight"))],
            id="generic-name",
        ),
        pytest.param(
            [{"name": "a", "v": 1}],
            [{"name": "a", "v": 2}],
            [Diff("[name=a].v", 1, 2, (("name", "a"), "v"))],
            id="generic-name-at-root",
        ),
        pytest.param(
            {"spec": {"members": [{"id": "a", "weight": 1}, {"id": "b", "weight": 2}]}},
            {"spec": {"members": [{"id": "b", "weight": 2}, {"id": "a", "weight": 1}]}},
            [
                Diff("spec.members[0].id", "a", "b", ("spec", "members", 0, "id")),
                Diff("spec.members[0].weight", 1, 2, ("spec", "members", 0, "weight")),
                Diff("spec.members[1].id", "b", "a", ("spec", "members", 1, "id")),
                Diff("spec.members[1].weight", 2, 1, ("spec", "members", 1, "weight")),
            ],
            id="no-name-stays-positional",
        ),
        pytest.param(
            {"subsets": [{"addresses": [{"ip": "10.0.0.1", "type": "x"}, {"ip": "10.0.0.2", "type": "y"}]}]},
            {"subsets": [{"addresses": [{"ip": "10.0.0.2", "type": "y"}, {"ip": "10.0.0.1", "type": "x"}]}]},
            [
                Diff(
                    "subsets[0].addresses[0].ip", "10.0.0.1", "10.0.0.2", ("subsets", 0, "addresses", 0, "ip")
                ),
                Diff("subsets[0].addresses[0].type", "x", "y", ("subsets", 0, "addresses", 0, "type")),
                Diff(
                    "subsets[0].addresses[1].ip", "10.0.0.2", "10.0.0.1", ("subsets", 0, "addresses", 1, "ip")
                ),
                Diff("subsets[0].addresses[1].type", "y", "x", ("subsets", 0, "addresses", 1, "type")),
            ],
            id="addresses-keyed-only-under-status",
        ),
        pytest.param(
            {
                "spec": {
                    "members": [{"name": 'a]b "c"', "v": 1}, {"name": "x=y\\z", "v": 1}, {"name": "", "v": 1}]
                }
            },
            {
                "spec": {
                    "members": [{"name": 'a]b "c"', "v": 2}, {"name": "x=y\\z", "v": 2}, {"name": "", "v": 2}]
                }
            },
            [
                Diff(
                    'spec.members[name="a]b \\"c\\""].v', 1, 2, ("spec", "members", ("name", 'a]b "c"'), "v")
                ),
                Diff('spec.members[name="x=y\\\\z"].v', 1, 2, ("spec", "members", ("name", "x=y\\z"), "v")),
                Diff('spec.members[name=""].v', 1, 2, ("spec", "members", ("name", ""), "v")),
            ],
            id="quoted-item-values",
        ),
        pytest.param(
            {
                "spec": {
                    "members": [{"name": "a b", "v": 1}, {"name": "[x", "v": 1}, {"name": "ok.v1:-/", "v": 1}]
                }
            },
            {
                "spec": {
                    "members": [{"name": "a b", "v": 2}, {"name": "[x", "v": 2}, {"name": "ok.v1:-/", "v": 2}]
                }
            },
            [
                Diff('spec.members[name="a b"].v', 1, 2, ("spec", "members", ("name", "a b"), "v")),
                Diff('spec.members[name="[x"].v', 1, 2, ("spec", "members", ("name", "[x"), "v")),
                Diff("spec.members[name=ok.v1:-/].v", 1, 2, ("spec", "members", ("name", "ok.v1:-/"), "v")),
            ],
            id="whitespace-and-bracket-quoted-others-plain",
        ),
        pytest.param(
            {"items": [{"name": "80", "v": 1}]},
            {"items": [{"name": 80, "v": 1}]},
            [Diff("items[name=80].name", "80", 80, ("items", ("name", "80"), "name"))],
            id="key-compared-as-text",
        ),
    ],
)
def test_compute(old: object, new: object, expected: list[Diff]) -> None:
    diffs = compute.compute(old, new)
    assert diffs == expected
    for diff in diffs:
        assert parse_path(diff.path) == diff.segments
        assert compute.render_path(diff.segments) == diff.path


def _status_updates() -> list[dict[str, Any]]:
    bodies = []
    for line in DEPLOYMENT_LOG.read_bytes().splitlines():
        event = orjson.loads(line)
        ref = event["objectRef"]
        if (event["verb"], ref["resource"], ref.get("subresource"), ref.get("name")) == (
            "update",
            "deployments",
            "status",
            "demo",
        ):
            bodies.append(event["responseObject"])
    return bodies


def test_recorded_deployment_conditions_diff_by_type() -> None:
    bodies = _status_updates()
    assert len(bodies) > 10
    diffs = [diff for old, new in itertools.pairwise(bodies) for diff in compute.compute(old, new)]
    lines = compute.render(diffs).split("\n")
    condition_lines = [line for line in lines if line.startswith("status.conditions")]
    # The sample's controller reorders conditions between updates; a positional diff renames them.
    assert [line for line in condition_lines if "conditions[0].type" in line or '].type "' in line] == []
    assert any(line.startswith("status.conditions[type=Available].status ") for line in condition_lines)
    keyed = ("status.conditions[type=Available]", "status.conditions[type=Progressing]")
    assert [line for line in condition_lines if not line.startswith(keyed)] == []
    assert [d.path for d in diffs if parse_path(d.path) != d.segments] == []


def test_render_lines_and_abbreviation() -> None:
    diffs = [Diff("status.observedGeneration", 1, 2), Diff("a", None, "x" * 500), Diff("s", "v", None)]
    lines = compute.render(diffs).split("\n")
    assert lines[0] == "status.observedGeneration 1 -> 2"
    assert lines[1].startswith('a null -> "xxx') and lines[1].endswith("...(502 chars)")
    assert lines[2] == 's "v" -> null'


def test_redacted_values_render_as_a_marker() -> None:
    def redacted(value: str) -> str:
        marker: str = Redactor.opaque(value)
        return marker

    old, new = redacted("hunter2"), redacted("hunter3")
    assert compute.render(compute.compute({"data": {"p": old}}, {"data": {"p": new}})) == (
        "data.p <redacted> -> <redacted>"
    )
    assert compute.compute({"data": {"p": old}}, {"data": {"p": redacted("hunter2")}}) == []
    assert compute.snapshot({"data": {"p": old}}) == '{"data":{"p":"<redacted>"}}'
    assert compute.render([Diff("data", None, {"p": old})]) == 'data null -> {"p":"<redacted>"}'


def _key(name: str) -> ObjectKey:
    return ObjectKey("c", "apps", "deployments", "default", name)


def test_history_finds_the_version_before_even_on_redelivery() -> None:
    history = BodyHistory()
    history.put(_key("a"), "10", {"v": 1})
    history.put(_key("a"), "12", {"v": 2})
    assert history.previous(_key("a"), "12") == Version("10", {"v": 1})
    assert history.previous(_key("a"), "12") == Version("10", {"v": 1})  # the same event again
    assert history.previous(_key("a"), "11") == Version("10", {"v": 1})
    assert history.previous(_key("a"), "10") is None
    assert history.latest(_key("a")) == Version("12", {"v": 2})
    history.put(_key("a"), "9", {"v": 0})  # late arrival is placed by version, not by arrival
    assert history.previous(_key("a"), "10") == Version("9", {"v": 0})


def test_a_complete_version_replaces_a_partial_one_of_the_same_revision() -> None:
    history = BodyHistory()
    history.put(_key("a"), "10", {"v": "made up"}, complete=False)
    history.put(_key("a"), "10", {"v": "seen"})
    assert history.get(_key("a"), "10") == Version("10", {"v": "seen"})
    history.put(_key("a"), "10", {"v": "made up again"}, complete=False)
    assert history.get(_key("a"), "10") == Version("10", {"v": "seen"})


def test_history_is_bounded() -> None:
    history = BodyHistory(max_objects=2)
    for name in ("a", "b", "c"):
        history.put(_key(name), "1", {})
    assert len(history) == 2 and history.latest(_key("a")) is None
    for rv in range(10):
        history.put(_key("c"), str(rv + 2), {"rv": rv})
    assert history.previous(_key("c"), "3") is None  # only the last few versions are kept
