"""Watched object versions in the pipeline: owner links, diffs, claiming by audit events, change
spans after the grace period, and an object deleted while its change is still pending."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kelemetry.model.events import TraceSource
from kelemetry.pipeline import Pipeline
from kelemetry.store.sqlite import SpanStore
from tests.factories import audit_event, new_pipeline, owner_ref

TARGET = ("apps", "v1", "deployments")
T0 = 1_714_557_600_000_000  # 2024-05-01T10:00:00Z


def deployment(rv: str, replicas: int, *, uid: str = "d1") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "demo",
            "namespace": "default",
            "uid": uid,
            "resourceVersion": rv,
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {"replicas": replicas},
    }


def pipeline(tmp_path: Path) -> tuple[Pipeline, SpanStore]:
    store = SpanStore(tmp_path / "k.db")
    return new_pipeline(store), store


def changes(store: SpanStore) -> list[Any]:
    return [s for s in store.all_spans() if s.source is TraceSource.CHANGE]


def test_unclaimed_change_becomes_a_change_span_after_the_grace_period(tmp_path: Path) -> None:
    pipe, store = pipeline(tmp_path)
    pipe.process_object_changes([("LIST", deployment("10", 2))], "c", TARGET, T0)
    pipe.process_object_changes([("MODIFIED", deployment("11", 4))], "c", TARGET, T0 + 1_000_000)
    assert changes(store) == []  # still within the grace period
    assert pipe.flush_pending(T0 + 10_000_000) == 1
    (change,) = changes(store)
    assert change.tags["change.verb"] == "update" and change.tags["resource_version"] == "11"
    assert [log.message for log in change.logs] == ["spec.replicas 2 -> 4"]
    store.close()


def test_an_audit_event_with_the_same_version_claims_the_change(tmp_path: Path) -> None:
    pipe, store = pipeline(tmp_path)
    pipe.process_object_changes([("LIST", deployment("10", 2))], "c", TARGET, T0)
    pipe.process_object_changes([("MODIFIED", deployment("11", 4))], "c", TARGET, T0)
    body = deployment("11", 4)
    event = audit_event(
        verb="update",
        resource="deployments",
        group="apps",
        name="demo",
        uid="d1",
        code=200,
        request_object=body,
        response_object=body,
    )
    pipe.process_audit([event], "c")
    assert pipe.flush_pending(T0 + 60_000_000) == 0 and changes(store) == []
    store.close()


def test_deleted_while_its_diff_is_pending(tmp_path: Path) -> None:
    pipe, store = pipeline(tmp_path)
    pipe.process_object_changes([("LIST", deployment("10", 2))], "c", TARGET, T0)
    pipe.process_object_changes(
        [("MODIFIED", deployment("11", 0)), ("DELETED", deployment("12", 0))], "c", TARGET, T0 + 1
    )
    assert pipe.flush_pending(T0 + 10_000_000) == 2
    by_verb = {s.tags["change.verb"]: s for s in changes(store)}
    assert [log.message for log in by_verb["update"].logs] == ["spec.replicas 2 -> 0"]
    (snapshot,) = by_verb["delete"].logs
    assert snapshot.kind == "snapshot" and '"name":"demo"' in snapshot.message
    assert "managedFields" not in snapshot.message
    store.close()


def test_watched_owner_references_build_the_hierarchy(tmp_path: Path) -> None:
    pipe, store = pipeline(tmp_path)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "demo-1-a",
            "namespace": "default",
            "uid": "p1",
            "resourceVersion": "20",
            "ownerReferences": [owner_ref("ReplicaSet", "demo-1", uid="r1")],
        },
    }
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": "demo-1",
            "namespace": "default",
            "uid": "r1",
            "resourceVersion": "19",
            "ownerReferences": [owner_ref("Deployment", "demo", uid="d1")],
        },
    }
    pipe.process_object_changes([("LIST", pod)], "c", ("", "v1", "pods"), T0)
    pipe.process_object_changes([("LIST", rs)], "c", ("apps", "v1", "replicasets"), T0)
    pod_node = next(n for n in pipe.graph.nodes() if n.key.name == "demo-1-a")
    chain = pipe.graph.chain(pod_node)
    assert [(n.key.name, n.uid) for n in chain] == [("demo-1-a", "p1"), ("demo-1", "r1"), ("demo", "d1")]
    store.close()
