"""Display modes as transforms over a view tree (frontend.transform), and the view tree's Jaeger JSON
(frontend.jaegerjson).

A Deployment's life (create, spec update, status update by the controller, a failed patch, delete)
with a ReplicaSet, a Pod and Kubernetes Events goes through the real pipeline into a store; the
assembled trace is then shown in each base mode. Hand-made span records pin the folding rules.

Covers: ``tracing`` folds requests into logs with Go Kelemetry's field names (``audit`` =
"{user} {verb}[ {subresource}]", ``diff`` / ``verbose diff`` split by path with
metadata.managedFields hidden, ``snapshot``, ``error`` for failed requests, ``event`` =
"Reason: message" with ``type`` and ``count``); compact durations (content bounds, the root padded
5 % each side); ``grouped`` (request logs moved into one child span per source, Events stay);
``timeline`` (everything flat under the root, object spans gone); ``tree`` (the assembled shape);
service and operation names; and the Jaeger JSON (references, processes per service, tag types).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from aggregators import ids
from frontend import jaegerjson, transform
from frontend.modes import Base
from frontend.transform import GROUP_SOURCE, fold_record
from frontend.types import AssembledTrace, ObjectQuery, SpanNode, View, ViewLog, ViewSpan
from jaeger import model as jaeger_model
from kelemetry.model import tags
from kelemetry.model.events import Log, TagValue, TraceSource
from kelemetry.model.objects import Incarnation, KnownObject, ObjectKey
from kelemetry.model.spans import SpanRecord
from kelemetry.model.times import parse_time_us
from kelemetry.store.sqlite import SpanStore
from tests.factories import audit_event, kube_event, new_pipeline, owner_ref
from tests.lookups import assemble

CLUSTER = "c1"
CONTROLLER = "system:serviceaccount:kube-system:deployment-controller"
SECOND = 1_000_000


def at(second: int) -> dict[str, str]:
    return {
        "received": f"2024-05-01T10:00:{second:02d}.000000Z",
        "completed": f"2024-05-01T10:00:{second:02d}.010000Z",
    }


def us(second: int) -> int:
    return parse_time_us(at(second)["received"])


def deployment(rv: str, generation: int, replicas: int, observed: int) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "d-1",
            "resourceVersion": rv,
            "generation": generation,
            "managedFields": [{"manager": "kubectl", "operation": "Update", "time": f"t{rv}"}],
        },
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": observed},
    }


def on_deployment(**fields: Any) -> dict[str, Any]:
    return audit_event(resource="deployments", group="apps", name="web", uid="d-1", **fields)


AUDIT = [
    on_deployment(response_object=deployment("10", 1, 2, 1), **at(0)),
    on_deployment(verb="update", code=200, response_object=deployment("11", 2, 4, 1), **at(5)),
    on_deployment(
        verb="update",
        subresource="status",
        user=CONTROLLER,
        code=200,
        response_object=deployment("12", 2, 4, 2),
        **at(6),
    ),
    on_deployment(
        verb="patch",
        code=409,
        responseStatus={"metadata": {}, "code": 409, "reason": "Conflict", "message": "try again"},
        **at(7),
    ),
    on_deployment(verb="delete", code=200, response_object=deployment("13", 3, 4, 2), **at(30)),
    audit_event(
        resource="replicasets",
        group="apps",
        name="web-1",
        uid="r-1",
        owner=owner_ref("Deployment", "web", uid="d-1"),
        **at(1),
    ),
    audit_event(name="web-1-a", uid="p-1a", owner=owner_ref("ReplicaSet", "web-1", uid="r-1"), **at(2)),
]
EVENTS = [
    kube_event(
        kind="Deployment",
        api_version="apps/v1",
        name="web",
        object_uid="d-1",
        reason="ScalingReplicaSet",
        message="Scaled up replica set web-1 from 0 to 2",
        component="deployment-controller",
        first="2024-05-01T10:00:01Z",
    ),
    kube_event(
        kind="Pod",
        name="web-1-a",
        object_uid="p-1a",
        reason="BackOff",
        message="Back-off restarting failed container",
        event_type="Warning",
        count=3,
        component="kubelet",
        first="2024-05-01T10:00:03Z",
        last="2024-05-01T10:00:09Z",
    ),
    kube_event(
        kind="ReplicaSet",
        api_version="apps/v1",
        name="web-1",
        object_uid="r-1",
        reason="Synced",
        first="2024-05-01T10:00:04Z",
    ),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpanStore]:
    opened = SpanStore(Path(tmp_path_factory.mktemp("transform")) / "k.db")
    pipeline = new_pipeline(opened)
    assert pipeline.process_audit(AUDIT, CLUSTER).failed == 0
    result = pipeline.process_kube_events(EVENTS, CLUSTER)
    assert (result.kept, result.failed) == (3, 0)
    yield opened
    opened.close()


@pytest.fixture
def trace(store: SpanStore) -> AssembledTrace:
    return assemble(store, ObjectQuery(cluster=CLUSTER, resource="deployments", name="web"))


def to_jaeger(trace: AssembledTrace, root: ViewSpan, trace_id: str = "t") -> jaeger_model.Trace:
    return jaegerjson.trace(View(trace_id, root, trace.target))


def fields(log: ViewLog) -> dict[str, TagValue]:
    return dict(log.fields)


def objects(root: ViewSpan) -> dict[str, ViewSpan]:
    return {span.record.key.name: span for span in root.walk() if span.is_object and span.record}


def audits(span: ViewSpan) -> list[str]:
    return [str(fields(log)["audit"]) for log in span.logs if "audit" in fields(log)]


# -- tracing


def test_tracing_folds_every_request_and_event_into_its_objects_logs(trace: AssembledTrace) -> None:
    root = transform.apply(trace, Base.TRACING)

    assert all(span.is_object for span in root.walk())
    spans = objects(root)
    assert list(spans) == ["web", "web-1", "web-1-a"]
    assert [c.record.key.name for c in root.children if c.record] == ["web-1"]
    assert [c.record.key.name for c in spans["web-1"].children if c.record] == ["web-1-a"]
    for node in trace.walk():
        if node.span.source is TraceSource.OBJECT:
            folded = [c for c in node.children if c.span.source is not TraceSource.OBJECT]
            logs = spans[node.span.key.name].logs
            assert len(logs) == len(folded) + len(node.span.logs)
            assert [log.timestamp for log in logs] == sorted(log.timestamp for log in logs)

    assert audits(root) == [
        "admin create",
        "admin update",
        f"{CONTROLLER} update status",
        "admin patch",
        "admin delete",
    ]
    assert [fields(log)["event"] for log in root.logs if "event" in fields(log)] == [
        "ScalingReplicaSet: Scaled up replica set web-1 from 0 to 2"
    ]
    assert [log.timestamp for log in root.logs] == [us(0), us(1), us(5), us(6), us(7), us(30)]
    assert audits(spans["web-1-a"]) == ["admin create"]


def test_a_folded_update_has_the_originals_fields_and_the_split_diff(trace: AssembledTrace) -> None:
    root = transform.apply(trace, Base.TRACING)
    update = next(log for log in root.logs if fields(log).get("audit") == "admin update")
    assert update.timestamp == us(5)
    assert [key for key, _ in update.fields] == [
        "kelemetry.trace_source",
        "audit",
        "code",
        "userAgent",
        "sourceIP",
        "auditId",
        "resourceVersion",
        "diff",
        "verbose diff",
    ]
    found = fields(update)
    assert found["kelemetry.trace_source"] == "audit"
    assert found["code"] == 200
    assert found["userAgent"] == "kubectl/v1.33.0"
    assert found["sourceIP"] == "10.0.0.1"
    assert found["resourceVersion"] == "11"
    assert found["diff"] == "spec.replicas 2 -> 4"
    assert found["verbose diff"] == "metadata.generation 1 -> 2"

    status = next(log for log in root.logs if str(fields(log).get("audit", "")).endswith("update status"))
    assert fields(status)["diff"] == "status.observedGeneration 1 -> 2"
    assert "verbose diff" not in fields(status)
    for log in root.logs:
        for key, value in log.fields:
            assert "managedFields" not in str(value), (key, value)


def test_a_failed_request_carries_its_error_and_a_delete_its_snapshot(trace: AssembledTrace) -> None:
    root = transform.apply(trace, Base.TRACING)
    patch = fields(next(log for log in root.logs if fields(log).get("audit") == "admin patch"))
    assert patch["error"] == "Conflict: try again"
    assert patch["code"] == 409
    assert "diff" not in patch and "snapshot" not in patch

    delete = fields(next(log for log in root.logs if str(fields(log).get("audit", "")).endswith(" delete")))
    snapshot = json.loads(str(delete["snapshot"]))
    assert snapshot["metadata"]["name"] == "web"
    assert snapshot["metadata"]["resourceVersion"] == "13"
    assert "managedFields" not in snapshot["metadata"]
    assert "error" not in delete


def test_folded_events_read_reason_colon_message_with_type_source_and_count(trace: AssembledTrace) -> None:
    spans = objects(transform.apply(trace, Base.TRACING))
    scaling = next(fields(log) for log in spans["web"].logs if "event" in fields(log))
    assert scaling["kelemetry.trace_source"] == "event"
    assert scaling["event"] == "ScalingReplicaSet: Scaled up replica set web-1 from 0 to 2"
    assert (scaling["type"], scaling["source"], scaling["count"]) == ("Normal", "deployment-controller", 1)
    assert "error" not in scaling and "message" not in scaling

    backoff = next(fields(log) for log in spans["web-1-a"].logs if "event" in fields(log))
    assert backoff["event"] == "BackOff: Back-off restarting failed container"
    assert (backoff["type"], backoff["count"]) == ("Warning", 3)
    # A Warning is marked by its type; no separate "error" field.
    assert "error" not in backoff
    assert backoff["lastSeen"] == "2024-05-01T10:00:09.000000Z"

    synced = next(fields(log) for log in spans["web-1"].logs if "event" in fields(log))
    assert synced["event"] == "Synced"


def test_an_event_seen_once_has_no_last_seen(trace: AssembledTrace) -> None:
    """An Event that happened once (count 1, first == last timestamp) has no later sighting.

    Its span is a point (end == start); an Event span stored with some length that is not a second
    sighting (as the Events receiver once drew one-off Events one second long) must not be reported
    as one either.
    """
    spans = objects(transform.apply(trace, Base.TRACING))
    scaling = next(fields(log) for log in spans["web"].logs if "event" in fields(log))
    assert scaling["count"] == 1
    assert "lastSeen" not in scaling, (
        f"fabricated lastSeen {scaling.get('lastSeen')!r} for an Event seen once"
    )


# -- folding rules on hand-made records

_span_ids = itertools.count(1)
POD = ObjectKey.make(CLUSTER, "", "pods", "default", "web-1-a")


def record(
    source: TraceSource,
    *,
    name: str = "a request",
    span_tags: dict[str, TagValue] | None = None,
    logs: tuple[tuple[str, str], ...] = (),
    error: bool = False,
    start: int = 0,
    end: int | None = None,
    key: ObjectKey = POD,
) -> SpanRecord:
    return SpanRecord(
        trace_id=1,
        span_id=next(_span_ids),
        parent_id=None,
        source=source,
        name=name,
        start_us=start,
        end_us=start + 10 if end is None else end,
        key=key,
        object_id=ids.object_id(Incarnation(key, "")),
        window=0,
        uid="",
        kind="",
        version="",
        tags={tags.TRACE_SOURCE: source.value, **(span_tags or {})},
        logs=tuple(Log(kind, message) for kind, message in logs),
        error=error,
    )


def audit_record(*logs: tuple[str, str], error: bool = False, **audit_tags: TagValue) -> SpanRecord:
    base: dict[str, TagValue] = {tags.AUDIT_USER: "alice", tags.AUDIT_VERB: "patch"}
    return record(TraceSource.AUDIT, span_tags={**base, **audit_tags}, logs=logs, error=error)


@pytest.mark.parametrize(
    ("lines", "diff", "verbose"),
    [
        (["spec.replicas 2 -> 4"], "spec.replicas 2 -> 4", None),
        (["metadata.generation 1 -> 2"], None, "metadata.generation 1 -> 2"),
        (['metadata.resourceVersion "1" -> "2"'], None, 'metadata.resourceVersion "1" -> "2"'),
        (["metadata.managedFields null -> []"], None, None),
        (['metadata.managedFields[0].manager "a" -> "b"'], None, None),
        (["metadata.managedFields.x 1 -> 2"], None, None),
        (["metadata.generations 1 -> 2"], "metadata.generations 1 -> 2", None),
        (["metadata.managedFieldsCount 1 -> 2"], "metadata.managedFieldsCount 1 -> 2", None),
        (
            [
                "metadata.generation 1 -> 2",
                'metadata.labels.app null -> "web"',
                'metadata.managedFields[0].time "t1" -> "t2"',
                "spec.replicas 2 -> 4",
                "status.observedGeneration 1 -> 2",
                'metadata.resourceVersion "1" -> "2"',
            ],
            'metadata.labels.app null -> "web"\nspec.replicas 2 -> 4\nstatus.observedGeneration 1 -> 2',
            'metadata.generation 1 -> 2\nmetadata.resourceVersion "1" -> "2"',
        ),
    ],
)
def test_diff_lines_are_classified_by_path(lines: list[str], diff: str | None, verbose: str | None) -> None:
    folded = fields(fold_record(audit_record(("diff", "\n".join(lines)))))
    assert folded.get("diff") == diff
    assert folded.get("verbose diff") == verbose


@pytest.mark.parametrize(
    ("subresource", "audit"),
    [("", "alice patch"), ("status", "alice patch status"), ("scale", "alice patch scale")],
)
def test_audit_is_user_verb_and_subresource(subresource: str, audit: str) -> None:
    extra: dict[str, TagValue] = {tags.AUDIT_SUBRESOURCE: subresource} if subresource else {}
    log = fold_record(audit_record(**extra))
    assert log.fields[:2] == (("kelemetry.trace_source", "audit"), ("audit", audit))


def test_optional_audit_fields_are_left_out_when_empty() -> None:
    log = fold_record(audit_record(**{tags.AUDIT_USER_AGENT: "", tags.AUDIT_IMPERSONATOR: "root"}))
    assert log.fields == (
        ("kelemetry.trace_source", "audit"),
        ("audit", "alice patch"),
        ("impersonator", "root"),
    )


def test_a_failed_request_without_an_error_message_still_says_error() -> None:
    assert fields(fold_record(audit_record(error=True)))["error"] == "true"
    with_message = fold_record(audit_record(("error", "Forbidden: no"), error=True))
    assert [(k, v) for k, v in with_message.fields if k == "error"] == [("error", "Forbidden: no")]
    assert "error" not in fields(fold_record(audit_record()))


def test_other_request_logs_keep_their_kind_and_a_no_op_note_is_a_note() -> None:
    log = fold_record(audit_record(("verbose", "No-op update"), ("snapshot", "{}")))
    assert log.fields[-2:] == (("note", "No-op update"), ("snapshot", "{}"))


def test_an_event_without_a_reason_tag_uses_its_name_and_a_warning_is_not_an_error_field() -> None:
    event = record(
        TraceSource.EVENT,
        name="Killing",
        span_tags={tags.EVENT_TYPE: "Warning", tags.EVENT_COUNT: 2},
        logs=(("message", "Stopping container"),),
        error=True,
        start=5 * SECOND,
        end=5 * SECOND + 1_000,
    )
    assert fold_record(event).fields == (
        ("kelemetry.trace_source", "event"),
        ("event", "Killing: Stopping container"),
        ("type", "Warning"),
        ("count", 2),
        ("lastSeen", "1970-01-01T00:00:05.001000Z"),
    )


def test_a_watched_change_folds_with_its_diff() -> None:
    change = record(TraceSource.CHANGE, name="update (watched)", logs=(("diff", "spec.replicas 1 -> 2"),))
    assert fold_record(change).fields == (
        ("kelemetry.trace_source", "change"),
        ("change", "update (watched)"),
        ("diff", "spec.replicas 1 -> 2"),
    )


# -- compact durations


def test_tracing_compacts_object_spans_to_their_content_and_pads_the_root(trace: AssembledTrace) -> None:
    root = transform.apply(trace, Base.TRACING)
    spans = objects(root)
    # The pod: its create at 2 s and the BackOff Event at 3 s, each log one second long.
    assert (spans["web-1-a"].start_us, spans["web-1-a"].end_us) == (us(2), us(3) + SECOND)
    # The ReplicaSet: its own create at 1 s, its Event at 4 s, and the pod.
    assert (spans["web-1"].start_us, spans["web-1"].end_us) == (us(1), us(4) + SECOND)
    # The root: content from 0 s to the delete at 30 s (+1 s), then 5 % on each side.
    pad = (31 * SECOND) // 20
    assert (root.start_us, root.end_us) == (us(0) - pad, us(30) + SECOND + pad)


# -- grouped


def test_grouped_moves_request_logs_into_a_child_span_per_source(trace: AssembledTrace) -> None:
    tracing = transform.apply(trace, Base.TRACING)
    root = transform.apply(trace, Base.GROUPED)
    spans = objects(root)

    # Events stay on their object; requests leave it.
    assert [fields(log)["kelemetry.trace_source"] for log in root.logs] == ["event"]
    assert [fields(log)["kelemetry.trace_source"] for log in spans["web-1-a"].logs] == ["event"]
    group = root.children[0]
    assert group.source == GROUP_SOURCE and not group.is_object
    assert (group.operation, group.service) == ("audit", "audit")
    assert group.tags == {"kelemetry.trace_source": "group", "kelemetry.group": "audit"}
    assert group.children == []
    tracing_audits = [log for log in tracing.logs if fields(log)["kelemetry.trace_source"] == "audit"]
    assert group.logs == tracing_audits
    # The group span is compacted to its logs.
    assert (group.start_us, group.end_us) == (us(0), us(30) + SECOND)
    # Groups come before the owned objects.
    assert [c.source for c in root.children] == [GROUP_SOURCE, "object"]

    pod_groups = [c for c in spans["web-1-a"].children if c.source == GROUP_SOURCE]
    assert len(pod_groups) == 1 and audits(pod_groups[0]) == ["admin create"]
    group_ids = [s.span_id for s in root.walk() if s.source == GROUP_SOURCE]
    assert len(group_ids) == len(set(group_ids)) == 3
    all_ids = [s.span_id for s in root.walk()]
    assert len(all_ids) == len(set(all_ids))
    # Deterministic: the same view gives the same group span ids.
    assert [s.span_id for s in transform.apply(trace, Base.GROUPED).walk()] == all_ids


def test_an_object_with_only_events_gets_no_group_span() -> None:
    obj = record(TraceSource.OBJECT, name=POD.display, start=0, end=1800 * SECOND)
    event = record(TraceSource.EVENT, name="Pulled", span_tags={tags.EVENT_REASON: "Pulled"}, start=SECOND)
    alone = AssembledTrace(1, SpanNode(obj, [SpanNode(event)]), KnownObject(obj.object_id, POD))
    grouped = transform.apply(alone, Base.GROUPED)
    assert grouped.children == []
    assert [fields(log)["event"] for log in grouped.logs] == ["Pulled"]
    assert (grouped.start_us, grouped.end_us) == (SECOND - SECOND // 20, 2 * SECOND + SECOND // 20)


# -- timeline and tree


def test_timeline_lifts_every_request_and_event_flat_under_the_root(trace: AssembledTrace) -> None:
    root = transform.apply(trace, Base.TIMELINE)
    leaves = [n.span for n in trace.walk() if n.span.source is not TraceSource.OBJECT]

    assert root.is_object and root.record is not None and root.record.key.name == "web"
    assert not any(span.is_object for span in root.children)
    assert all(not span.children for span in root.children)
    assert sorted(s.span_id for s in root.children) == sorted(s.span_id for s in leaves)
    starts = [(s.start_us, s.span_id) for s in root.children]
    assert starts == sorted(starts)
    assert [s.service for s in root.children].count("event") == 3
    # Nothing is folded and nothing is compacted.
    assert root.logs == [] and (root.start_us, root.end_us) == (
        trace.root.span.start_us,
        trace.root.span.end_us,
    )


def shape(node: SpanNode) -> tuple[int, list[Any]]:
    return (node.span.span_id, [shape(child) for child in node.children])


def view_shape(span: ViewSpan) -> tuple[int, list[Any]]:
    return (span.span_id, [view_shape(child) for child in span.children])


def test_tree_keeps_the_assembled_shape_and_names_services(trace: AssembledTrace) -> None:
    root = transform.apply(trace, Base.TREE)
    assert view_shape(root) == shape(trace.root)
    by_id = {n.span.span_id: n.span for n in trace.walk()}
    for span in root.walk():
        source = by_id[span.span_id]
        assert (span.start_us, span.end_us) == (source.start_us, source.end_us)
        if not span.is_object:
            assert (span.service, span.operation) == (source.source.value, source.name)
            assert [fields(log)["event"] for log in span.logs] == [log.kind for log in source.logs]
    spans = objects(root)
    assert (root.service, root.operation) == ("c1 deployments", "default/web")
    assert (spans["web-1"].service, spans["web-1"].operation) == ("replicasets", "default/web-1")
    assert (spans["web-1-a"].service, spans["web-1-a"].operation) == ("pods", "default/web-1-a")


def test_apply_leaves_the_assembled_trace_alone_and_carries_its_warnings(trace: AssembledTrace) -> None:
    trace = replace(trace, warnings=("pods/x was a separate root in an earlier window",))
    before = shape(trace.root)
    first = {base: to_jaeger(trace, transform.apply(trace, base)) for base in Base}
    assert shape(trace.root) == before
    for base in Base:
        assert to_jaeger(trace, transform.apply(trace, base)) == first[base]
        root = next(span for span in first[base]["spans"] if not span["references"])
        assert root["warnings"] == ["pods/x was a separate root in an earlier window"]


def object_view(key: ObjectKey, span_id: int) -> ViewSpan:
    obj = record(TraceSource.OBJECT, name=key.display, key=key)
    return ViewSpan(span_id, "object", key.display, 0, 10, {tags.CLUSTER: key.cluster}, record=obj)


def test_services_are_prefixed_with_the_cluster_where_it_changes() -> None:
    root = object_view(ObjectKey.make("c1", "apps", "deployments", "default", "web"), 1)
    other = object_view(ObjectKey.make("c2", "", "pods", "prod", "p"), 2)
    below = object_view(ObjectKey.make("c2", "", "nodes", "", "n1"), 3)
    back = object_view(ObjectKey.make("c1", "", "configmaps", "default", "cm"), 4)
    root.children = [other, back]
    other.children = [below]
    transform.name_spans(root)
    assert [(s.service, s.operation) for s in (root, other, below, back)] == [
        ("c1 deployments", "default/web"),
        ("c2 pods", "prod/p"),
        ("nodes", "n1"),
        ("configmaps", "default/cm"),
    ]


# -- Jaeger JSON


@pytest.mark.parametrize("base", list(Base))
def test_to_jaeger_is_a_jaeger_trace_with_one_process_per_service(trace: AssembledTrace, base: Base) -> None:
    view = transform.apply(trace, base)
    trace_id = "ff21000000e1e3e70123456789abcdef"
    document = json.loads(json.dumps(to_jaeger(trace, view, trace_id)))

    assert set(document) == {"traceID", "spans", "processes", "warnings"}
    assert document["traceID"] == trace_id and document["warnings"] is None
    spans = document["spans"]
    assert len(spans) == len(view.walk())
    by_id = {span["spanID"]: span for span in spans}
    assert len(by_id) == len(spans)
    (root,) = [span for span in spans if not span["references"]]
    assert root["spanID"] == f"{view.span_id:016x}"
    assert root["operationName"] == "default/web"
    assert document["processes"][root["processID"]]["serviceName"] == "c1 deployments"

    services = [p["serviceName"] for p in document["processes"].values()]
    assert len(services) == len(set(services))
    assert set(services) == {span.service for span in view.walk()}
    expected_parent = {f"{c.span_id:016x}": f"{s.span_id:016x}" for s in view.walk() for c in s.children}
    for span in spans:
        assert span["traceID"] == trace_id and span["flags"] == 1
        assert len(span["spanID"]) == 16 and int(span["spanID"], 16) >= 0
        assert type(span["startTime"]) is int and type(span["duration"]) is int and span["duration"] >= 0
        assert span["processID"] in document["processes"]
        if span is not root:
            assert span["references"] == [
                {"refType": "CHILD_OF", "traceID": trace_id, "spanID": expected_parent[span["spanID"]]}
            ]
        for item in [*span["tags"], *(f for log in span["logs"] for f in log["fields"])]:
            assert set(item) == {"key", "type", "value"}
            expected = {bool: "bool", int: "int64", str: "string"}[type(item["value"])]
            assert item["type"] == expected, item
        for log in span["logs"]:
            assert type(log["timestamp"]) is int


def test_jaeger_tags_and_log_fields_keep_their_types(trace: AssembledTrace) -> None:
    document = to_jaeger(trace, transform.apply(trace, Base.TRACING))
    root = next(span for span in document["spans"] if not span["references"])
    root_tags = {tag["key"]: tag for tag in root["tags"]}
    assert root_tags["resource"] == {"key": "resource", "type": "string", "value": "deployments"}
    assert root_tags["name"] == {"key": "name", "type": "string", "value": "web"}
    assert root_tags["kelemetry.pseudo"] == {"key": "kelemetry.pseudo", "type": "bool", "value": True}
    logs = [{f["key"]: f for f in log["fields"]} for log in root["logs"]]
    patch = next(log for log in logs if log.get("audit", {}).get("value") == "admin patch")
    assert patch["code"] == {"key": "code", "type": "int64", "value": 409}
    scaling = next(log for log in logs if "event" in log)
    assert scaling["count"] == {"key": "count", "type": "int64", "value": 1}
