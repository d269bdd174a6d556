"""The Jaeger backend: the query side reading our spans back from a real Jaeger.

The collector exports each trace source as a Jaeger service (``object``, ``audit``, ``event``,
``change``) with the object key as span tags. An object is found by searching the ``object``
service for its key tags; every trace that search returns is one window of the object's root
hierarchy, exported whole, so merging them gives the same tree the embedded store gives.
"""

from __future__ import annotations

import time

from aggregators import ids
from frontend.assemble import AssembledTrace, ObjectQuery, has_activity, merge, overlaps
from frontend.backend import ResourceInfo, Suggestion
from jaeger import model as jaeger_model
from jaeger.client import JaegerClient, JaegerError
from kelemetry import errors
from kelemetry.model import tags
from kelemetry.model.events import Log, TagValue, TraceSource
from kelemetry.model.objects import Incarnation, KnownObject, ObjectKey
from kelemetry.model.spans import SpanRecord

DEFAULT_LOOKBACK_US = 7 * 86_400 * 1_000_000
WINDOW_US = 1800 * 1_000_000
_SEARCH_LIMIT = 1000
# Tags Jaeger or the OTel SDK add on export; they are not ours.
_FOREIGN_TAGS = ("otel.", "span.kind", "internal.span.format", "telemetry.sdk.", "service.")
_KEY_TAGS = {
    tags.CLUSTER,
    tags.GROUP,
    tags.VERSION,
    tags.RESOURCE,
    tags.NAMESPACE,
    tags.NAME,
    tags.UID,
    tags.KIND,
}


def key_tags(key: ObjectKey) -> dict[str, str]:
    """The span tags naming an object, as exported."""
    return {
        tags.CLUSTER: key.cluster,
        tags.GROUP: key.group,
        tags.RESOURCE: key.resource,
        tags.NAMESPACE: key.namespace,
        tags.NAME: key.name,
    }


def _tag_map(items: list[jaeger_model.KeyValue]) -> dict[str, TagValue]:
    found: dict[str, TagValue] = {}
    for item in items:
        value = item["value"]
        if isinstance(value, float):
            value = str(value)
        found[item["key"]] = value
    return found


def record_of(span: jaeger_model.Span, trace_id: int) -> SpanRecord | None:
    """A Jaeger span we exported, back as a SpanRecord; None for spans that are not ours."""
    span_tags = _tag_map(span["tags"])
    source_text = str(span_tags.get(tags.TRACE_SOURCE, ""))
    try:
        source = TraceSource(source_text)
    except ValueError:
        return None
    if tags.RESOURCE not in span_tags or tags.NAME not in span_tags:
        return None
    key = ObjectKey.make(
        str(span_tags.get(tags.CLUSTER, "")),
        str(span_tags.get(tags.GROUP, "")),
        str(span_tags[tags.RESOURCE]),
        str(span_tags.get(tags.NAMESPACE, "")),
        str(span_tags[tags.NAME]),
    )
    own: dict[str, TagValue] = {
        k: v for k, v in span_tags.items() if k not in _KEY_TAGS and not k.startswith(_FOREIGN_TAGS)
    }
    error = own.pop(tags.ERROR, False) in (True, "true")
    parent = next((ref["spanID"] for ref in span["references"] if ref["refType"] == "CHILD_OF"), None)
    logs: list[Log] = []
    for entry in span["logs"]:
        fields = _tag_map(entry["fields"])
        if "event" in fields:
            logs.append(Log(str(fields["event"]), str(fields.get("message", ""))))
    start = int(span["startTime"])
    uid = str(span_tags.get(tags.UID, ""))
    return SpanRecord(
        trace_id=trace_id,
        span_id=int(span["spanID"], 16),
        parent_id=None if parent is None else int(parent, 16),
        source=source,
        name=span["operationName"],
        start_us=start,
        end_us=start + int(span["duration"]),
        key=key,
        object_id=ids.object_id(Incarnation(key, uid)),
        window=start // WINDOW_US,
        uid=uid,
        kind=str(span_tags.get(tags.KIND, "")),
        version=str(span_tags.get(tags.VERSION, "")),
        tags=own,
        logs=tuple(logs),
        error=error,
    )


def records_of(traces: list[jaeger_model.Trace]) -> list[SpanRecord]:
    found: dict[int, SpanRecord] = {}
    for trace in traces:
        trace_id = int(trace["traceID"], 16)
        for span in trace["spans"]:
            record = record_of(span, trace_id)
            if record is not None:
                found[record.span_id] = record
    return list(found.values())


