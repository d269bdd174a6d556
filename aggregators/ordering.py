"""Events with whole-second times, placed after the requests that caused them.

core/v1 Events say when they happened in whole seconds, so "Scaled up replica set web-5d4 to 4"
at 10:01:03 would be drawn at 10:01:03.000, before the ``kubectl scale`` at 10:01:03.278 that
caused it. But every write and every Event has a resourceVersion, and resourceVersions are etcd
revisions: one counter for the whole cluster, in commit order. An Event created after a request
committed has a higher revision, so within its second it belongs after every request of its
hierarchy (the trace it lands in) with a lower revision: it is drawn at the latest end of those
requests inside that second (or at the second's start when there is none), never earlier.

Input arrives in any order (the Events watch usually runs ahead of the batched audit webhook), so
placed Events are remembered per trace for a while and moved when a request that should precede
them shows up later; the result is the same whichever arrived first. An Event that repeated over
several seconds keeps its first occurrence where it said and is placed by its last one.

Limits: revisions are comparable only within one etcd, so a cluster that stores Events in a
separate etcd (``--etcd-servers-overrides``) gets Events ordered by this rule arbitrarily within
their second; the memory is per process, so a request and an Event split by a restart are not
ordered.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import TypeVar

from kelemetry.model import tags
from kelemetry.model.spans import SpanRecord

T = TypeVar("T")
MAX_TRACES = 20_000
PER_TRACE = 512


@dataclass(slots=True)
class _Placed:
    order: int
    second: int
    precision_us: int
    first_us: int
    span: SpanRecord


class EventPlacer:
    def __init__(self, max_traces: int = MAX_TRACES, per_trace: int = PER_TRACE) -> None:
        self.max_traces = max_traces
        self.per_trace = per_trace
        # trace id -> (resourceVersion, end) of recent requests
        self._requests: OrderedDict[int, list[tuple[int, int]]] = OrderedDict()
        self._events: OrderedDict[int, list[_Placed]] = OrderedDict()

    def place(self, span: SpanRecord, precision_us: int, order: int | None) -> SpanRecord:
        """The span of an Event, moved within its second after the requests it must follow."""
        if precision_us <= 1 or order is None:
            return span
        second = span.end_us - span.end_us % precision_us
        placed = _Placed(order, second, precision_us, span.start_us, span)
        placed.span = self._moved(placed, self._latest_before(span.trace_id, placed))
        events = _slot(self._events, span.trace_id, self.max_traces)
        events[:] = [p for p in events if p.span.span_id != span.span_id]
        events.append(placed)
        del events[: -self.per_trace]
        return placed.span

    def note_request(self, span: SpanRecord) -> list[SpanRecord]:
        """Remember a request; returns Event spans it moves (they were placed before it)."""
        text = span.tags.get(tags.RESOURCE_VERSION)
        if not isinstance(text, str) or not text.isdigit():
            return []
        rv = int(text)
        requests = _slot(self._requests, span.trace_id, self.max_traces)
        requests.append((rv, span.end_us))
        del requests[: -self.per_trace]
        moved: list[SpanRecord] = []
        for placed in self._events.get(span.trace_id, ()):
            if (
                rv < placed.order
                and placed.second <= span.end_us < placed.second + placed.precision_us
                and placed.span.end_us < span.end_us
            ):
                placed.span = self._moved(placed, span.end_us)
                moved.append(placed.span)
        return moved

    def _latest_before(self, trace_id: int, placed: _Placed) -> int:
        latest = placed.second
        for rv, end in self._requests.get(trace_id, ()):
            if rv < placed.order and placed.second <= end < placed.second + placed.precision_us:
                latest = max(latest, end)
        return latest

    @staticmethod
    def _moved(placed: _Placed, at_us: int) -> SpanRecord:
        at = min(max(at_us, placed.second), placed.second + placed.precision_us - 1)
        start = at if placed.first_us >= placed.second else placed.first_us
        span = placed.span
        if span.start_us == start and span.end_us == at:
            return span
        return replace(span, start_us=start, end_us=at)


def _slot(table: OrderedDict[int, list[T]], key: int, limit: int) -> list[T]:
    found = table.get(key)
    if found is None:
        found = table[key] = []
        while len(table) > limit:
            table.popitem(last=False)
    else:
        table.move_to_end(key)
    return found
