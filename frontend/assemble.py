"""Assemble the trace of one object from the store.

The object's spans in the requested range name the traces it is part of (one per window); those
traces are loaded whole and merged into one tree: each object's per-window spans become one span
covering all its windows, and every request span hangs under its object. The result is what the
dump formats and the Jaeger-shaped JSON render.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from jaeger import model as jaeger_model
from kelemetry import errors
from kelemetry.model.events import TraceSource
from kelemetry.model.objects import KnownObject, ObjectKey
from kelemetry.model.spans import SpanRecord, span_tags
from kelemetry.store.sqlite import StoreReader


@dataclass(frozen=True, slots=True)
class ObjectQuery:
    cluster: str
    resource: str
    name: str
    group: str | None = None
    namespace: str | None = None
    start_us: int | None = None
    end_us: int | None = None
    uid: str | None = None
    """One incarnation of the name; None: the newest one active in the range."""

    def describe(self) -> str:
        resource = f"{self.resource}.{self.group}" if self.group else self.resource
        if self.namespace is None:
            where = ""
        elif self.namespace:
            where = f" in namespace {self.namespace}"
        else:
            where = " (cluster-scoped)"
        cluster = f" (cluster {self.cluster})" if self.cluster else " (any cluster)"
        uid = f" with uid {self.uid}" if self.uid else ""
        return f"{resource}/{self.name}{where}{uid}{cluster}"


@dataclass
class SpanNode:
    span: SpanRecord
    children: list[SpanNode] = field(default_factory=list)


@dataclass
class AssembledTrace:
    trace_id: int
    root: SpanNode
    target: KnownObject
    warnings: list[str] = field(default_factory=list)
    incarnations: list[KnownObject] = field(default_factory=list)
    """The other objects that had the target's name (deleted and created again), newest first."""

    def walk(self) -> list[SpanNode]:
        """Every node, parents before children."""
        nodes: list[SpanNode] = []
        stack = [self.root]
        while stack:
            node = stack.pop()
            nodes.append(node)
            stack.extend(reversed(node.children))
        return nodes

    def walk_with_parents(self) -> list[tuple[SpanNode, int | None]]:
        """Every node with its parent's span id in this tree (the stored parent of a request span
        is its window's object span, which merging may have folded away)."""
        found: list[tuple[SpanNode, int | None]] = []
        stack: list[tuple[SpanNode, int | None]] = [(self.root, None)]
        while stack:
            node, parent = stack.pop()
            found.append((node, parent))
            stack.extend((child, node.span.span_id) for child in reversed(node.children))
        return found


def by_key(rows: list[KnownObject]) -> list[list[KnownObject]]:
    """Rows grouped by object key, each group's incarnations newest first (by first activity)."""
    groups: dict[ObjectKey, list[KnownObject]] = defaultdict(list)
    for row in rows:
        groups[row.key].append(row)
    for group in groups.values():
        group.sort(key=lambda r: (r.first_us or r.last_us or 0, r.last_us or 0), reverse=True)
    return list(groups.values())


def ambiguity(query: ObjectQuery, groups: list[list[KnownObject]]) -> str:
    keys = [group[0].key for group in groups]
    several_groups = len({k.group for k in keys}) > 1
    options = ", ".join(
        f"--group {k.group!r} --namespace {k.namespace!r}"
        if several_groups
        else f"--namespace {k.namespace!r}"
        for k in keys
    )
    return f"{query.describe()} is ambiguous; narrow it with one of: {options}"


def open_newest(
    incarnations: list[KnownObject],
    open_one: Callable[[KnownObject], AssembledTrace],
) -> AssembledTrace:
    """The trace of the newest incarnation that had activity (NotFound when none had), listing the
    others so each can be opened by its uid."""
    for row in incarnations:
        try:
            trace = open_one(row)
        except errors.NotFound:
            continue
        trace.incarnations = [other for other in incarnations if other is not row]
        return trace
    raise errors.NotFound("no activity in the requested time range")


