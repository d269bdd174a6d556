"""The hierarchy aggregator: the whole owner tree of a root object in one window is one trace.

For an event on a Pod owned by a ReplicaSet owned by a Deployment, it yields the object spans
Deployment ← ReplicaSet ← Pod for the event's window (trace id from the root and the window),
then the event's span under the Pod's object span. Object spans already written with the same
trace and parent are remembered, so a burst of events on one object writes its chain once.
"""

from __future__ import annotations

from aggregators import ids
from aggregators.windows import window_bounds, window_of
from kelemetry.linker.graph import OwnerGraph
from kelemetry.model import tags
from kelemetry.model.events import Event, TraceSource
from kelemetry.model.objects import Incarnation, ObjectRef
from kelemetry.model.spans import SpanRecord

_MEMO_LIMIT = 200_000


class HierarchyAggregator:
    def __init__(self, window_seconds: int = 1800) -> None:
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        self.window_us = window_seconds * 1_000_000
        # (object span id) -> (trace id, parent id, kind) last written; bounded, a miss only costs an
        # idempotent rewrite. The kind is part of it so an owner first known only by reference gets
        # rewritten once its own input says what it is.
        self._written: dict[int, tuple[int, int | None, str]] = {}

    def aggregate(self, event: Event, graph: OwnerGraph) -> list[SpanRecord]:
        window = window_of(event.start_us, self.window_us)
        obj = event.object
        node = obj.incarnation
        chain = graph.chain(node)
        trace = ids.trace_id(chain[-1], window)
        spans = self._chain_spans(chain, obj, window, trace, graph, force=False)
        key = obj.key
        spans.append(
            SpanRecord(
                trace_id=trace,
                span_id=ids.event_span_id(key, event.source, event.event_id),
                parent_id=ids.object_span_id(node, window),
                source=event.source,
                name=event.title,
                start_us=event.start_us,
                end_us=event.end_us,
                key=key,
                object_id=ids.object_id(node),
                window=window,
                uid=obj.uid,
                kind=obj.kind,
                version=obj.version,
                tags={tags.TRACE_SOURCE: str(event.source), **event.tags},
                logs=event.logs,
                error=event.error,
            )
        )
        return spans

    def forget(self) -> None:
        self._written.clear()

    def object_chain(self, obj: Incarnation, window: int, graph: OwnerGraph) -> list[SpanRecord]:
        chain = graph.chain(obj)
        trace = ids.trace_id(chain[-1], window)
        return self._chain_spans(chain, graph.ref(obj), window, trace, graph, force=True)

    def _chain_spans(
        self,
        chain: list[Incarnation],
        first: ObjectRef,
        window: int,
        trace: int,
        graph: OwnerGraph,
        *,
        force: bool,
    ) -> list[SpanRecord]:
        written = self._written
        spans: list[SpanRecord] = []
        start, end = window_bounds(window, self.window_us)
        for i, node in enumerate(chain):
            ref = first if i == 0 else graph.ref(node)
            key = node.key
            span_id = ids.object_span_id(node, window)
            parent = ids.object_span_id(chain[i + 1], window) if i + 1 < len(chain) else None
            state = (trace, parent, ref.kind)
            if not force and written.get(span_id) == state:
                if i > 0:
                    break  # this owner's own chain was written with it
                continue
            if len(written) >= _MEMO_LIMIT:
                written.clear()
            written[span_id] = state
            spans.append(
                SpanRecord(
                    trace_id=trace,
                    span_id=span_id,
                    parent_id=parent,
                    source=TraceSource.OBJECT,
                    name=key.display,
                    start_us=start,
                    end_us=end,
                    key=key,
                    object_id=ids.object_id(node),
                    window=window,
                    uid=node.uid,
                    kind=ref.kind,
                    version=ref.version,
                    tags={tags.TRACE_SOURCE: str(TraceSource.OBJECT), tags.PSEUDO: True},
                )
            )
        return spans
