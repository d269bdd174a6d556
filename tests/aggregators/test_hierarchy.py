"""The hierarchy aggregator (aggregators.hierarchy), epoch-aligned windows (aggregators.windows)
and the aggregator registry (aggregators.create).

For a Pod owned by a ReplicaSet owned by a Deployment: the object spans of all three for the
event's window in one trace, then the event's span; the memo of written chains; new windows;
re-owning, late kinds and recreated objects; object_chain(); forget().
"""

from __future__ import annotations

import pytest

import aggregators
from aggregators import ids
from aggregators.hierarchy import HierarchyAggregator
from aggregators.windows import window_bounds, window_of
from kelemetry.linker.graph import OwnerGraph
from kelemetry.model.events import Event, Log, TraceSource
from kelemetry.model.objects import ObjectKey, ObjectRef
from kelemetry.model.spans import SpanRecord
from kelemetry.settings import TraceSettings

WINDOW_S = 1800
WINDOW_US = WINDOW_S * 1_000_000
T0 = 1_714_557_600_000_000  # 2024-05-01T10:00:00Z, a window boundary
W0 = T0 // WINDOW_US

DEPLOY = ObjectRef(ObjectKey.make("c", "apps", "deployments", "ns", "web"), "d1", "Deployment", "v1")
RS = ObjectRef(ObjectKey.make("c", "apps", "replicasets", "ns", "web-1"), "r1", "ReplicaSet", "v1")
RS_2 = ObjectRef(ObjectKey.make("c", "apps", "replicasets", "ns", "web-2"), "r2", "ReplicaSet", "v1")
POD = ObjectRef(ObjectKey.make("c", "", "pods", "ns", "web-1-a"), "p1", "Pod", "v1")
POD_B = ObjectRef(ObjectKey.make("c", "", "pods", "ns", "web-1-b"), "p2", "Pod", "v1")


@pytest.fixture
def graph() -> OwnerGraph:
    owners = OwnerGraph()
    owners.set_owner(RS, DEPLOY)
    owners.set_owner(RS_2, DEPLOY)
    owners.set_owner(POD, RS)
    owners.set_owner(POD_B, RS)
    return owners


@pytest.fixture
def aggregator() -> HierarchyAggregator:
    return HierarchyAggregator(WINDOW_S)


def audit(obj: ObjectRef, at: int, event_id: str, *, error: bool = False) -> Event:
    return Event(
        object=obj,
        source=TraceSource.AUDIT,
        event_id=event_id,
        title="admin update",
        start_us=at,
        end_us=at + 10_000,
        tags={"audit.verb": "update", "audit.id": event_id},
        logs=(Log("error", "Conflict: stale"),) if error else (),
        error=error,
    )


def names(spans: list[SpanRecord]) -> list[str]:
    return [span.name for span in spans]


# ---------------------------------------------------------------------------------------------
# windows


@pytest.mark.parametrize(
    ("time_us", "window"),
    [
        pytest.param(0, 0, id="epoch"),
        pytest.param(T0, W0, id="boundary"),
        pytest.param(T0 - 1, W0 - 1, id="just-before"),
        pytest.param(T0 + WINDOW_US - 1, W0, id="last-microsecond"),
        pytest.param(T0 + WINDOW_US, W0 + 1, id="next-boundary"),
        pytest.param(-1, -1, id="before-epoch"),
    ],
)
def test_window_of_is_aligned_to_the_epoch(time_us: int, window: int) -> None:
    assert window_of(time_us, WINDOW_US) == window


def test_window_bounds_are_half_open_multiples_of_the_length() -> None:
    assert window_bounds(W0, WINDOW_US) == (T0, T0 + WINDOW_US)
    assert window_bounds(0, 60_000_000) == (0, 60_000_000)
    start, end = window_bounds(window_of(T0 + 123, WINDOW_US), WINDOW_US)
    assert start <= T0 + 123 < end and start % WINDOW_US == 0


# ---------------------------------------------------------------------------------------------
# aggregate()


def test_event_yields_the_owner_chain_then_its_span(
    aggregator: HierarchyAggregator, graph: OwnerGraph
) -> None:
    spans = aggregator.aggregate(audit(POD, T0 + 60_000_000, "a1"), graph)
    assert names(spans) == ["pods/web-1-a", "replicasets.apps/web-1", "deployments.apps/web", "admin update"]
    trace = ids.trace_id(DEPLOY.incarnation, W0)
    assert all(span.trace_id == trace for span in spans)
    pod_span, rs_span, deploy_span, event_span = spans
    assert [s.span_id for s in (pod_span, rs_span, deploy_span)] == [
        ids.object_span_id(POD.incarnation, W0),
        ids.object_span_id(RS.incarnation, W0),
        ids.object_span_id(DEPLOY.incarnation, W0),
    ]
    assert pod_span.parent_id == rs_span.span_id
    assert rs_span.parent_id == deploy_span.span_id
    assert deploy_span.parent_id is None
    assert event_span.parent_id == pod_span.span_id


