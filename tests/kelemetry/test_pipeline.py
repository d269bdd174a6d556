"""The pipeline (kelemetry.pipeline) from raw audit events to stored spans, with the real hierarchy
aggregator, converter, owner graph and SQLite store.

Covers: a Deployment → ReplicaSet → Pod hierarchy becoming one trace per window rooted at the
Deployment (owners get object spans in windows where only a descendant was active), idempotent
reprocessing (same pipeline and after a restart), a root learned late (the spans already stored
move to the new root's trace), rebuilding the owner graph from the store on restart, a
deleted-and-recreated object, events that fail or are dropped, and a replay of a real audit log.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aggregators import ids
from aggregators.windows import window_of
from kelemetry.model import tags
from kelemetry.model.events import TraceSource
from kelemetry.model.objects import Incarnation, ObjectKey
from kelemetry.model.spans import SpanRecord
from kelemetry.model.times import parse_time_us
from kelemetry.pipeline import load_graph
from kelemetry.receivers.auditfiles import read_audit_file
from kelemetry.receivers.auditwire import from_mapping
from kelemetry.store.sqlite import SpanStore
from tests.conftest import FALCO
from tests.factories import audit_event, new_pipeline, owner_ref

CLUSTER = "c1"
WINDOW_US = 1800 * 1_000_000
DEPLOY = Incarnation(ObjectKey.make(CLUSTER, "apps", "deployments", "default", "web"), "d-1")
RS = Incarnation(ObjectKey.make(CLUSTER, "apps", "replicasets", "default", "web-1"), "r-1")
W0 = window_of(parse_time_us("2024-05-01T10:00:00Z"), WINDOW_US)
W1 = W0 + 1


def pod(name: str, uid: str = "") -> Incarnation:
    return Incarnation(ObjectKey.make(CLUSTER, "", "pods", "default", name), uid or f"uid-{name}")


def times(minute: int, second: int = 0) -> dict[str, str]:
    """Request received at 10:mm:ss and completed 10 ms later; windows start at 10:00 and 10:30."""
    return {
        "received": f"2024-05-01T10:{minute:02d}:{second:02d}.000000Z",
        "completed": f"2024-05-01T10:{minute:02d}:{second:02d}.010000Z",
    }


def deployment_create(minute: int = 0) -> dict[str, Any]:
    return audit_event(resource="deployments", group="apps", name="web", uid="d-1", **times(minute))


def replicaset_create(minute: int = 0) -> dict[str, Any]:
    return audit_event(
        resource="replicasets",
        group="apps",
        name="web-1",
        uid="r-1",
        owner=owner_ref("Deployment", "web", uid="d-1"),
        user="system:serviceaccount:kube-system:deployment-controller",
        **times(minute, 1),
    )


def replicaset_update_with_owner(minute: int) -> dict[str, Any]:
    return audit_event(
        verb="update",
        resource="replicasets",
        group="apps",
        name="web-1",
        uid="r-1",
        code=200,
        owner=owner_ref("Deployment", "web", uid="d-1"),
        **times(minute),
    )


def pod_create(name: str, minute: int = 0, second: int = 2, uid: str = "") -> dict[str, Any]:
    return audit_event(
        name=name,
        uid=uid or f"uid-{name}",
        owner=owner_ref("ReplicaSet", "web-1", uid="r-1"),
        user="system:serviceaccount:kube-system:replicaset-controller",
        **times(minute, second),
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SpanStore]:
    opened = SpanStore(tmp_path / "k.db")
    yield opened
    opened.close()


def incarnation(span: SpanRecord) -> Incarnation:
    return Incarnation(span.key, span.uid)


def object_spans(store: SpanStore) -> dict[tuple[Incarnation, int], SpanRecord]:
    found: dict[tuple[Incarnation, int], SpanRecord] = {}
    for span in store.all_spans():
        if span.source is TraceSource.OBJECT:
            obj = incarnation(span)
            assert (obj, span.window) not in found, "one object span per object and window"
            found[(obj, span.window)] = span
    return found


def assert_hierarchy(store: SpanStore, root: Incarnation) -> None:
    """Every span sits in its window's trace of ``root``; object spans follow the owner chain."""
    spans = store.all_spans()
    by_id = {span.span_id: span for span in spans}
    owner_of = {RS: DEPLOY, DEPLOY: None}
    for span in spans:
        assert span.trace_id == ids.trace_id(root, span.window), span
        if span.source is TraceSource.OBJECT:
            obj = incarnation(span)
            owner = owner_of.get(obj, RS)
            expected = None if owner is None or obj == root else ids.object_span_id(owner, span.window)
            assert span.parent_id == expected, span
            assert span.start_us == span.window * WINDOW_US and span.end_us == (span.window + 1) * WINDOW_US
            assert span.tags[tags.PSEUDO] is True
        else:
            parent = by_id[span.parent_id]  # type: ignore[index]
            assert parent.source is TraceSource.OBJECT and incarnation(parent) == incarnation(span)
            assert parent.window == span.window and parent.trace_id == span.trace_id


