"""The one module that knows every stage: receive → link → aggregate → store.

Per batch of raw audit events: convert them to model Events, resolve which incarnation each means,
let the change tracker attach what each write changed (issuing again earlier writes whose change
is learned only now), feed owner references to the owner graph, let the aggregator place each in
its trace (Events with whole-second times after the requests they follow), then write every
resulting span, the objects they belong to and the object versions seen in one store transaction.
A failure in one event is logged, counted and handed back with the stage it failed at (the caller
quarantines it); it never stops the batch. When an object that already
has spans learns a new owner (its root changed), the spans of its subtree are moved to the new
root's trace in the store.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import aggregators
from aggregators import Aggregator, ids
from aggregators.ordering import EventPlacer
from kelemetry.diff import redact
from kelemetry.diff.attribution import ChangeTracker
from kelemetry.diff.history import BodyHistory
from kelemetry.errors import KelemetryError, StoreError
from kelemetry.kube.kinds import KindResolver
from kelemetry.linker import registry as linker_registry
from kelemetry.linker.graph import OwnerGraph
from kelemetry.linker.links import Clusters, Linker, MarkIndex, Refusal
from kelemetry.linker.systems.rules import Rule, load_rules
from kelemetry.model import tags
from kelemetry.model.events import Event, TraceSource, WriteDetail
from kelemetry.model.gaps import Gap
from kelemetry.model.objects import Incarnation, KnownObject, ObjectRef, OwnerLink
from kelemetry.model.spans import SpanRecord
from kelemetry.model.versions import DELETED_RV, ObjectVersion
from kelemetry.receivers.audit import AuditConverter, AuditFilter
from kelemetry.receivers.auditwire import AuditEvent, from_mapping
from kelemetry.receivers.events import EventConverter
from kelemetry.receivers.requests import RequestMetrics
from kelemetry.receivers.watched import WatchedObjectReceiver, WatchedVersion
from kelemetry.settings import DEFAULT_CACHE_BYTES, TraceSettings
from kelemetry.store.sqlite import SpanStore

logger = logging.getLogger(__name__)


class LinkStats:
    """Links followed and refused, by linker; a refused link is logged once per object."""

    MAX_LOGGED = 100_000

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._logged: set[Incarnation] = set()

    def refused(self, obj: ObjectRef, refusal: Refusal) -> None:
        self.counts[f"refused_{refusal.linker}"] += 1
        if obj.incarnation in self._logged:
            return
        if len(self._logged) >= self.MAX_LOGGED:
            self._logged.clear()
        self._logged.add(obj.incarnation)
        logger.warning(
            "link of %s not followed (%s): %s",
            obj.key,
            refusal.linker,
            refusal.reason[:300],
            extra={"cluster": obj.key.cluster},
        )


@dataclass(frozen=True, slots=True)
class Failure:
    """An input a stage raised on, as it was given (an audit event, a Kubernetes Event, a watched
    (type, object)), and why: what the caller keeps instead of dropping it."""

    item: Any
    reason: str


@dataclass
class BatchResult:
    events: int = 0
    kept: int = 0
    spans: int = 0
    failed: int = 0
    failures: list[Failure] = field(default_factory=list)

    def fail(self, item: Any, stage: str, exc: Exception) -> None:
        self.failed += 1
        self.failures.append(Failure(item, f"pipeline failed at {stage}: {type(exc).__name__}: {exc}"))


class Pipeline:
    def __init__(
        self,
        store: SpanStore,
        aggregator: Aggregator,
        converter: AuditConverter,
        graph: OwnerGraph | None = None,
        *,
        linkers: list[Linker] | None = None,
        clusters: Clusters | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        requests: RequestMetrics | None = None,
    ) -> None:
        self.store = store
        # Request metrics of every audit event seen, reads included (None: not kept).
        self.requests = requests
        self.linkers = linkers if linkers is not None else []
        self.marks = MarkIndex(self.linkers)
        self.clusters = clusters or Clusters()
        self.links = LinkStats()
        self.aggregator = aggregator
        self.converter = converter
        self.graph = graph if graph is not None else load_graph(store)
        resolver = converter.resolver
        self.changes = ChangeTracker(resolver.has_status, resolver.note_status, cache_bytes=cache_bytes)
        self.placer = EventPlacer()
        self.events = EventConverter(resolver)
        self.watched = WatchedObjectReceiver(resolver, converter.redactor)
        self.failed_events = 0
        # The stage the event in hand is at, named in the reason of a failure.
        self._stage = ""
        # Object versions of the batch, written with its spans by the next flush.
        self._versions: list[ObjectVersion] = []

    def _seen(self, cluster: str) -> None:
        """A cluster that sends us data is one of ours (linkers may link into it)."""
        names = self.clusters.names
        if names and cluster not in names:
            self.clusters = replace(self.clusters, names=names | {cluster})

    @property
    def change_grace_us(self) -> int:
        return self.changes.grace_us

    @change_grace_us.setter
    def change_grace_us(self, value: int) -> None:
        self.changes.grace_us = value

    def process_audit(self, raws: Iterable[AuditEvent | Mapping[str, Any]], cluster: str) -> BatchResult:
        """Audit events in their wire form, or as plain mappings (tools, tests), which are checked into
        it first: one that does not fit is counted as failed, like any event that cannot be processed."""
        self._seen(cluster)
        result = BatchResult()
        spans: list[SpanRecord] = []
        objects: dict[int, KnownObject] = {}
        # Every event read, for the request metrics (counted once the batch is through).
        read: list[AuditEvent] = []
        for raw in raws:
            result.events += 1
            try:
                self._stage = "decoding"
                if not isinstance(raw, AuditEvent):
                    raw = from_mapping(raw)
                read.append(raw)
                self._stage = "conversion"
                event = self.converter.convert(raw, cluster)
                if event is None:
                    continue
                result.kept += 1
                self._stage = "resolving"
                resolved = self._resolved(event)
                self._stage = "diff"
                attributed = self.changes.audit(resolved)
                found = _request_version(resolved, self.changes.history)
                if found is not None:
                    self._versions.append(found)
                self._add(attributed.event, spans, objects, result)
                for again in attributed.reissued:
                    self._add(again, spans, objects, result)
            except StoreError:
                raise  # the store's to retry or refuse, not this event's fault
            except Exception as exc:
                result.fail(raw, self._stage, exc)
                self.failed_events += 1
                audit_id = str(raw.auditID if isinstance(raw, AuditEvent) else raw.get("auditID", "?"))[:100]
                logger.exception(
                    "audit event %s could not be processed",
                    audit_id,
                    extra={"cluster": cluster, "audit_id": audit_id},
                )
        self._flush(spans, objects, result)
        if self.requests is not None:
            self.requests.observe(read, cluster)
        return result

    def process_kube_events(self, objects_: Iterable[Mapping[str, Any]], cluster: str) -> BatchResult:
        """Kubernetes Event objects → event spans under their involved objects."""
        self._seen(cluster)
        result = BatchResult()
        spans: list[SpanRecord] = []
        objects: dict[int, KnownObject] = {}
        for obj in objects_:
            result.events += 1
            try:
                self._stage = "conversion"
                event = self.events.convert(obj, cluster)
                if event is None:
                    continue
                result.kept += 1
                self._stage = "resolving"
                self._add(self._resolved(event), spans, objects, result)
            except StoreError:
                raise  # the store's to retry or refuse, not this event's fault
            except Exception as exc:
                result.fail(obj, self._stage, exc)
                self.failed_events += 1
                logger.exception("Kubernetes Event could not be processed")
        self._flush(spans, objects, result)
        return result

    def process_object_changes(
        self,
        items: Iterable[tuple[str, Mapping[str, Any]]],
        cluster: str,
        target: tuple[str, str, str],
        now_us: int,
    ) -> BatchResult:
        """Watched object versions → owner links, diffs, and (unless an audit event claims them
        within the grace period) change spans. ``target`` is (group, version, resource)."""
        self._seen(cluster)
        result = BatchResult()
        objects: dict[int, KnownObject] = {}
        spans: list[SpanRecord] = []
        for kind, obj in items:
            result.events += 1
            try:
                self._stage = "conversion"
                seen = self.watched.receive(kind, obj, cluster, target)
                if seen is not None:
                    self._observe(seen, now_us, objects, spans, result)
            except StoreError:
                raise  # the store's to retry or refuse, not this event's fault
            except Exception as exc:
                result.fail((kind, obj), self._stage, exc)
                self.failed_events += 1
                logger.exception("watched %s could not be processed", target[2])
        self._flush(spans, objects, result)
        self.flush_pending(now_us, result)
        return result

    def _observe(
        self,
        seen: WatchedVersion,
        now_us: int,
        objects: dict[int, KnownObject],
        spans: list[SpanRecord],
        result: BatchResult,
    ) -> None:
        ref = seen.ref
        link = seen.owner
        self._stage = "linking"
        if link is None and self.linkers:
            link = self._linked(ref, seen.body)
        if link is not None:
            owner = self.graph.resolve(link.owner)
            known = ref.incarnation in self.graph
            if self.graph.set_owner(ref, owner) and known:
                self._flush(spans, objects, result)
                result.spans += self._retrace(ref.incarnation)
            _note_object(objects, owner, None, None, None)
            _note_object(objects, ref, ids.object_id(owner.incarnation), None, None)
        else:
            self.graph.add(ref)
            _note_object(objects, ref, None, None, None)
        self._adopt(ref, objects)
        found = _watched_version(seen.kind, ref, seen.body, now_us)
        # A version the watch showed before (a relist) is not encoded again for the store to ignore.
        if found is not None and (
            found.deleted or self.changes.watched.get(ref.incarnation, found.resource_version) is None
        ):
            self._versions.append(found)
        self._stage = "diff"
        for again in self.changes.watched_version(seen.kind, ref, seen.body, now_us):
            self._add(again, spans, objects, result)

    def process_gaps(self, gaps: Iterable[Gap]) -> BatchResult:
        """Gaps → spans of source ``gap`` under their cluster's pseudo object (``kelemetry.model.gaps``)."""
        result = BatchResult()
        spans: list[SpanRecord] = []
        objects: dict[int, KnownObject] = {}
        for gap in gaps:
            result.events += 1
            result.kept += 1
            self._add(self._resolved(gap.event()), spans, objects, result)
        self._flush(spans, objects, result)
        return result

    def flush_pending(self, now_us: int, result: BatchResult | None = None) -> int:
        """Emit change spans for watched changes no audit event claimed within the grace period."""
        due = self.changes.due(now_us)
        if not due:
            return 0
        spans: list[SpanRecord] = []
        objects: dict[int, KnownObject] = {}
        batch = result if result is not None else BatchResult()
        for change in due:
            self._add(change, spans, objects, batch)
        self._flush(spans, objects, batch)
        return len(due)

    def _resolved(self, event: Event) -> Event:
        """The event with the incarnations it means: inputs that did not say a uid get the current one."""
        obj = self.graph.resolve(event.object)
        link = event.owner
        owner = None if link is None else self.graph.resolve(link.owner)
        if obj is event.object and (link is None or owner is link.owner):
            return event
        return replace(event, object=obj, owner=None if owner is None else OwnerLink(obj, owner))

    def _add(
        self, event: Event, spans: list[SpanRecord], objects: dict[int, KnownObject], result: BatchResult
    ) -> None:
        """Link, aggregate and queue one event's spans for the batch's write."""
        self._stage = "linking"
        if self._link(event, objects):
            # The subtree's root changed: flush so the store sees this batch before moving it.
            self._flush(spans, objects, result)
            result.spans += self._retrace(event.object.incarnation)
        self._stage = "aggregation"
        produced = self.aggregator.aggregate(event, self.graph)
        if event.source is TraceSource.EVENT:
            produced[-1] = self.placer.place(produced[-1], event.precision_us, event.order)
            spans.extend(produced)
        else:
            spans.extend(produced)
            if event.source is TraceSource.AUDIT:
                spans.extend(self.placer.note_request(produced[-1]))
        _note_object(objects, event.object, None, event.start_us, event.end_us)

    def _link(self, event: Event, objects: dict[int, KnownObject]) -> bool:
        """Feed the event's object and its parent to the graph; True if a known object's root changed."""
        graph = self.graph
        link = event.owner
        if link is None and event.body is not None and self.linkers:
            link = self._linked(event.object, event.body)
        if link is None:
            graph.add(event.object)
            self._adopt(event.object, objects)
            return False
        known = event.object.incarnation in graph
        changed = graph.set_owner(link.child, link.owner)
        self._adopt(event.object, objects)
        _note_object(objects, link.owner, None, None, None)
        _note_object(objects, event.object, ids.object_id(link.owner.incarnation), None, None)
        return changed and known

    def _linked(self, obj: ObjectRef, body: Mapping[str, Any]) -> OwnerLink | None:
        """The parent a linker finds for an object without a controller ownerReference."""
        if not self.marks.may_link(body):
            return None
        for linker in self.linkers:
            found = linker.parent(obj, body, self.clusters)
            if found is None:
                continue
            if isinstance(found, Refusal):
                self.links.refused(obj, found)
                continue
            parent = self.graph.resolve(found)
            # Objects linked to this name before its uid was known will move under it (adopt): a
            # path from the parent to them closes a cycle as surely as one to the object itself.
            placeholder = Incarnation(obj.key, "")
            if self.graph.would_cycle(obj.incarnation, parent.incarnation) or (
                obj.uid and self.graph.would_cycle(placeholder, parent.incarnation)
            ):
                self.links.refused(obj, Refusal(linker.name, f"a link to {parent.key} would close a cycle"))
                return None
            self.links.counts[f"linked_{linker.name}"] += 1
            return OwnerLink(obj, parent)
        return None

    def _adopt(self, ref: ObjectRef, objects: dict[int, KnownObject]) -> None:
        """Objects linked to this name before its uid was known now hang under it (moved in the store)."""
        for child in self.graph.adopt(ref):
            _note_object(objects, self.graph.ref(child), ids.object_id(ref.incarnation), None, None)
            if self.store.windows_of([ids.object_id(n) for n in self.graph.subtree(child)]):
                self._retrace(child)

    def _retrace(self, obj: Incarnation) -> int:
        """Move ``obj``'s subtree into its new root's traces; returns the spans written."""
        graph = self.graph
        subtree = graph.subtree(obj)
        subtree_ids = [ids.object_id(node) for node in subtree]
        windows = self.store.windows_of(subtree_ids)
        if not windows:
            return 0
        root = graph.root(obj)
        spans: list[SpanRecord] = []
        for window in sorted(windows):
            self.store.retrace(subtree_ids, window, ids.trace_id(root, window))
            spans.extend(self.aggregator.object_chain(obj, window, graph))
        objects: dict[int, KnownObject] = {}
        for span in spans:
            _note_object(objects, graph.ref(Incarnation(span.key, span.uid)), None, None, None)
        self.store.write(spans, objects.values())
        logger.info("moved %s and %d dependents to the trace of %s", obj.key, len(subtree) - 1, root.key)
        return len(spans)

    def _flush(self, spans: list[SpanRecord], objects: dict[int, KnownObject], result: BatchResult) -> None:
        if not spans and not objects:
            return
        for span in spans:
            if span.object_id not in objects:
                _note_object(objects, self.graph.ref(Incarnation(span.key, span.uid)), None, None, None)
        found, self._versions = self._versions, []
        try:
            self.store.write(spans, objects.values(), found)
        except Exception:
            # The aggregator believes these object spans exist; make it write them again next time.
            self.aggregator.forget()
            raise
        result.spans += len(spans)
        spans.clear()
        objects.clear()


