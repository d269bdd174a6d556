"""Assemble one object's trace from its spans: pure functions, no storage.

The spans of the traces an object is part of over a range (one trace per window) are merged into
one tree: each object's per-window spans become one span covering all its windows, and every
request, Event and watched change hangs under its object. The backends feed this their spans
(``frontend.backend`` from the embedded store, ``frontend.jaegerstore`` from Jaeger); scopes and
display modes work on the result.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

from frontend.types import AssembledTrace, SpanNode
from kelemetry import errors
from kelemetry.model.events import TraceSource
from kelemetry.model.objects import KnownObject
from kelemetry.model.spans import SpanRecord


def assemble(
    spans: Sequence[SpanRecord], target: KnownObject, start_us: int | None, end_us: int | None
) -> AssembledTrace:
    """The merged hierarchy ``target`` belongs to over the range, from spans that hold every span of
    the traces it is part of there (spans of other traces are left out); NotFound when neither it nor
    anything it owns had activity in the range."""
    traces = {s.trace_id for s in spans if s.object_id == target.object_id and overlaps(s, start_us, end_us)}
    if traces:
        trace = merge([s for s in spans if s.trace_id in traces and overlaps(s, start_us, end_us)], target)
        if has_activity(trace):
            return trace
    raise errors.NotFound(f"{target.key.display} has no activity in the requested time range")


def has_activity(trace: AssembledTrace) -> bool:
    """Whether the looked-up object, or anything it owns, had a request, Event or change in the
    trace: an object span alone only says that a window was open."""
    stack = [node for node in trace.walk() if node.span.object_id == trace.target.object_id][:1]
    while stack:
        node = stack.pop()
        if node.span.source is not TraceSource.OBJECT:
            return True
        stack.extend(node.children)
    return False


def overlaps(span: SpanRecord, start_us: int | None, end_us: int | None) -> bool:
    return (start_us is None or span.end_us >= start_us) and (end_us is None or span.start_us <= end_us)


def merge(spans: list[SpanRecord], target: KnownObject) -> AssembledTrace:
    """Fold per-window object spans into one per object and build the tree."""
    by_object: dict[int, list[SpanRecord]] = defaultdict(list)
    events: list[SpanRecord] = []
    for span in spans:
        if span.source is TraceSource.OBJECT:
            by_object[span.object_id].append(span)
        else:
            events.append(span)

    span_object = {s.span_id: s.object_id for group in by_object.values() for s in group}
    merged: dict[int, SpanRecord] = {}
    parent_object: dict[int, int | None] = {}
    for object_id, group in by_object.items():
        group.sort(key=lambda s: s.window)
        first, latest = group[0], group[-1]
        uid = next((s.uid for s in reversed(group) if s.uid), "")
        kind = next((s.kind for s in group if s.kind), "")
        version = next((s.version for s in group if s.version), "")
        merged[object_id] = replace(
            first,
            start_us=first.start_us,
            end_us=latest.end_us,
            uid=uid,
            kind=kind,
            version=version,
            parent_id=None,
        )
        parent_object[object_id] = span_object.get(latest.parent_id) if latest.parent_id is not None else None

    nodes = {object_id: SpanNode(span) for object_id, span in merged.items()}
    roots: list[SpanNode] = []
    for object_id, node in nodes.items():
        owner = parent_object[object_id]
        if owner is not None and owner in nodes and owner != object_id:
            node.span = replace(node.span, parent_id=nodes[owner].span.span_id)
            nodes[owner].children.append(node)
        else:
            roots.append(node)
    for event in events:
        holder = nodes.get(event.object_id)
        if holder is None:
            continue
        if event.parent_id != holder.span.span_id:
            event = event.with_parent(holder.span.span_id)
        holder.children.append(SpanNode(event))

    warnings: list[str] = []
    main = _main_root(roots, nodes, target)
    for extra in roots:
        if extra is not main:
            warnings.append(f"{extra.span.key.display} was a separate root in an earlier window")
            extra.span = replace(extra.span, parent_id=main.span.span_id)
            main.children.append(extra)
    _sort(main)
    trace_id = main.span.trace_id
    return AssembledTrace(trace_id=trace_id, root=main, target=target, warnings=tuple(warnings))


def _main_root(roots: list[SpanNode], nodes: dict[int, SpanNode], target: KnownObject) -> SpanNode:
    if len(roots) == 1:
        return roots[0]
    parent_of = {id(child): node for node in nodes.values() for child in node.children}
    node = nodes.get(target.object_id)
    while node is not None and id(node) in parent_of:
        node = parent_of[id(node)]
    return node if node is not None else roots[0]


def _sort(node: SpanNode) -> None:
    # Requests in time order first, then owned objects by when they were first active.
    def first_activity(child: SpanNode) -> int:
        starts = [c.span.start_us for c in child.children if c.span.source is not TraceSource.OBJECT]
        return min(starts) if starts else child.span.start_us

    node.children.sort(key=lambda c: (c.span.source is TraceSource.OBJECT, first_activity(c), c.span.name))
    for child in node.children:
        _sort(child)
