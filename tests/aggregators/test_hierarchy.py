"""Deterministic ids, epoch-aligned windows, and the hierarchy aggregator's span chains."""

from __future__ import annotations

import pytest

import aggregators
from aggregators import ids
from aggregators.windows import window_bounds, window_of
from kelemetry.linker.graph import OwnerGraph
from kelemetry.model.events import Event, TraceSource
from kelemetry.model.objects import ObjectKey, ObjectRef

WINDOW_US = 1800 * 1_000_000
T0 = 1_714_557_600_000_000  # 2024-05-01T10:00:00Z, a window boundary


def key(resource: str, name: str) -> ObjectKey:
    return ObjectKey.make("c", "" if resource == "pods" else "apps", resource, "ns", name)


def test_ids_are_deterministic_distinct_and_non_zero() -> None:
    a, b = key("pods", "a"), key("pods", "b")
    assert ids.object_span_id(a, 5) == ids.object_span_id(key("pods", "a"), 5)
    assert ids.object_span_id(a, 5) != ids.object_span_id(a, 6) != ids.object_span_id(b, 6)
    assert ids.event_span_id(a, "audit", "x") != ids.event_span_id(b, "audit", "x")
    assert 0 < ids.trace_id(a, 1) < 1 << 128 and 0 < ids.object_span_id(a, 1) < 1 << 64


def test_windows_are_aligned_to_the_epoch() -> None:
    assert window_of(T0, WINDOW_US) * WINDOW_US == T0
    assert window_of(T0 + WINDOW_US - 1, WINDOW_US) == window_of(T0, WINDOW_US)
    assert window_bounds(window_of(T0 + 5, WINDOW_US), WINDOW_US) == (T0, T0 + WINDOW_US)


def event(name: str, at: int, event_id: str) -> Event:
    return Event(
        ObjectRef(key("pods", name), "uid-" + name, "Pod", "v1"),
        TraceSource.AUDIT,
        event_id,
        "admin create",
        at,
        at + 10,
        {"audit.verb": "create"},
    )


def test_chain_of_object_spans_then_the_event_span() -> None:
    graph = OwnerGraph()
    deploy = ObjectRef(key("deployments", "d"), "d1", "Deployment", "v1")
    rs = ObjectRef(key("replicasets", "d-1"), "r1", "ReplicaSet", "v1")
    graph.set_owner(rs, deploy)
    graph.set_owner(ObjectRef(key("pods", "p")), rs)
    aggregator = aggregators.create("hierarchy", 1800)
    spans = aggregator.aggregate(event("p", T0 + 60, "a1"), graph)
    window = window_of(T0, WINDOW_US)
    trace = ids.trace_id(deploy.key, window)
    assert [s.name for s in spans] == ["pods/p", "replicasets.apps/d-1", "deployments.apps/d", "admin create"]
    assert {s.trace_id for s in spans} == {trace}
    pod_span, rs_span, deploy_span, audit_span = spans
    assert pod_span.parent_id == rs_span.span_id and rs_span.parent_id == deploy_span.span_id
    assert deploy_span.parent_id is None and (deploy_span.start_us, deploy_span.end_us) == (
        T0,
        T0 + WINDOW_US,
    )
    assert audit_span.parent_id == pod_span.span_id and audit_span.tags["kelemetry.trace_source"] == "audit"
    assert rs_span.uid == "r1" and rs_span.kind == "ReplicaSet"

    again = aggregator.aggregate(event("p", T0 + 120, "a2"), graph)
    assert [s.name for s in again] == ["admin create"]  # the chain is already written
    later = aggregator.aggregate(event("p", T0 + WINDOW_US + 1, "a3"), graph)
    assert len(later) == 4 and later[0].trace_id == ids.trace_id(deploy.key, window + 1) != trace
    assert len(aggregator.object_chain(key("pods", "p"), window, graph)) == 3
    aggregator.forget()
    assert len(aggregator.aggregate(event("p", T0 + 180, "a4"), graph)) == 4


def test_unknown_aggregator_and_bad_window() -> None:
    with pytest.raises(ValueError, match="unknown aggregator 'nope'"):
        aggregators.create("nope", 1800)
    with pytest.raises(ValueError):
        aggregators.create("hierarchy", 0)