def _note_object(
    objects: dict[int, KnownObject],
    ref: ObjectRef,
    owner_id: int | None,
    first_us: int | None,
    last_us: int | None,
) -> None:
    object_id = ids.object_id(ref.incarnation)
    known = objects.get(object_id)
    if known is None:
        objects[object_id] = KnownObject(
            object_id, ref.key, ref.uid, ref.kind, ref.version, owner_id, first_us, last_us
        )
        return
    objects[object_id] = KnownObject(
        object_id,
        ref.key,
        ref.uid or known.uid,
        ref.kind or known.kind,
        ref.version or known.version,
        owner_id if owner_id is not None else known.owner_id,
        _min(known.first_us, first_us),
        _max(known.last_us, last_us),
    )


def _request_version(event: Event, history: BodyHistory) -> ObjectVersion | None:
    """The version an audit write left, after the tracker has taken the event; None for reads,
    failures and writes that showed nothing of the object."""
    write = event.write
    if write is None or event.error:
        return None
    if write.verb in ("delete", "deletecollection") and not write.subresource:
        body = event.body
        if body is None or _gone(body):
            return _deletion(event, write, body)
    return _request_version_of(event, write, history)


def _deletion(event: Event, write: WriteDetail, body: Mapping[str, Any] | None) -> ObjectVersion | None:
    """The object is gone: a Status answer leaves its last state to the version before; an
    immediate delete answers with that last state."""
    obj = event.object
    if not obj.uid:
        return None
    return ObjectVersion(
        ids.object_id(obj.incarnation),
        obj.uid,
        DELETED_RV,
        event.start_us,
        "audit",
        write.verb,
        str(event.tags.get(tags.AUDIT_USER, "")),
        ids.event_span_id(obj.key, event.source, event.event_id),
        deleted=True,
        body=body,
    )