def find_rows(reader: StoreReader, query: ObjectQuery) -> list[KnownObject]:
    """Every incarnation of the objects a query's key fields match (the uid is not applied)."""
    return reader.find_objects(
        cluster=query.cluster or None,
        resource=query.resource,
        name=query.name,
        namespace=query.namespace,
        group=query.group,
    )


def choose(rows: list[KnownObject], query: ObjectQuery) -> tuple[list[KnownObject], list[KnownObject]]:
    """(incarnations to try, newest first; the other incarnations of the same name) for a query;
    NotFound when nothing matches or the key fields match several objects."""
    if query.uid is not None:
        chosen = [row for row in rows if row.uid == query.uid]
        if not chosen:
            raise errors.NotFound(f"no object {query.describe()} in the store")
        key = chosen[0].key
        same_name = by_key([row for row in rows if row.key == key and row.uid != query.uid])
        return chosen[:1], same_name[0] if same_name else []
    groups = by_key(rows)
    if not groups:
        raise errors.NotFound(f"no object {query.describe()} in the store")
    if len(groups) > 1:
        raise errors.NotFound(ambiguity(query, groups))
    return groups[0], []


def assemble(reader: StoreReader, query: ObjectQuery) -> AssembledTrace:
    """The trace of the object a query names: the newest incarnation of the name with activity in
    the range, or the one its uid names; the other incarnations are listed on the trace."""
    tried, others = choose(find_rows(reader, query), query)
    try:
        trace = open_newest(tried, lambda row: trace_of(reader, row, query.start_us, query.end_us))
    except errors.NotFound:
        raise errors.NotFound(f"{query.describe()} has no activity in the requested time range") from None
    trace.incarnations = [*trace.incarnations, *others]
    return trace


def trace_of(
    reader: StoreReader, target: KnownObject, start_us: int | None, end_us: int | None
) -> AssembledTrace:
    """The merged hierarchy ``target`` belongs to over the range; NotFound when it had no activity."""
    own = reader.spans_of_objects([target.object_id], start_us, end_us)
    if own:
        spans = reader.spans_of_traces({span.trace_id for span in own})
        trace = merge([s for s in spans if overlaps(s, start_us, end_us)], target)
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
    return AssembledTrace(trace_id=trace_id, root=main, target=target, warnings=warnings)


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


# ---------------------------------------------------------------------------------------------
# Jaeger JSON

_SERVICES = {
    TraceSource.OBJECT: "p1",
    TraceSource.AUDIT: "p2",
    TraceSource.EVENT: "p3",
    TraceSource.CHANGE: "p4",
}


def to_jaeger(trace: AssembledTrace) -> jaeger_model.Trace:
    trace_hex = f"{trace.trace_id:032x}"
    spans: list[jaeger_model.Span] = []
    for node, parent in trace.walk_with_parents():
        span = node.span
        references: list[jaeger_model.Reference] = []
        if parent is not None:
            references.append({"refType": "CHILD_OF", "traceID": trace_hex, "spanID": f"{parent:016x}"})
        spans.append(
            {
                "traceID": trace_hex,
                "spanID": span.span_hex,
                "flags": 1,
                "operationName": span.name,
                "references": references,
                "startTime": span.start_us,
                "duration": max(span.end_us - span.start_us, 0),
                "tags": [jaeger_model.key_value(k, v) for k, v in span_tags(span).items()],
                "logs": [
                    {
                        "timestamp": span.start_us,
                        "fields": [
                            jaeger_model.key_value("event", log.kind),
                            jaeger_model.key_value("message", log.message),
                        ],
                    }
                    for log in span.logs
                ],
                "processID": _SERVICES[span.source],
                "warnings": None,
            }
        )
    # The three classic services are always listed (tools expect them); "change" only when used.
    used = {span["processID"] for span in spans}
    processes: dict[str, jaeger_model.Process] = {
        pid: {"serviceName": source.value, "tags": []}
        for source, pid in _SERVICES.items()
        if source is not TraceSource.CHANGE or pid in used
    }
    return {"traceID": trace_hex, "spans": spans, "processes": processes, "warnings": trace.warnings or None}