def test_object_spans_cover_exactly_the_window(aggregator: HierarchyAggregator, graph: OwnerGraph) -> None:
    at = T0 + 17 * 60_000_000 + 5
    object_spans = aggregator.aggregate(audit(POD, at, "a1"), graph)[:3]
    for span, ref in zip(object_spans, (POD, RS, DEPLOY), strict=True):
        assert (span.start_us, span.end_us) == (W0 * WINDOW_US, (W0 + 1) * WINDOW_US)
        assert span.window == W0
        assert span.source is TraceSource.OBJECT
        assert span.tags == {"kelemetry.trace_source": "object", "kelemetry.pseudo": True}
        assert (span.key, span.uid, span.kind, span.version) == (ref.key, ref.uid, ref.kind, ref.version)
        assert span.object_id == ids.object_id(ref.incarnation)
        assert span.logs == () and not span.error


def test_event_span_carries_the_event(aggregator: HierarchyAggregator, graph: OwnerGraph) -> None:
    event = audit(POD, T0 + 5, "a1", error=True)
    span = aggregator.aggregate(event, graph)[-1]
    assert span.span_id == ids.event_span_id(POD.key, "audit", "a1")
    assert span.source is TraceSource.AUDIT
    assert (span.start_us, span.end_us) == (event.start_us, event.end_us)
    assert (span.key, span.uid, span.kind, span.version) == (POD.key, "p1", "Pod", "v1")
    assert span.object_id == ids.object_id(POD.incarnation) and span.window == W0
    assert span.tags == {"kelemetry.trace_source": "audit", "audit.verb": "update", "audit.id": "a1"}
    assert span.logs == event.logs and span.error


def test_second_event_in_the_window_yields_only_its_span(
    aggregator: HierarchyAggregator, graph: OwnerGraph
) -> None:
    first = aggregator.aggregate(audit(POD, T0 + 60_000_000, "a1"), graph)
    again = aggregator.aggregate(audit(POD, T0 + 120_000_000, "a2"), graph)
    assert names(again) == ["admin update"]
    assert again[0].trace_id == first[0].trace_id
    assert again[0].parent_id == first[0].span_id
    assert again[0].span_id != first[-1].span_id


def test_sibling_stops_at_the_already_written_owner(
    aggregator: HierarchyAggregator, graph: OwnerGraph
) -> None:
    aggregator.aggregate(audit(POD, T0 + 1, "a1"), graph)
    spans = aggregator.aggregate(audit(POD_B, T0 + 2, "b1"), graph)
    assert names(spans) == ["pods/web-1-b", "admin update"]
    assert spans[0].parent_id == ids.object_span_id(RS.incarnation, W0)
    # The other ReplicaSet's chain shares only the Deployment.
    spans = aggregator.aggregate(audit(RS_2, T0 + 3, "r1"), graph)
    assert names(spans) == ["replicasets.apps/web-2", "admin update"]


def test_new_window_yields_new_object_spans_in_a_new_trace(
    aggregator: HierarchyAggregator, graph: OwnerGraph
) -> None:
    first = aggregator.aggregate(audit(POD, T0 + 60_000_000, "a1"), graph)
    later = aggregator.aggregate(audit(POD, T0 + WINDOW_US, "a2"), graph)
    assert len(later) == 4
    assert {s.trace_id for s in later} == {ids.trace_id(DEPLOY.incarnation, W0 + 1)}
    assert later[0].trace_id != first[0].trace_id
    assert all(s.window == W0 + 1 for s in later)
    assert (later[2].start_us, later[2].end_us) == ((W0 + 1) * WINDOW_US, (W0 + 2) * WINDOW_US)
    assert {s.span_id for s in later[:3]}.isdisjoint(s.span_id for s in first[:3])


def test_event_on_the_last_microsecond_stays_in_its_window(
    aggregator: HierarchyAggregator, graph: OwnerGraph
) -> None:
    spans = aggregator.aggregate(audit(POD, T0 + WINDOW_US - 1, "a1"), graph)
    assert spans[-1].window == W0 and spans[0].end_us == T0 + WINDOW_US


def test_object_without_owner_is_its_own_trace(aggregator: HierarchyAggregator) -> None:
    lone = ObjectRef(ObjectKey.make("c", "", "configmaps", "ns", "cm"), "u", "ConfigMap", "v1")
    spans = aggregator.aggregate(audit(lone, T0, "c1"), OwnerGraph())
    assert names(spans) == ["configmaps/cm", "admin update"]
    assert spans[0].parent_id is None
    assert {s.trace_id for s in spans} == {ids.trace_id(lone.incarnation, W0)}


