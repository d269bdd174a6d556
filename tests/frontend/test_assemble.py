"""Assembling one object's trace (frontend.assemble) as the query service finds it in the store
(frontend.query, frontend.backend), over stores filled through the real pipeline.

Covers: the tree is rooted at the top owner with owned objects nested and requests under their
object; per-window object spans merge into one span per object; query time ranges keep only the
requests in range; NotFound for an unknown object, for no activity in range and for an ambiguous
name (with the options to narrow it); a recreated name opening its newest incarnation with activity
(or the one a uid names) and listing the others; a target that was under another root in an earlier window
(merge warnings); the store's index check of activity agreeing with the assembled tree's; and the
Jaeger JSON of the dump's view of it (ids, references, services, tag types, logs).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aggregators import ids
from aggregators.windows import window_of
from frontend import jaegerjson, modes
from frontend.assemble import has_activity, merge
from frontend.backend import StoreBackend
from frontend.query import present
from frontend.types import AssembledTrace, ObjectQuery, SpanNode
from jaeger import model as jaeger_model
from kelemetry import errors
from kelemetry.model import tags
from kelemetry.model.events import TraceSource
from kelemetry.model.objects import Incarnation, KnownObject, ObjectKey
from kelemetry.model.spans import SpanRecord
from kelemetry.model.times import parse_time_us
from kelemetry.store.sqlite import SpanStore
from tests.factories import audit_event, new_pipeline, owner_ref
from tests.lookups import assemble, found

CLUSTER = "c1"
WINDOW_US = 1800 * 1_000_000
DEPLOY = ObjectKey.make(CLUSTER, "apps", "deployments", "default", "web")
RS = ObjectKey.make(CLUSTER, "apps", "replicasets", "default", "web-1")
POD_A = ObjectKey.make(CLUSTER, "", "pods", "default", "web-1-a")
POD_B = ObjectKey.make(CLUSTER, "", "pods", "default", "web-1-b")
# The uids HISTORY gives them.
UIDS = {DEPLOY: "d-1", RS: "r-1", POD_A: "p-a", POD_B: "p-b"}
W0 = window_of(parse_time_us("2024-05-01T10:00:00Z"), WINDOW_US)
W1 = W0 + 1
HEX16 = re.compile(r"[0-9a-f]{16}")


def at(minute: int, second: int = 0) -> dict[str, str]:
    return {
        "received": f"2024-05-01T10:{minute:02d}:{second:02d}.000000Z",
        "completed": f"2024-05-01T10:{minute:02d}:{second:02d}.012500Z",
    }


def us(minute: int, second: int = 0) -> int:
    return parse_time_us(at(minute, second)["received"])


# Window W0 (10:00-10:30): the whole hierarchy is created. Window W1 (10:30-11:00): pod a gets a
# failed status patch and the Deployment is updated.
HISTORY = [
    audit_event(resource="deployments", group="apps", name="web", uid="d-1", **at(0)),
    audit_event(
        resource="replicasets",
        group="apps",
        name="web-1",
        uid="r-1",
        owner=owner_ref("Deployment", "web", uid="d-1"),
        **at(0, 1),
    ),
    audit_event(name="web-1-a", uid="p-a", owner=owner_ref("ReplicaSet", "web-1", uid="r-1"), **at(0, 2)),
    audit_event(name="web-1-b", uid="p-b", owner=owner_ref("ReplicaSet", "web-1", uid="r-1"), **at(5)),
    audit_event(verb="patch", name="web-1-a", uid="p-a", code=409, subresource="status", **at(40)),
    audit_event(
        verb="update", resource="deployments", group="apps", name="web", uid="d-1", code=200, **at(45)
    ),
]


def fill(store: SpanStore, events: list[dict[str, Any]]) -> None:
    pipeline = new_pipeline(store)
    result = pipeline.process_audit(events, CLUSTER)
    assert result.failed == 0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SpanStore]:
    opened = SpanStore(tmp_path / "k.db")
    fill(opened, HISTORY)
    yield opened
    opened.close()


def query(name: str = "web-1-a", resource: str = "pods", **fields: Any) -> ObjectQuery:
    return ObjectQuery(cluster=CLUSTER, resource=resource, name=name, **fields)


def objects_of(node: SpanNode) -> list[SpanNode]:
    return [c for c in node.children if c.span.source is TraceSource.OBJECT]


def requests_of(node: SpanNode) -> list[str]:
    return [
        f"{c.span.tags[tags.AUDIT_VERB]}@{c.span.start_us}"
        for c in node.children
        if c.span.source is not TraceSource.OBJECT
    ]


def inc(key: ObjectKey) -> Incarnation:
    return Incarnation(key, UIDS.get(key, ""))


def node_of(trace: AssembledTrace, key: ObjectKey) -> SpanNode:
    (node,) = [n for n in trace.walk() if n.span.source is TraceSource.OBJECT and n.span.key == key]
    return node


# -- the tree


def test_the_tree_is_rooted_at_the_top_owner_with_requests_under_their_objects(store: SpanStore) -> None:
    trace = assemble(store, query())

    assert trace.target.key == POD_A
    assert trace.warnings == ()
    root = trace.root
    assert root.span.key == DEPLOY and root.span.parent_id is None
    assert trace.trace_id == root.span.trace_id == ids.trace_id(inc(DEPLOY), W0)
    assert [n.span.key for n in objects_of(root)] == [RS]
    rs = objects_of(root)[0]
    # Owned objects come after the object's own requests, ordered by when they were first active.
    assert [n.span.key for n in objects_of(rs)] == [POD_A, POD_B]
    assert [c.span.source for c in rs.children] == [TraceSource.AUDIT, TraceSource.OBJECT, TraceSource.OBJECT]
    assert requests_of(root) == [f"create@{us(0)}", f"update@{us(45)}"]
    assert requests_of(rs) == [f"create@{us(0, 1)}"]
    assert requests_of(node_of(trace, POD_A)) == [f"create@{us(0, 2)}", f"patch@{us(40)}"]
    assert requests_of(node_of(trace, POD_B)) == [f"create@{us(5)}"]

    for node in trace.walk():
        for child in node.children:
            assert child.span.parent_id == node.span.span_id
            if child.span.source is not TraceSource.OBJECT:
                assert child.span.key == node.span.key and not child.children


def test_walk_lists_parents_before_children_and_every_node_once(store: SpanStore) -> None:
    trace = assemble(store, query())
    nodes = trace.walk()
    assert len(nodes) == len({id(n) for n in nodes}) == 4 + 6
    seen: set[int] = set()
    for node in nodes:
        assert node.span.parent_id is None or node.span.parent_id in seen
        seen.add(node.span.span_id)


def test_any_object_of_the_hierarchy_gives_the_same_tree(store: SpanStore) -> None:
    def shape(trace: AssembledTrace) -> list[tuple[int, int | None]]:
        return [(n.span.span_id, n.span.parent_id) for n in trace.walk()]

    from_pod = assemble(store, query())
    from_deployment = assemble(store, query("web", "deployments", group="apps", namespace="default"))
    assert shape(from_pod) == shape(from_deployment)
    assert from_deployment.target.key == DEPLOY
    # Pod b was active in W0 only, so its lookup loads only W0's trace.
    from_sibling = assemble(store, query("web-1-b"))
    assert shape(from_sibling) == shape(assemble(store, query(end_us=W1 * WINDOW_US - 1)))


def test_activity_in_two_windows_merges_into_one_span_per_object(store: SpanStore) -> None:
    trace = assemble(store, query())
    objects = [n.span for n in trace.walk() if n.span.source is TraceSource.OBJECT]

    assert sorted(s.name for s in objects) == sorted(k.display for k in (DEPLOY, RS, POD_A, POD_B))
    both = (W0 * WINDOW_US, (W1 + 1) * WINDOW_US)
    spans = {s.key: s for s in objects}
    # Pod b was only active in W0; the Deployment and ReplicaSet frame pod a's W1 patch.
    assert (spans[DEPLOY].start_us, spans[DEPLOY].end_us) == both
    assert (spans[RS].start_us, spans[RS].end_us) == both
    assert (spans[POD_A].start_us, spans[POD_A].end_us) == both
    assert (spans[POD_B].start_us, spans[POD_B].end_us) == (W0 * WINDOW_US, W1 * WINDOW_US)
    # The merged span keeps the id of the first window's span.
    assert spans[POD_A].span_id == ids.object_span_id(inc(POD_A), W0)
    assert (spans[POD_A].uid, spans[POD_A].kind, spans[POD_A].version) == ("p-a", "Pod", "v1")


def test_a_time_range_keeps_only_requests_in_range(store: SpanStore) -> None:
    late = assemble(store, query(start_us=us(35), end_us=us(50)))
    keys = {n.span.key for n in late.walk() if n.span.source is TraceSource.OBJECT}
    assert keys == {DEPLOY, RS, POD_A}
    assert late.trace_id == ids.trace_id(inc(DEPLOY), W1)
    assert node_of(late, POD_A).span.start_us == W1 * WINDOW_US
    assert requests_of(node_of(late, POD_A)) == [f"patch@{us(40)}"]
    assert requests_of(late.root) == [f"update@{us(45)}"]

    # A range inside one window: the window's object spans frame it, requests outside are left out.
    narrow = assemble(store, query("web", "deployments", start_us=us(4), end_us=us(10)))
    requests = [n.span for n in narrow.walk() if n.span.source is not TraceSource.OBJECT]
    assert [(s.key, s.start_us) for s in requests] == [(POD_B, us(5))]
    assert {n.span.key for n in narrow.walk()} == {DEPLOY, RS, POD_A, POD_B}


def test_open_ended_ranges(store: SpanStore) -> None:
    after = assemble(store, query(start_us=us(39)))
    assert requests_of(node_of(after, POD_A)) == [f"patch@{us(40)}"]
    before = assemble(store, query(end_us=us(1)))
    assert all(n.span.start_us <= us(1) for n in before.walk())
    assert requests_of(before.root) == [f"create@{us(0)}"]


# -- not found


def test_an_unknown_object_is_not_found(store: SpanStore) -> None:
    with pytest.raises(errors.NotFound) as caught:
        assemble(store, query("nope"))
    assert str(caught.value) == "no object pods/nope (cluster c1) in the store"
    with pytest.raises(errors.NotFound, match=r"deployments\.apps/web in namespace kube-system"):
        assemble(store, query("web", "deployments", group="apps", namespace="kube-system"))
    with pytest.raises(errors.NotFound):
        assemble(store, ObjectQuery(cluster="other", resource="pods", name="web-1-a"))


def test_no_activity_in_the_range_is_not_found(store: SpanStore) -> None:
    with pytest.raises(errors.NotFound) as caught:
        assemble(store, query("web-1-b", start_us=us(35)))
    assert str(caught.value).startswith(
        "pods/web-1-b (cluster c1) has no activity in the requested time range; "
        "it was last active at 2024-05-01T10:05:00Z ("
    )
    with pytest.raises(errors.NotFound, match="no activity"):
        assemble(store, query(end_us=W0 * WINDOW_US - 1))


def test_a_recreated_name_opens_its_newest_incarnation_with_activity(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "k.db")
    try:
        fill(
            store,
            [
                audit_event(name="web", uid="old", **at(0)),
                audit_event(verb="delete", name="web", uid="old", code=200, **at(1)),
                audit_event(name="web", uid="new", **at(40)),
            ],
        )
        newest = assemble(store, query("web"))
        assert newest.target.uid == "new"
        assert [row.uid for row in found(store, query("web")).incarnations] == ["old"]
        assert requests_of(newest.root) == [f"create@{us(40)}"]
        # Where only the first was active, the first is opened.
        early = assemble(store, query("web", end_us=us(10)))
        assert early.target.uid == "old"
        assert [row.uid for row in found(store, query("web", end_us=us(10))).incarnations] == ["new"]
        assert requests_of(early.root) == [f"create@{us(0)}", f"delete@{us(1)}"]
        chosen = assemble(store, query("web", uid="old"))
        assert requests_of(chosen.root) == requests_of(early.root)
        assert [row.uid for row in found(store, query("web", uid="old")).incarnations] == ["new"]
        with pytest.raises(errors.NotFound) as caught:
            assemble(store, query("web", uid="gone"))
        assert str(caught.value).startswith("no object pods/web with uid gone (cluster c1) in the store")
    finally:
        store.close()


def test_an_ambiguous_name_lists_the_namespaces_to_choose_from(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "k.db")
    try:
        fill(store, [audit_event(name="web", namespace=ns, uid=f"u-{ns}") for ns in ("team-a", "team-b")])
        with pytest.raises(errors.NotFound) as caught:
            assemble(store, query("web"))
        message = str(caught.value)
        assert message.startswith("pods/web (cluster c1) is ambiguous")
        assert "--namespace 'team-a'" in message and "--namespace 'team-b'" in message
        assert "--group" not in message

        trace = assemble(store, query("web", namespace="team-b"))
        assert trace.target.key.namespace == "team-b" and trace.root.span.uid == "u-team-b"
    finally:
        store.close()


def test_an_ambiguous_name_across_groups_lists_groups_too(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "k.db")
    try:
        fill(
            store,
            [
                audit_event(resource="widgets", group=group, name="w", namespace="ns", kind="Widget")
                for group in ("a.example.com", "b.example.com")
            ],
        )
        with pytest.raises(errors.NotFound) as caught:
            assemble(store, query("w", "widgets"))
        message = str(caught.value)
        assert "--group 'a.example.com' --namespace 'ns'" in message
        assert "--group 'b.example.com' --namespace 'ns'" in message
        trace = assemble(store, query("w", "widgets", group="b.example.com"))
        assert trace.root.span.key.group == "b.example.com"
    finally:
        store.close()


def test_describe_names_group_and_namespace() -> None:
    assert query("web", "deployments", group="apps", namespace="prod").describe() == (
        "deployments.apps/web in namespace prod (cluster c1)"
    )
    assert query().describe() == "pods/web-1-a (cluster c1)"


# -- merge of traces with different roots


def _object_span(key: ObjectKey, window: int, root: ObjectKey, parent: ObjectKey | None) -> SpanRecord:
    return SpanRecord(
        trace_id=ids.trace_id(inc(root), window),
        span_id=ids.object_span_id(inc(key), window),
        parent_id=None if parent is None else ids.object_span_id(inc(parent), window),
        source=TraceSource.OBJECT,
        name=key.display,
        start_us=window * WINDOW_US,
        end_us=(window + 1) * WINDOW_US,
        key=key,
        object_id=ids.object_id(inc(key)),
        window=window,
        uid=UIDS.get(key, ""),
        kind="",
        version="",
        tags={tags.TRACE_SOURCE: "object", tags.PSEUDO: True},
    )


def test_a_root_of_an_earlier_window_is_hung_under_the_targets_root_with_a_warning() -> None:
    old_rs = ObjectKey.make(CLUSTER, "apps", "replicasets", "default", "web-0")
    # Pod a was under web-0 in W0 and adopted by web-1 (under the Deployment) in W1.
    spans = [
        _object_span(old_rs, W0, old_rs, None),
        _object_span(POD_A, W0, old_rs, old_rs),
        _object_span(DEPLOY, W1, DEPLOY, None),
        _object_span(RS, W1, DEPLOY, DEPLOY),
        _object_span(POD_A, W1, DEPLOY, RS),
    ]
    trace = merge(spans, KnownObject(ids.object_id(inc(POD_A)), POD_A, UIDS[POD_A]))

    assert trace.root.span.key == DEPLOY
    assert trace.trace_id == ids.trace_id(inc(DEPLOY), W1)
    assert trace.warnings == ("replicasets.apps/web-0 was a separate root in an earlier window",)
    assert {n.span.key for n in objects_of(trace.root)} == {RS, old_rs}
    assert node_of(trace, POD_A) in objects_of(node_of(trace, RS))
    (root,) = [span for span in dump_json(trace)["spans"] if not span["references"]]
    assert root["warnings"] == list(trace.warnings)


# -- activity: the store's index check agrees with the assembled tree


def test_the_stores_activity_check_agrees_with_the_assembled_tree(store: SpanStore) -> None:
    """A lookup asks the store whether an object (or anything it owns) had activity in a range by
    index; a view assembles the tree and asks it. Both must give the same answer, for every object
    and for ranges inside a window, across the boundary, before and after everything."""
    backend = StoreBackend(store)
    ranges = [
        (None, None),
        (us(0), us(0, 1)),
        (us(4), us(10)),
        (us(35), us(50)),
        (us(41), us(44)),
        (W0 * WINDOW_US - 1_000_000, W0 * WINDOW_US - 1),
        (W1 * WINDOW_US, None),
        (None, us(1)),
    ]
    checked = 0
    for row in store.objects():
        for start, end in ranges:
            try:
                assembled = has_activity(backend.trace(row, start, end))
            except errors.NotFound:
                assembled = False
            assert backend.active(row, start, end) is assembled, (row.key.display, start, end)
            checked += assembled
    assert checked > 0


# -- Jaeger JSON of the dump's view


def dump_json(trace: AssembledTrace) -> jaeger_model.Trace:
    return jaegerjson.trace(present(trace, modes.DUMP, "ff01ff0000e1e3e70123456789abcdef"))


def test_the_dumps_view_is_a_valid_jaeger_trace(store: SpanStore) -> None:
    trace = assemble(store, query())
    document = json.loads(json.dumps(dump_json(trace)))

    assert document["traceID"] == "ff01ff0000e1e3e70123456789abcdef"
    assert document["warnings"] is None
    spans = document["spans"]
    assert len(spans) == len(trace.walk())
    by_id = {span["spanID"]: span for span in spans}
    assert set(by_id) == {node.span.span_hex for node in trace.walk()}
    (root,) = [span for span in spans if not span["references"]]
    assert root["operationName"] == "default/web"
    assert document["processes"][root["processID"]] == {"serviceName": "c1 deployments", "tags": []}
    for span in spans:
        assert span["traceID"] == document["traceID"]
        assert HEX16.fullmatch(span["spanID"])
        assert type(span["startTime"]) is int and type(span["duration"]) is int and span["duration"] >= 0
        assert span["processID"] in document["processes"]
        assert span["flags"] == 1
        for ref in span["references"]:
            assert ref == {"refType": "CHILD_OF", "traceID": document["traceID"], "spanID": ref["spanID"]}
            assert ref["spanID"] in by_id
        for tag in span["tags"]:
            assert set(tag) == {"key", "type", "value"}
            assert tag["type"] in {"string", "bool", "int64", "float64"}


def test_the_dumps_view_carries_object_tags_services_and_logs(store: SpanStore) -> None:
    document = dump_json(assemble(store, query()))
    services = {pid: process["serviceName"] for pid, process in document["processes"].items()}
    by_name: dict[str, list[dict[str, Any]]] = {}
    for span in document["spans"]:
        by_name.setdefault(span["operationName"], []).append(dict(span))

    (pod,) = by_name["default/web-1-a"]
    assert services[pod["processID"]] == "pods"
    pod_tags = {t["key"]: t for t in pod["tags"]}
    assert pod_tags["kelemetry.pseudo"] == {"key": "kelemetry.pseudo", "type": "bool", "value": True}
    assert {k: pod_tags[k]["value"] for k in ("cluster", "resource", "namespace", "name", "uid", "kind")} == {
        "cluster": "c1",
        "resource": "pods",
        "namespace": "default",
        "name": "web-1-a",
        "uid": "p-a",
        "kind": "Pod",
    }
    assert pod["startTime"] == W0 * WINDOW_US and pod["duration"] == 2 * WINDOW_US

    (patch,) = by_name["admin patch status (Conflict)"]
    assert services[patch["processID"]] == "audit"
    assert patch["references"][0]["spanID"] == pod["spanID"]
    assert (patch["startTime"], patch["duration"]) == (us(40), 12_500)
    patch_tags = {t["key"]: t for t in patch["tags"]}
    assert patch_tags["audit.code"] == {"key": "audit.code", "type": "int64", "value": 409}
    assert patch_tags["error"] == {"key": "error", "type": "bool", "value": True}
    assert patch_tags["audit.subresource"]["value"] == "status"
    (log,) = patch["logs"]
    assert log["timestamp"] == us(40)
    assert log["fields"][0] == {"key": "event", "type": "string", "value": "error"}
    assert log["fields"][1]["key"] == "message" and log["fields"][1]["value"].startswith("Conflict")