def test_a_deployment_its_replicaset_and_pods_are_one_trace(store: SpanStore) -> None:
    pipeline = new_pipeline(store)
    batch = [deployment_create(), replicaset_create(), pod_create("web-1-a"), pod_create("web-1-b", second=3)]

    result = pipeline.process_audit(batch, CLUSTER)

    assert (result.events, result.kept, result.failed) == (4, 4, 0)
    assert result.spans == len(store.all_spans()) == 8
    assert set(object_spans(store)) == {(k, W0) for k in (DEPLOY, RS, pod("web-1-a"), pod("web-1-b"))}
    assert_hierarchy(store, DEPLOY)
    audit = [s for s in store.all_spans() if s.source is TraceSource.AUDIT]
    assert Counter(incarnation(s) for s in audit) == Counter(
        {DEPLOY: 1, RS: 1, pod("web-1-a"): 1, pod("web-1-b"): 1}
    )

    objects = {Incarnation(row.key, row.uid): row for row in store.objects()}
    assert objects[pod("web-1-a")].owner_id == ids.object_id(RS)
    assert objects[RS].owner_id == ids.object_id(DEPLOY)
    assert objects[DEPLOY].owner_id is None
    assert objects[RS].kind == "ReplicaSet"
    a = objects[pod("web-1-a")]
    assert (a.first_us, a.last_us) == (
        parse_time_us(times(0, 2)["received"]),
        parse_time_us(times(0, 2)["completed"]),
    )


def test_a_later_window_gets_its_own_trace_with_the_owners_object_spans(store: SpanStore) -> None:
    pipeline = new_pipeline(store)
    pipeline.process_audit([deployment_create(), replicaset_create(), pod_create("web-1-a")], CLUSTER)

    pipeline.process_audit([pod_create("web-1-c", minute=40)], CLUSTER)

    spans = object_spans(store)
    # The Deployment and ReplicaSet had no request of their own at 10:40 but still frame the pod.
    assert {obj for obj, window in spans if window == W1} == {DEPLOY, RS, pod("web-1-c")}
    assert_hierarchy(store, DEPLOY)
    assert spans[(DEPLOY, W0)].trace_id != spans[(DEPLOY, W1)].trace_id


def test_processing_the_same_batch_twice_changes_nothing(store: SpanStore) -> None:
    pipeline = new_pipeline(store)
    batch = [
        deployment_create(),
        replicaset_create(),
        pod_create("web-1-a"),
        pod_create("web-1-c", minute=40),
    ]
    pipeline.process_audit(batch, CLUSTER)
    digest, seq, objects = store.digest_rows(), store.max_seq(), list(store.objects())

    again = pipeline.process_audit(batch, CLUSTER)

    assert (again.events, again.kept, again.failed) == (4, 4, 0)
    assert store.digest_rows() == digest
    assert store.max_seq() == seq
    assert store.spans_after(seq, 100) == []
    assert list(store.objects()) == objects


def test_reprocessing_after_a_restart_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    batch = [
        deployment_create(),
        replicaset_create(),
        pod_create("web-1-a"),
        pod_create("web-1-c", minute=40),
    ]
    first = SpanStore(path)
    new_pipeline(first).process_audit(batch, CLUSTER)
    digest, seq = first.digest_rows(), first.max_seq()
    first.close()

    second = SpanStore(path)
    try:
        # A fresh aggregator has no memory of what was written: every span is offered again.
        result = new_pipeline(second).process_audit(batch, CLUSTER)
        assert result.failed == 0
        assert second.digest_rows() == digest
        assert second.max_seq() == seq
    finally:
        second.close()


def _late_root_batches() -> list[list[dict[str, Any]]]:
    pods = [pod_create("web-1-a"), pod_create("web-1-b", minute=5), pod_create("web-1-c", minute=40)]
    return [pods, [replicaset_update_with_owner(minute=50)]]


@pytest.mark.parametrize("one_batch", [False, True], ids=["separate-batches", "same-batch"])
def test_a_root_learned_late_moves_stored_spans_to_its_trace(store: SpanStore, one_batch: bool) -> None:
    pipeline = new_pipeline(store)
    batches = _late_root_batches()
    if one_batch:
        batches = [batches[0] + batches[1]]
    for batch in batches[:-1]:
        pipeline.process_audit(batch, CLUSTER)
        assert {s.trace_id for s in store.all_spans()} == {ids.trace_id(RS, W0), ids.trace_id(RS, W1)}

    result = pipeline.process_audit(batches[-1], CLUSTER)

    assert result.failed == 0
    assert_hierarchy(store, DEPLOY)
    spans = object_spans(store)
    for window in (W0, W1):
        assert spans[(RS, window)].parent_id == spans[(DEPLOY, window)].span_id
        assert spans[(DEPLOY, window)].parent_id is None
    stale = {ids.trace_id(RS, W0), ids.trace_id(RS, W1)}
    assert not [s for s in store.all_spans() if s.trace_id in stale]
    assert pipeline.graph.chain(pod("web-1-a")) == [pod("web-1-a"), RS, DEPLOY]


