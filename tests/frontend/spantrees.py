"""Assembled traces built span by span, for the answers read from them (rollouts, stuck Pods):
a workload, its owned objects, and their requests, Events and diffs at chosen moments."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from frontend.types import AssembledTrace, SpanNode
from kelemetry.model import tags
from kelemetry.model.events import Log, TagValue, TraceSource
from kelemetry.model.objects import KnownObject, ObjectKey
from kelemetry.model.spans import SpanRecord

T0 = 1_800_000_000_000_000
"""A moment in 2027, µs: test times are seconds after it."""
TRACE_ID = 0xABC
_ids = itertools.count(1)
_KINDS = {
    "deployments": ("apps", "Deployment"),
    "replicasets": ("apps", "ReplicaSet"),
    "statefulsets": ("apps", "StatefulSet"),
    "daemonsets": ("apps", "DaemonSet"),
    "controllerrevisions": ("apps", "ControllerRevision"),
    "pods": ("", "Pod"),
    "services": ("", "Service"),
}


def us(second: float) -> int:
    return T0 + int(second * 1_000_000)


@dataclass
class Obj:
    """One object of the tree: its pseudo-span node, to which requests and Events are added."""

    node: SpanNode
    children: list[Obj] = field(default_factory=list)

    @property
    def span(self) -> SpanRecord:
        return self.node.span

    @property
    def known(self) -> KnownObject:
        span = self.span
        return KnownObject(span.object_id, span.key, span.uid, span.kind, span.version)

    def owns(self, resource: str, name: str) -> Obj:
        child = obj(resource, name)
        self.node.children.append(child.node)
        self.children.append(child)
        return child

    def _add(
        self, source: TraceSource, name: str, second: float, span_tags: dict[str, TagValue], logs: list[Log]
    ) -> None:
        parent = self.span
        record = SpanRecord(
            trace_id=TRACE_ID,
            span_id=next(_ids),
            parent_id=parent.span_id,
            source=source,
            name=name,
            start_us=us(second),
            end_us=us(second) + 1000,
            key=parent.key,
            object_id=parent.object_id,
            window=0,
            uid=parent.uid,
            kind=parent.kind,
            version="v1",
            tags={tags.TRACE_SOURCE: source.value, **span_tags},
            logs=tuple(logs),
            error=source is TraceSource.AUDIT and _code(span_tags) >= 400,
        )
        self.node.children.append(SpanNode(record))

    def request(
        self,
        second: float,
        verb: str,
        *diff: str,
        user: str = "admin",
        agent: str = "kubectl/v1.33.0",
        subresource: str = "",
        code: int = 200,
    ) -> Obj:
        span_tags: dict[str, TagValue] = {
            tags.AUDIT_USER: user,
            tags.AUDIT_USER_AGENT: agent,
            tags.AUDIT_VERB: verb,
            tags.AUDIT_CODE: code,
            tags.AUDIT_ID: f"audit-{next(_ids)}",
        }
        if subresource:
            span_tags[tags.AUDIT_SUBRESOURCE] = subresource
        logs = [Log("diff", "\n".join(diff))] if diff else []
        self._add(TraceSource.AUDIT, f"{user} {verb}", second, span_tags, logs)
        return self

    def change(self, second: float, *diff: str) -> Obj:
        """A watched change no audit event claimed."""
        self._add(TraceSource.CHANGE, "change", second, {}, [Log("diff", "\n".join(diff))])
        return self

    def event(self, second: float, reason: str, message: str, *, warning: bool = True, count: int = 1) -> Obj:
        span_tags: dict[str, TagValue] = {
            tags.EVENT_REASON: reason,
            tags.EVENT_TYPE: "Warning" if warning else "Normal",
            tags.EVENT_COUNT: count,
        }
        self._add(TraceSource.EVENT, reason, second, span_tags, [Log("message", message)])
        return self


def _code(span_tags: dict[str, TagValue]) -> int:
    code = span_tags.get(tags.AUDIT_CODE)
    return code if isinstance(code, int) else 200


def obj(resource: str, name: str, namespace: str = "default") -> Obj:
    group, kind = _KINDS[resource]
    object_id = next(_ids)
    record = SpanRecord(
        trace_id=TRACE_ID,
        span_id=next(_ids),
        parent_id=None,
        source=TraceSource.OBJECT,
        name=f"{resource}/{name}",
        start_us=T0,
        end_us=T0 + 3600 * 1_000_000,
        key=ObjectKey.make("c1", group, resource, namespace, name),
        object_id=object_id,
        window=0,
        uid=f"uid-{name}",
        kind=kind,
        version="v1",
        tags={tags.TRACE_SOURCE: TraceSource.OBJECT.value, tags.PSEUDO: True},
    )
    return Obj(SpanNode(record))


def trace_of(root: Obj, target: Obj | None = None) -> AssembledTrace:
    """The tree as a backend assembles it (each object's requests first, in time order)."""
    for node in [root.node, *(n for n in _walk(root.node))]:
        node.children.sort(key=lambda c: (c.span.source is TraceSource.OBJECT, c.span.start_us))
    return AssembledTrace(TRACE_ID, root.node, (target or root).known)


def _walk(node: SpanNode) -> list[SpanNode]:
    found = []
    stack = list(node.children)
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(current.children)
    return found