def test_re_owned_object_writes_its_new_chain(aggregator: HierarchyAggregator, graph: OwnerGraph) -> None:
    aggregator.aggregate(audit(POD, T0, "a1"), graph)
    graph.set_owner(POD, RS_2)
    spans = aggregator.aggregate(audit(POD, T0 + 1, "a2"), graph)
    assert names(spans) == ["pods/web-1-a", "replicasets.apps/web-2", "admin update"]
    assert spans[0].parent_id == spans[1].span_id
    assert spans[1].parent_id == ids.object_span_id(DEPLOY.incarnation, W0)


def test_late_kind_rewrites_the_object_span(aggregator: HierarchyAggregator, graph: OwnerGraph) -> None:
    vague = ObjectRef(POD.key, POD.uid)
    assert aggregator.aggregate(audit(vague, T0, "a1"), graph)[0].kind == ""
    spans = aggregator.aggregate(audit(POD, T0 + 1, "a2"), graph)
    assert names(spans) == ["pods/web-1-a", "admin update"]
    assert (spans[0].uid, spans[0].kind) == ("p1", "Pod")


def test_a_recreated_object_gets_its_own_object_span_under_the_same_owner(
    aggregator: HierarchyAggregator, graph: OwnerGraph
) -> None:
    again = ObjectRef(POD.key, "p1-again", "Pod", "v1")
    graph.set_owner(again, RS)
    first = aggregator.aggregate(audit(POD, T0, "a1"), graph)
    second = aggregator.aggregate(audit(again, T0 + 1, "a2"), graph)
    assert names(second) == ["pods/web-1-a", "admin update"]
    assert second[0].span_id == ids.object_span_id(again.incarnation, W0) != first[0].span_id
    assert second[0].object_id == ids.object_id(again.incarnation) != first[0].object_id
    assert second[0].parent_id == first[1].span_id and second[0].trace_id == first[0].trace_id
    assert second[0].uid == second[1].uid == "p1-again"


def test_event_ids_are_idempotent_across_aggregators(graph: OwnerGraph) -> None:
    # A replay with a fresh aggregator produces the same ids, so the store upserts.
    event = audit(POD, T0 + 42, "a1")
    first = HierarchyAggregator(WINDOW_S).aggregate(event, graph)
    second = HierarchyAggregator(WINDOW_S).aggregate(event, graph)
    assert first == second


# ---------------------------------------------------------------------------------------------
# object_chain() and forget()


def test_object_chain_always_yields_the_chain(aggregator: HierarchyAggregator, graph: OwnerGraph) -> None:
    aggregator.aggregate(audit(POD, T0, "a1"), graph)
    for _ in range(2):
        chain = aggregator.object_chain(POD.incarnation, W0, graph)
        assert names(chain) == ["pods/web-1-a", "replicasets.apps/web-1", "deployments.apps/web"]
        assert {s.trace_id for s in chain} == {ids.trace_id(DEPLOY.incarnation, W0)}
        assert [s.uid for s in chain] == ["p1", "r1", "d1"]
        assert chain[0].parent_id == chain[1].span_id and chain[2].parent_id is None


def test_object_chain_of_another_window(aggregator: HierarchyAggregator, graph: OwnerGraph) -> None:
    chain = aggregator.object_chain(RS.incarnation, W0 + 5, graph)
    assert names(chain) == ["replicasets.apps/web-1", "deployments.apps/web"]
    assert chain[0].start_us == (W0 + 5) * WINDOW_US
    assert chain[0].trace_id == ids.trace_id(DEPLOY.incarnation, W0 + 5)


def test_object_chain_updates_the_memo(aggregator: HierarchyAggregator, graph: OwnerGraph) -> None:
    aggregator.object_chain(POD.incarnation, W0, graph)
    assert names(aggregator.aggregate(audit(POD, T0, "a1"), graph)) == ["admin update"]


def test_forget_writes_the_chain_again(aggregator: HierarchyAggregator, graph: OwnerGraph) -> None:
    aggregator.aggregate(audit(POD, T0, "a1"), graph)
    aggregator.forget()
    assert len(aggregator.aggregate(audit(POD, T0 + 1, "a2"), graph)) == 4


# ---------------------------------------------------------------------------------------------
# Registry


def test_the_default_setting_names_a_registered_aggregator() -> None:
    assert TraceSettings().aggregator in aggregators.registry()


def test_create_builds_an_aggregator_with_the_window() -> None:
    created = aggregators.create("hierarchy", 60)
    assert isinstance(created, HierarchyAggregator)
    assert created.window_us == 60_000_000


def test_create_unknown_name_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown aggregator 'nope'; known: hierarchy"):
        aggregators.create("nope", 1800)


@pytest.mark.parametrize("seconds", [pytest.param(0, id="zero"), pytest.param(-60, id="negative")])
def test_window_must_be_positive(seconds: int) -> None:
    with pytest.raises(ValueError, match="window_seconds must be positive"):
        aggregators.create("hierarchy", seconds)
