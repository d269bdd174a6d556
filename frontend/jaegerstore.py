"""The Jaeger backend: the query side reading our spans back from a real Jaeger.

The collector exports each trace source as a Jaeger service (``object``, ``audit``, ``event``,
``change``) with the object key as span tags. An object is found by searching the ``object``
service for its key tags; every trace that search returns is one window of the object's root
hierarchy, exported whole, so merging them gives the same tree the embedded store gives.

Searches are cached briefly: opening a view finds the object and assembles its trace from one
search, and a lookup's activity check and the view opened next share theirs. The window length is
not configured here: an object span covers exactly its window, so it is read from the object
spans Jaeger returns.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aggregators import ids
from frontend.assemble import assemble
from frontend.changes import Bucket, ChangePage, ChangeQuery
from frontend.types import AssembledTrace, ObjectQuery, ResourceInfo, Suggestion
from jaeger import model as jaeger_model
from jaeger.client import JaegerClient, JaegerError
from kelemetry import errors
from kelemetry.model import tags
from kelemetry.model.events import Log, TagValue, TraceSource
from kelemetry.model.objects import Incarnation, KnownObject, ObjectKey
from kelemetry.model.spans import SpanRecord
from kelemetry.model.versions import ObjectVersion

DEFAULT_LOOKBACK_US = 7 * 86_400 * 1_000_000
# Only until Jaeger holds an object span to read the window from, when no search can find anything.
FALLBACK_WINDOW_US = 1800 * 1_000_000
CACHE_SECONDS = 30.0
GAP_LOOKBACK_US = 86_400 * 1_000_000
_NEEDS_STORE = (
    "the object at a moment needs the embedded store (Jaeger keeps spans, not object versions); "
    "run the frontend with --store"
)
_CACHED_SEARCHES = 64
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


def record_of(span: jaeger_model.Span, trace_id: int, window_us: int) -> SpanRecord | None:
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
        window=start // window_us,
        uid=uid,
        kind=str(span_tags.get(tags.KIND, "")),
        version=str(span_tags.get(tags.VERSION, "")),
        tags=own,
        logs=tuple(logs),
        error=error,
    )


def window_of(traces: list[jaeger_model.Trace]) -> int | None:
    """The window length of the collector that exported these traces: an object span covers exactly
    its window (the longest, should windows of several lengths be stored)."""
    lengths = [
        int(span["duration"])
        for trace in traces
        for span in trace["spans"]
        if any(t["key"] == tags.TRACE_SOURCE and t["value"] == TraceSource.OBJECT.value for t in span["tags"])
    ]
    return max(lengths, default=0) or None


def records_of(traces: list[jaeger_model.Trace], window_us: int) -> list[SpanRecord]:
    found: dict[int, SpanRecord] = {}
    for trace in traces:
        trace_id = int(trace["traceID"], 16)
        for span in trace["spans"]:
            record = record_of(span, trace_id, window_us)
            if record is not None:
                found[record.span_id] = record
    return list(found.values())


_Tags = frozenset[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class _Search:
    """A search Jaeger answered: the tags it was sent, the range asked for, the spans it returned."""

    tags: _Tags
    start_us: int | None
    end_us: int | None
    records: tuple[SpanRecord, ...]
    complete: bool
    """Fewer traces than the limit came back: every trace with a matching object span is here."""
    at: float

    def covers(self, sent: _Tags, start_us: int | None, end_us: int | None) -> bool:
        # A complete search by fewer tags holds every trace a search by more would return.
        same_range = (self.start_us, self.end_us) == (start_us, end_us)
        return same_range and (self.tags == sent or (self.complete and self.tags <= sent))


class JaegerBackend:
    name = "jaeger"

    def __init__(self, client: JaegerClient, *, lookback_us: int = DEFAULT_LOOKBACK_US) -> None:
        self.client = client
        self.lookback_us = lookback_us
        self._window_us: int | None = None
        self._searches: OrderedDict[tuple[_Tags, int | None, int | None], _Search] = OrderedDict()
        self._lock = threading.Lock()
        self._recent: tuple[float, list[SpanRecord]] | None = None
        # cluster -> (when, range start, range end, gap spans found): gaps searched for recently.
        self._gap_searches: dict[str, tuple[float, int, int, list[SpanRecord]]] = {}

    def _range(self, start_us: int | None, end_us: int | None) -> tuple[int, int]:
        end = end_us if end_us is not None else time.time_ns() // 1000
        return (start_us if start_us is not None else end - self.lookback_us), end

    def _find(self, sent: dict[str, str], start_us: int, end_us: int, limit: int) -> list[jaeger_model.Trace]:
        try:
            traces = self.client.find_traces(
                service=TraceSource.OBJECT.value,
                tags=sent,
                start_us=start_us,
                end_us=end_us,
                limit=limit,
            )
        except JaegerError as exc:
            raise errors.BackendError(str(exc)) from exc
        found = window_of(traces)
        if found is not None and (self._window_us is None or found > self._window_us):
            self._window_us = found
        return traces

    def window_us(self) -> int:
        """The window length, read from the object spans of any search (one small search the first
        time, when none was made yet)."""
        if self._window_us is None:
            self._find({}, *self._range(None, None), 1)
        return self._window_us or FALLBACK_WINDOW_US

    def _search(
        self, search_tags: dict[str, str], start_us: int | None, end_us: int | None
    ) -> tuple[SpanRecord, ...]:
        """The spans of the traces that hold an object span with these tags starting in the range:
        from a search made in the last ``CACHE_SECONDS`` when one covers it (the caller checks the
        tags of what it gets), else from a new one."""
        # Empty values (the core group, cluster-scoped namespaces) cannot be matched by Jaeger; callers
        # check them on what comes back.
        sent = {k: v for k, v in search_tags.items() if v}
        key: _Tags = frozenset(sent.items())
        now = time.monotonic()
        with self._lock:
            for cached_key, search in list(self._searches.items()):
                if now - search.at >= CACHE_SECONDS:
                    del self._searches[cached_key]
                elif search.covers(key, start_us, end_us):
                    return search.records
        window = self.window_us()
        start, end = self._range(start_us, end_us)
        # Jaeger matches spans by their start, and an object span starts at its window's start: search
        # from the window the range starts in, then keep what overlaps the range (callers filter).
        start -= start % window
        traces = self._find(sent, start, end, _SEARCH_LIMIT)
        records = tuple(records_of(traces, window))
        with self._lock:
            search = _Search(key, start_us, end_us, records, len(traces) < _SEARCH_LIMIT, now)
            self._searches[(key, start_us, end_us)] = search
            while len(self._searches) > _CACHED_SEARCHES:
                self._searches.popitem(last=False)
        return records

    def find_objects(self, query: ObjectQuery) -> list[KnownObject]:
        wanted: dict[str, str] = {tags.RESOURCE: query.resource, tags.NAME: query.name}
        if query.cluster:
            wanted[tags.CLUSTER] = query.cluster
        if query.namespace is not None:
            wanted[tags.NAMESPACE] = query.namespace
        if query.group is not None:
            wanted[tags.GROUP] = query.group
        return self._objects(wanted, query.start_us, query.end_us)

    def objects_of(self, key: ObjectKey, start_us: int | None, end_us: int | None) -> list[KnownObject]:
        return self._objects(key_tags(key), start_us, end_us)

    def _objects(self, wanted: dict[str, str], start_us: int | None, end_us: int | None) -> list[KnownObject]:
        rows: dict[int, KnownObject] = {}
        for record in self._search(wanted, start_us, end_us):
            fields = key_tags(record.key)
            matches = all(fields[name] == value for name, value in wanted.items())
            if matches and record.source is TraceSource.OBJECT:
                rows[record.object_id] = _row_of(record, rows.get(record.object_id))
        return list(rows.values())

    def active(self, target: KnownObject, start_us: int | None, end_us: int | None) -> bool:
        try:
            self.trace(target, start_us, end_us)
        except errors.NotFound:
            return False
        return True

    def trace(self, target: KnownObject, start_us: int | None, end_us: int | None) -> AssembledTrace:
        return assemble(self._search(key_tags(target.key), start_us, end_us), target, start_us, end_us)

    def states(self, target: KnownObject, start_us: int | None, end_us: int | None) -> AssembledTrace:
        # The search returns every span anyway: nothing is saved by leaving some out afterwards.
        return self.trace(target, start_us, end_us)

    def lineage(self, target: KnownObject, start_us: int | None, end_us: int | None) -> AssembledTrace:
        # One search returns whole hierarchies: the owners come with it, nothing is saved by asking less.
        return self.trace(target, start_us, end_us)

    def first_activity(self, target: KnownObject) -> int | None:
        own = [
            record
            for record in self._search(key_tags(target.key), None, None)
            if record.object_id == target.object_id and record.source is not TraceSource.OBJECT
        ]
        # An Event's whole-second time may precede the create it reports on (StoreReader.first_activity).
        requests = [record.start_us for record in own if record.source is not TraceSource.EVENT]
        return min(requests or [record.start_us for record in own], default=None)

    def _recent_objects(self) -> list[SpanRecord]:
        # Jaeger cannot list objects; the object spans of recent traces stand in, cached briefly.
        now = time.monotonic()
        if self._recent is not None and now - self._recent[0] < CACHE_SECONDS:
            return self._recent[1]
        traces = self._find({}, *self._range(None, None), _SEARCH_LIMIT)
        records = [r for r in records_of(traces, self.window_us()) if r.source is TraceSource.OBJECT]
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
                or (text and text not in key.name.lower() and not record.uid.startswith(request.text))
                or (text and request.prefix_only and not key.name.lower().startswith(text))
            ):
                continue
            rows[record.object_id] = _row_of(record, rows.get(record.object_id))

        def rank(row: KnownObject) -> int:
            # As the store ranks them: the exact name or uid, then names starting with the text.
            name = row.key.name.lower()
            return 0 if text in (name, row.uid) else 1 if name.startswith(text) else 2

        ordered = sorted(rows.values(), key=lambda row: (rank(row), -(row.last_us or 0), row.key.name))
        return ordered[: request.limit]

    # -- browsing what changed: Jaeger's search is by trace, newest traces first, capped; a list of
    # every request in a range, newest first and paged, cannot be read from it without gaps

    def changes(self, query: ChangeQuery) -> ChangePage:
        raise errors.Unsupported(_CHANGES_NEED_STORE)

    def histogram(self, query: ChangeQuery) -> tuple[int, list[Bucket]]:
        raise errors.Unsupported(_CHANGES_NEED_STORE)

    def recent(self, request: Suggestion, start_us: int | None, end_us: int | None) -> list[KnownObject]:
        wanted = {
            name: value
            for name, value in (
                (tags.CLUSTER, request.cluster),
                (tags.GROUP, request.group),
                (tags.RESOURCE, request.resource),
                (tags.NAMESPACE, request.namespace),
            )
            if value is not None
        }
        rows: dict[int, KnownObject] = {}
        latest: dict[int, int] = {}
        for record in self._search(wanted, start_us, end_us):
            fields = key_tags(record.key)
            if not all(fields[name] == value for name, value in wanted.items()):
                continue
            if record.source is TraceSource.OBJECT:
                rows[record.object_id] = _row_of(record, rows.get(record.object_id))
            elif (start_us is None or record.start_us >= start_us) and (
                end_us is None or record.start_us <= end_us
            ):
                latest[record.object_id] = max(latest.get(record.object_id, 0), record.start_us)
        active = sorted((oid for oid in latest if oid in rows), key=lambda oid: -latest[oid])
        return [rows[oid] for oid in active[: request.limit]]

    def gaps(self, clusters: Iterable[str], start_us: int, end_us: int) -> list[SpanRecord]:
        """Gap spans are exported under the ``gap`` service with their cluster's tag; Jaeger matches
        spans by their start, so the search reaches ``GAP_LOOKBACK_US`` back for gaps that began
        before the range (a longer gap that began earlier still is not found). One search per
        cluster serves every view of its range for ``CACHE_SECONDS``."""
        found: dict[int, SpanRecord] = {}
        for cluster in sorted(set(clusters)):
            for record in self._gaps_of(cluster, start_us, end_us):
                if record.start_us <= end_us and record.end_us >= start_us:
                    found[record.span_id] = record
        return sorted(found.values(), key=lambda record: (record.start_us, record.span_id))

    def _gaps_of(self, cluster: str, start_us: int, end_us: int) -> list[SpanRecord]:
        now = time.monotonic()
        with self._lock:
            cached = self._gap_searches.get(cluster)
        if (
            cached is not None
            and now - cached[0] < CACHE_SECONDS
            and cached[1] <= start_us
            and end_us <= cached[2]
        ):
            return cached[3]
        low = start_us - GAP_LOOKBACK_US
        try:
            traces = self.client.find_traces(
                service=TraceSource.GAP.value,
                tags={tags.CLUSTER: cluster},
                start_us=low,
                end_us=end_us,
                limit=_SEARCH_LIMIT,
            )
        except JaegerError as exc:
            raise errors.BackendError(str(exc)) from exc
        records = [
            record
            for record in records_of(traces, self.window_us())
            if record.source is TraceSource.GAP and record.key.cluster == cluster
        ]
        with self._lock:
            self._gap_searches[cluster] = (now, start_us, end_us, records)
        return records

    # Jaeger keeps spans, not object bodies: the object at a moment needs the embedded store.
    def revisions(self, target: KnownObject) -> list[ObjectVersion]:
        raise errors.Unsupported(_NEEDS_STORE)

    def revision_body(self, target: KnownObject, resource_version: str) -> Any | None:
        raise errors.Unsupported(_NEEDS_STORE)

    def close(self) -> None:
        pass


_CHANGES_NEED_STORE = (
    "browsing changes needs the embedded store (kelemetry frontend --store FILE, or kelemetry serve); "
    "Jaeger's search cannot list every request of a range in order"
)


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
