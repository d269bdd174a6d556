"""The query side's own types, on its ground floor: every frontend module may import this one, and it
imports nothing of the frontend (the layering is checked by import-linter).

Two trees flow through the query side, one after the other:

- ``AssembledTrace`` of ``SpanNode``: an object's hierarchy over a time range as the backends give it,
  one node per stored span (per-window object spans already merged into one per object);
- ``View`` of ``ViewSpan``: what a display mode makes of it, and what every output format renders
  (Jaeger JSON for the API and ``dump --format json``, the text tree, JSON lines, Parquet).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kelemetry.model.events import TagValue, TraceSource
from kelemetry.model.objects import KnownObject
from kelemetry.model.spans import SpanRecord

# -- asking


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


@dataclass(frozen=True, slots=True)
class Suggestion:
    cluster: str | None = None
    resource: str | None = None
    group: str | None = None
    namespace: str | None = None
    text: str = ""
    limit: int = 20
    prefix_only: bool = False
    """Only names starting with the text (index reads): no pass over every object for a part of a
    name or a uid."""


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    group: str
    resource: str
    kind: str
    objects: int


@dataclass(frozen=True, slots=True)
class Found:
    """An object a lookup found active in its range, and the view that shows it."""

    view_id: str
    target: KnownObject
    incarnations: tuple[KnownObject, ...] = ()
    """The other objects that had the target's name (deleted and created again), newest first."""


# -- the assembled tree


@dataclass(slots=True)
class SpanNode:
    span: SpanRecord
    children: list[SpanNode] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AssembledTrace:
    trace_id: int
    root: SpanNode
    target: KnownObject
    warnings: tuple[str, ...] = ()

    def walk(self) -> list[SpanNode]:
        """Every node, parents before children."""
        nodes: list[SpanNode] = []
        stack = [self.root]
        while stack:
            node = stack.pop()
            nodes.append(node)
            stack.extend(reversed(node.children))
        return nodes


# -- the view tree


@dataclass(frozen=True, slots=True)
class ViewLog:
    timestamp: int
    fields: tuple[tuple[str, TagValue], ...]


@dataclass(slots=True)
class ViewSpan:
    """One span of a view. The transform steps rework these in place, so they are not frozen."""

    span_id: int
    source: str
    operation: str
    start_us: int
    end_us: int
    tags: dict[str, TagValue]
    logs: list[ViewLog] = field(default_factory=list)
    children: list[ViewSpan] = field(default_factory=list)
    record: SpanRecord | None = None
    """The stored span shown (None for spans a mode makes up, such as the per-source groups)."""
    pending: list[SpanRecord] = field(default_factory=list)
    """Requests and Events of an object span not yet shown: folded into logs or expanded into spans."""
    service: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def is_object(self) -> bool:
        return self.source == TraceSource.OBJECT.value

    def walk(self) -> list[ViewSpan]:
        """Every span, parents before children (iterative: hierarchies can be wide)."""
        found: list[ViewSpan] = []
        stack = [self]
        while stack:
            span = stack.pop()
            found.append(span)
            stack.extend(reversed(span.children))
        return found

    def walk_with_parents(self) -> list[tuple[ViewSpan, ViewSpan | None]]:
        """Every span with its parent in the view, parents before children."""
        found: list[tuple[ViewSpan, ViewSpan | None]] = []
        stack: list[tuple[ViewSpan, ViewSpan | None]] = [(self, None)]
        while stack:
            span, parent = stack.pop()
            found.append((span, parent))
            stack.extend((child, span) for child in reversed(span.children))
        return found


@dataclass(frozen=True, slots=True)
class View:
    """A saved view in one display mode: the view tree every output format renders."""

    view_id: str
    """The view trace id (``ff`` + mode id + ``e1e3e7`` + view number), the trace id of every output."""
    root: ViewSpan
    target: KnownObject
    """The object looked up (one incarnation)."""