def test_after_a_late_root_new_events_join_the_roots_trace(store: SpanStore) -> None:
    pipeline = new_pipeline(store)
    for batch in _late_root_batches():
        pipeline.process_audit(batch, CLUSTER)

    pipeline.process_audit(
        [pod_create("web-1-d", minute=10), pod_create("web-1-a", minute=45, uid="x")], CLUSTER
    )

    assert_hierarchy(store, DEPLOY)
    assert (pod("web-1-d"), W0) in object_spans(store)


def test_a_restarted_pipeline_rebuilds_the_owner_graph_from_the_store(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    first = SpanStore(path)
    new_pipeline(first).process_audit(
        [deployment_create(), replicaset_create(), pod_create("web-1-a")], CLUSTER
    )
    first.close()

    second = SpanStore(path)
    try:
        graph = load_graph(second)
        assert graph.chain(pod("web-1-a")) == [pod("web-1-a"), RS, DEPLOY]
        assert (graph.ref(RS).uid, graph.ref(RS).kind) == ("r-1", "ReplicaSet")

        pipeline = new_pipeline(second)
        assert pipeline.graph.root(pod("web-1-a")) == DEPLOY
        # A pod event that names only its ReplicaSet lands in the Deployment's trace.
        pipeline.process_audit([pod_create("web-1-e", minute=40)], CLUSTER)

        assert_hierarchy(second, DEPLOY)
        spans = object_spans(second)
        assert spans[(pod("web-1-e"), W1)].parent_id == spans[(RS, W1)].span_id
        assert spans[(RS, W1)].parent_id == spans[(DEPLOY, W1)].span_id
    finally:
        second.close()


def test_a_root_learned_after_a_restart_still_moves_the_stored_spans(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    pods, owner_update = _late_root_batches()
    first = SpanStore(path)
    new_pipeline(first).process_audit(pods, CLUSTER)
    first.close()

    second = SpanStore(path)
    try:
        result = new_pipeline(second).process_audit(owner_update, CLUSTER)
        assert result.failed == 0
        assert_hierarchy(second, DEPLOY)
        assert {obj for obj, _window in object_spans(second)} == {
            DEPLOY,
            RS,
            *map(pod, ("web-1-a", "web-1-b", "web-1-c")),
        }
    finally:
        second.close()


def test_a_deleted_and_recreated_pod_is_a_second_object_with_its_own_spans(store: SpanStore) -> None:
    pipeline = new_pipeline(store)
    delete = audit_event(verb="delete", name="web-1-a", uid="uid-old", code=200, **times(1))
    # A request that does not say its uid (no bodies logged) is about the incarnation alive then.
    patch = audit_event(verb="patch", name="web-1-a", code=200, with_bodies=False, **times(3))
    pipeline.process_audit(
        [pod_create("web-1-a", uid="uid-old"), delete, pod_create("web-1-a", minute=2, uid="uid-new"), patch],
        CLUSTER,
    )

    old, new = pod("web-1-a", "uid-old"), pod("web-1-a", "uid-new")
    spans = object_spans(store)
    assert spans[(old, W0)].span_id != spans[(new, W0)].span_id
    assert spans[(old, W0)].parent_id == spans[(new, W0)].parent_id == spans[(RS, W0)].span_id
    assert_hierarchy(store, RS)
    audit = sorted((s for s in store.all_spans() if s.source is TraceSource.AUDIT), key=lambda s: s.start_us)
    assert [(s.tags[tags.AUDIT_VERB], s.uid, s.parent_id) for s in audit] == [
        ("create", "uid-old", spans[(old, W0)].span_id),
        ("delete", "uid-old", spans[(old, W0)].span_id),
        ("create", "uid-new", spans[(new, W0)].span_id),
        ("patch", "uid-new", spans[(new, W0)].span_id),
    ]
    rows = {row.uid: row for row in store.objects() if row.key == old.key}
    assert set(rows) == {"uid-old", "uid-new"}
    assert rows["uid-old"].object_id == ids.object_id(old) and rows["uid-new"].object_id == ids.object_id(new)
    assert rows["uid-old"].last_us == parse_time_us(times(1)["completed"])
    assert rows["uid-new"].first_us == parse_time_us(times(2, 2)["received"])


def test_a_failing_event_is_counted_and_the_batch_goes_on(
    store: SpanStore, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline = new_pipeline(store)
    malformed = pod_create("broken")
    malformed["auditID"] = "bad-1"
    malformed["objectRef"] = "pods"
    batch = [pod_create("web-1-a"), malformed, pod_create("web-1-b", second=3)]

    with caplog.at_level(logging.ERROR, logger="kelemetry.pipeline"):
        result = pipeline.process_audit(batch, CLUSTER)

    assert (result.events, result.kept, result.failed) == (3, 2, 1)
    assert pipeline.failed_events == 1
    assert {obj for obj, _window in object_spans(store)} == {RS, pod("web-1-a"), pod("web-1-b")}
    assert any("bad-1" in record.getMessage() for record in caplog.records)

    pipeline.process_audit([malformed], CLUSTER)
    assert pipeline.failed_events == 2


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"auditID": None}, id="no-audit-id"),
        pytest.param({"user": "alice"}, id="user-a-string"),
        pytest.param({"userAgent": ["x"]}, id="user-agent-a-list"),
        pytest.param({"kind": "Pod"}, id="not-an-audit-event"),
        pytest.param({"verb": ""}, id="empty-verb"),
    ],
)
def test_a_mapping_that_does_not_fit_the_wire_form_is_counted_as_failed(
    store: SpanStore, change: dict[str, Any]
) -> None:
    pipeline = new_pipeline(store)
    misfit = {**pod_create("misfit"), **change}
    misfit = {k: v for k, v in misfit.items() if v is not None}

    result = pipeline.process_audit([pod_create("web-1-a"), misfit, pod_create("web-1-b", second=3)], CLUSTER)

    assert (result.events, result.kept, result.failed) == (3, 2, 1)
    assert pipeline.failed_events == 1
    assert {obj for obj, _window in object_spans(store)} == {RS, pod("web-1-a"), pod("web-1-b")}


