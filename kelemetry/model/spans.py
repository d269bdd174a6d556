"""Spans as the aggregators produce them and the store and exporters consume them.

IDs are plain non-negative ints (128-bit trace, 64-bit span); they are derived deterministically
from the input so that replays and retries upsert instead of duplicating.
"""

from __future__ import annotations

from dataclasses import dataclass

from kelemetry.model import tags
from kelemetry.model.events import Log, TagValue, TraceSource
from kelemetry.model.objects import ObjectKey


@dataclass(frozen=True, slots=True)
class SpanRecord:
    trace_id: int
    span_id: int
    parent_id: int | None
    source: TraceSource
    name: str
    start_us: int
    end_us: int
    key: ObjectKey
    object_id: int
    window: int
    uid: str
    kind: str
    version: str
    tags: dict[str, TagValue]
    logs: tuple[Log, ...] = ()
    error: bool = False

    @property
    def trace_hex(self) -> str:
        return f"{self.trace_id:032x}"

    @property
    def span_hex(self) -> str:
        return f"{self.span_id:016x}"

    def with_parent(self, parent_id: int | None) -> SpanRecord:
        """A copy under another parent; several times cheaper than ``dataclasses.replace``, which
        matters when a view re-parents thousands of request spans."""
        return SpanRecord(
            self.trace_id,
            self.span_id,
            parent_id,
            self.source,
            self.name,
            self.start_us,
            self.end_us,
            self.key,
            self.object_id,
            self.window,
            self.uid,
            self.kind,
            self.version,
            self.tags,
            self.logs,
            self.error,
        )


def span_tags(span: SpanRecord) -> dict[str, TagValue]:
    """Object-key tags followed by the span's own, as exported and shown."""
    key = span.key
    merged: dict[str, TagValue] = {
        tags.CLUSTER: key.cluster,
        tags.GROUP: key.group,
        tags.VERSION: span.version,
        tags.RESOURCE: key.resource,
        tags.NAMESPACE: key.namespace,
        tags.NAME: key.name,
        tags.UID: span.uid,
        tags.KIND: span.kind,
    }
    merged.update(span.tags)
    if span.error:
        merged[tags.ERROR] = True
    return merged