def _request_version_of(event: Event, write: WriteDetail, history: BodyHistory) -> ObjectVersion | None:
    """The version the change tracker took from a write's answer, if this write made it."""
    rv = write.resource_version
    if not rv:
        return None
    obj = event.object
    version = history.get(obj.incarnation, rv)
    if version is None or version.writer != event.event_id:
        return None
    return ObjectVersion(
        ids.object_id(obj.incarnation),
        obj.uid,
        rv,
        event.start_us,
        "audit",
        write.verb if not write.subresource else f"{write.verb} {write.subresource}",
        str(event.tags.get(tags.AUDIT_USER, "")),
        ids.event_span_id(obj.key, event.source, event.event_id),
        complete=version.complete,
        body=version.body,
    )


def _gone(body: Mapping[str, Any]) -> bool:
    """Whether a delete's answer shows the object removed at once (no grace period left, no
    finalizers), rather than marked for a graceful deletion that has yet to happen."""
    meta = body.get("metadata")
    if not isinstance(meta, Mapping) or "deletionTimestamp" not in meta:
        return False
    return meta.get("deletionGracePeriodSeconds") == 0 and not meta.get("finalizers")


def _watched_version(kind: str, ref: ObjectRef, body: Mapping[str, Any], now_us: int) -> ObjectVersion | None:
    """The version one watched object shows (a DELETED one: the incarnation's last state)."""
    object_id = ids.object_id(ref.incarnation)
    if kind == "DELETED":
        return ObjectVersion(
            object_id, ref.uid, DELETED_RV, now_us, "watch", "delete", deleted=True, body=body
        )
    meta = body.get("metadata")
    rv = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    if not isinstance(rv, str) or not rv:
        return None
    return ObjectVersion(object_id, ref.uid, rv, now_us, "watch", kind.lower(), body=body)


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def build(
    store: SpanStore,
    trace: TraceSettings,
    resolver: KindResolver,
    *,
    clusters: Clusters | None = None,
    linker_names: tuple[str, ...] = linker_registry.DEFAULT,
    requests: RequestMetrics | None = None,
) -> Pipeline:
    """The pipeline for a store and trace settings: the one way `serve` and `replay` make theirs, so a
    replayed log is traced exactly as the live webhook would trace it. ``clusters``: the fleet the
    linkers may link into (default: any cluster, as a replay of one cluster cannot know the others).
    ``requests``: where to count the requests of the audit stream (`serve` keeps them for /metrics)."""
    converter = AuditConverter(
        resolver,
        AuditFilter.from_strings(trace.excluded_resources, trace.excluded_user_agents),
        redact.with_rules(trace.redact),
    )
    user_rules: tuple[Rule, ...] = ()
    if trace.link_rules:
        try:
            user_rules = load_rules(trace.link_rules)
        except (OSError, ValueError) as exc:
            raise KelemetryError(f"cannot use the link rules {trace.link_rules}: {exc}") from None
        linker_names = (*linker_names, "rules")
    factories = linker_registry.registry(user_rules=user_rules)
    unknown = sorted(set(linker_names) - set(factories))
    if unknown:
        raise KelemetryError(f"unknown linker(s) {', '.join(unknown)}; known: {', '.join(sorted(factories))}")
    return Pipeline(
        store,
        aggregators.create(trace.aggregator, trace.window_seconds),
        converter,
        linkers=[factories[name]() for name in linker_names],
        clusters=clusters or Clusters(),
        cache_bytes=trace.cache_bytes,
        requests=requests,
    )


def load_graph(store: SpanStore) -> OwnerGraph:
    """Rebuild the owner graph from the objects the store knows; the incarnation of a name seen
    last is added last, so it is the current one again."""
    graph = OwnerGraph()
    rows = sorted(store.objects(), key=lambda row: (row.first_us is not None, row.first_us or 0))
    by_id = {row.object_id: row for row in rows}
    for row in rows:
        ref = ObjectRef(row.key, row.uid, row.kind, row.version)
        graph.add(ref)
    for row in rows:
        if row.owner_id is not None and row.owner_id in by_id:
            owner = by_id[row.owner_id]
            graph.set_owner(
                ObjectRef(row.key, row.uid, row.kind, row.version),
                ObjectRef(owner.key, owner.uid, owner.kind, owner.version),
            )
    return graph