class JaegerBackend:
    name = "jaeger"

    def __init__(self, client: JaegerClient, *, lookback_us: int = DEFAULT_LOOKBACK_US) -> None:
        self.client = client
        self.lookback_us = lookback_us
        self._recent: tuple[float, list[SpanRecord]] | None = None

    def _range(self, start_us: int | None, end_us: int | None) -> tuple[int, int]:
        end = end_us if end_us is not None else time.time_ns() // 1000
        return (start_us if start_us is not None else end - self.lookback_us), end

    def _search(
        self, search_tags: dict[str, str], start_us: int | None, end_us: int | None
    ) -> list[SpanRecord]:
        start, end = self._range(start_us, end_us)
        # Jaeger matches spans by their start, and an object span starts at its window's start: search
        # from the window the range starts in, then keep what overlaps the range (callers filter).
        start -= start % WINDOW_US
        try:
            traces = self.client.find_traces(
                service=TraceSource.OBJECT.value,
                # Empty values (the core group, cluster-scoped namespaces) are checked here, not by Jaeger.
                tags={k: v for k, v in search_tags.items() if v},
                start_us=start,
                end_us=end,
                limit=_SEARCH_LIMIT,
            )
        except JaegerError as exc:
            raise errors.BackendError(str(exc)) from exc
        return records_of(traces)

    def find_objects(self, query: ObjectQuery) -> list[KnownObject]:
        wanted: dict[str, str] = {tags.RESOURCE: query.resource, tags.NAME: query.name}
        if query.cluster:
            wanted[tags.CLUSTER] = query.cluster
        if query.namespace is not None:
            wanted[tags.NAMESPACE] = query.namespace
        if query.group is not None:
            wanted[tags.GROUP] = query.group
        rows: dict[int, KnownObject] = {}
        for record in self._search(wanted, query.start_us, query.end_us):
            fields = key_tags(record.key)
            matches = all(fields[name] == value for name, value in wanted.items())
            if matches and record.source is TraceSource.OBJECT:
                rows[record.object_id] = _row_of(record, rows.get(record.object_id))
        return list(rows.values())

    def trace(self, target: KnownObject, start_us: int | None, end_us: int | None) -> AssembledTrace:
        key = target.key
        spans = self._search(key_tags(key), start_us, end_us)
        if not any(s.object_id == target.object_id for s in spans):
            raise errors.NotFound(f"{key.display} has no activity in the requested time range")
        trace = merge([s for s in spans if overlaps(s, start_us, end_us)], target)
        if not has_activity(trace):
            raise errors.NotFound(f"{key.display} has no activity in the requested time range")
        return trace

    def _recent_objects(self) -> list[SpanRecord]:
        # Jaeger cannot list objects; the object spans of recent traces stand in, cached briefly.
        now = time.monotonic()
        if self._recent is not None and now - self._recent[0] < 30:
            return self._recent[1]
        records = [r for r in self._search({}, None, None) if r.source is TraceSource.OBJECT]
        self._recent = (now, records)
        return records

    def clusters(self) -> list[str]:
        return sorted({r.key.cluster for r in self._recent_objects()})

    def resources(self, cluster: str | None) -> list[ResourceInfo]:
        counts: dict[tuple[str, str], tuple[str, set[int]]] = {}
        for record in self._recent_objects():
            if cluster is not None and record.key.cluster != cluster:
                continue
            slot = (record.key.group, record.key.resource)
            kind, seen = counts.get(slot, (record.kind, set()))
            seen.add(record.object_id)
            counts[slot] = (kind or record.kind, seen)
        return [
            ResourceInfo(group, resource, kind, len(seen))
            for (group, resource), (kind, seen) in sorted(counts.items(), key=lambda item: item[0][::-1])
        ]

    def suggest(self, request: Suggestion) -> list[KnownObject]:
        rows: dict[int, KnownObject] = {}
        text = request.text.lower()
        for record in self._recent_objects():
            key = record.key
            if (
                (request.cluster is not None and key.cluster != request.cluster)
                or (request.resource is not None and key.resource != request.resource)
                or (request.group is not None and key.group != request.group)
                or (request.namespace is not None and key.namespace != request.namespace)
                or (text and not key.name.lower().startswith(text) and record.uid != request.text)
            ):
                continue
            rows[record.object_id] = _row_of(record, rows.get(record.object_id))
        ordered = sorted(rows.values(), key=lambda row: (-(row.last_us or 0), row.key.name))
        return ordered[: request.limit]

    def close(self) -> None:
        pass


def _row_of(record: SpanRecord, known: KnownObject | None) -> KnownObject:
    first = (
        record.start_us if known is None or known.first_us is None else min(known.first_us, record.start_us)
    )
    last = record.end_us if known is None or known.last_us is None else max(known.last_us, record.end_us)
    return KnownObject(
        object_id=record.object_id,
        key=record.key,
        uid=record.uid or (known.uid if known else ""),
        kind=record.kind or (known.kind if known else ""),
        version=record.version or (known.version if known else ""),
        first_us=first,
        last_us=last,
    )