def test_events_in_their_wire_form_and_as_mappings_are_traced_alike(store: SpanStore) -> None:
    pipeline = new_pipeline(store)
    batch: list[Any] = [
        from_mapping(deployment_create()),
        replicaset_create(),
        from_mapping(pod_create("web-1-a")),
    ]

    result = pipeline.process_audit(batch, CLUSTER)

    assert (result.events, result.kept, result.failed) == (3, 3, 0)
    assert {obj for obj, _window in object_spans(store)} == {DEPLOY, RS, pod("web-1-a")}


def test_dropped_events_are_counted_and_write_nothing(store: SpanStore) -> None:
    pipeline = new_pipeline(store)
    batch = [audit_event(verb="get", code=200), audit_event(stage="RequestReceived")]

    result = pipeline.process_audit(batch, CLUSTER)

    assert (result.events, result.kept, result.spans, result.failed) == (2, 0, 0, 0)
    assert store.all_spans() == [] and list(store.objects()) == []
    assert store.max_seq() == 0


def test_replaying_a_real_audit_log_links_pods_to_their_replicasets(realdata: Path, store: SpanStore) -> None:
    path = str(realdata / FALCO)
    pipeline = new_pipeline(store)
    for batch in read_audit_file(path):
        result = pipeline.process_audit(batch, "minikube")
        assert result.failed == 0

    spans = {span.span_id: span for span in store.all_spans()}
    checked = 0
    for batch in read_audit_file(path):
        for raw in batch:
            if (
                raw.user is None
                or raw.user.username != "system:serviceaccount:kube-system:replicaset-controller"
            ):
                continue
            body = raw.response() or raw.request() or {}
            (owner,) = body["metadata"]["ownerReferences"]
            assert raw.objectRef is not None
            namespace = raw.objectRef.namespace
            pod_key = ObjectKey.make("minikube", "", "pods", namespace, body["metadata"]["name"])
            pod_obj = Incarnation(pod_key, body["metadata"]["uid"])
            rs_obj = Incarnation(
                ObjectKey.make("minikube", "apps", "replicasets", namespace, owner["name"]), owner["uid"]
            )
            window = window_of(parse_time_us(raw.requestReceivedTimestamp), WINDOW_US)

            pod_span = spans[ids.object_span_id(pod_obj, window)]
            rs_span = spans[ids.object_span_id(rs_obj, window)]
            assert pod_span.parent_id == rs_span.span_id
            assert pod_span.trace_id == rs_span.trace_id == ids.trace_id(rs_obj, window)
            assert rs_span.kind == "ReplicaSet" and rs_span.uid == owner["uid"]
            request = spans[ids.event_span_id(pod_key, "audit", raw.auditID)]
            assert request.parent_id == pod_span.span_id
            checked += 1
    assert checked == 42  # the realdata README counts 42 such creates

    digest = store.digest_rows()
    for batch in read_audit_file(path):
        pipeline.process_audit(batch, "minikube")
    assert store.digest_rows() == digest
