"""The one module that knows every stage: receive → link → aggregate → store.

Per batch of raw audit events: convert them to model Events, feed their owner references to the
owner graph, let the aggregator place each in its trace, then write every resulting span and the
objects they belong to in one store transaction. A failure in one event is logged and counted; it
never stops the batch. When an object that already has spans learns a new owner (its root
changed), the spans of its subtree are moved to the new root's trace in the store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from aggregators import Aggregator, ids
from kelemetry.diff import compute
from kelemetry.diff.history import BodyHistory
from kelemetry.linker.graph import OwnerGraph
from kelemetry.model import tags
from kelemetry.model.events import Event, Log, TraceSource
from kelemetry.model.objects import ObjectKey, ObjectRef
from kelemetry.model.spans import SpanRecord
from kelemetry.receivers.audit import AuditConverter, RawAuditEvent
from kelemetry.receivers.events import EventConverter
from kelemetry.store.sqlite import ObjectRow, SpanStore

logger = logging.getLogger(__name__)


@dataclass
class BatchResult:
    events: int = 0
    kept: int = 0
    spans: int = 0
    failed: int = 0


class Pipeline:
    def __init__(
        self,
        store: SpanStore,
        aggregator: Aggregator,
        converter: AuditConverter,
        graph: OwnerGraph | None = None,
    ) -> None:
        self.store = store
        self.aggregator = aggregator
        self.converter = converter
        self.graph = graph if graph is not None else load_graph(store)
        # Audit bodies and watched versions are kept apart: the watch runs ahead of the batched audit
        # stream, and audit diffs must come from audit input alone to be the same on replay.
        self.history = BodyHistory()
        self.watched = BodyHistory()
        self.events = EventConverter(converter.resolver)
        # Watched changes waiting for an audit event to claim them: (key, change id) ->
        # (seen at, object, verb, logs); and what audit events have claimed.
        self._pending: dict[tuple[ObjectKey, str], tuple[int, ObjectRef, str, tuple[Log, ...]]] = {}
        self._claimed: set[tuple[ObjectKey, str]] = set()
        self.change_grace_us = 5_000_000
        self.failed_events = 0

    def process_audit(self, raws: Iterable[RawAuditEvent], cluster: str) -> BatchResult:
        result = BatchResult()
        spans: list[SpanRecord] = []
        objects: dict[int, ObjectRow] = {}
        for raw in raws:
            result.events += 1
            try:
                event = self.converter.convert(raw, cluster)
                if event is None:
                    continue
                result.kept += 1
                if event.body is not None or event.tags.get(tags.AUDIT_VERB) == "delete":
                    event = self._with_changes(event)
                if not event.error:
                    self._claim(event)
                if self._link(event, objects):
                    # The subtree's root changed: flush so the store sees this batch before moving it.
                    self._flush(spans, objects, result)
                    result.spans += self._retrace(event.object.key)
                spans.extend(self.aggregator.aggregate(event, self.graph))
                _note_object(objects, event.object, None, event.start_us, event.end_us)
            except Exception:
                result.failed += 1
                self.failed_events += 1
                logger.exception("audit event %s could not be processed", raw.get("auditID", "?"))
        self._flush(spans, objects, result)
        return result

    def process_kube_events(self, objects_: Iterable[Mapping[str, Any]], cluster: str) -> BatchResult:
        """Kubernetes Event objects → event spans under their involved objects."""
        result = BatchResult()
        spans: list[SpanRecord] = []
        objects: dict[int, ObjectRow] = {}
        for obj in objects_:
            result.events += 1
            try:
                event = self.events.convert(obj, cluster)
                if event is None:
                    continue
                result.kept += 1
                self.graph.add(event.object)
                spans.extend(self.aggregator.aggregate(event, self.graph))
                _note_object(objects, event.object, None, event.start_us, event.end_us)
            except Exception:
                result.failed += 1
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
        group, version, resource = target
        result = BatchResult()
        objects: dict[int, ObjectRow] = {}
        spans: list[SpanRecord] = []
        for kind, obj in items:
            result.events += 1
            try:
                self._observe(kind, obj, cluster, group, version, resource, now_us, objects, spans, result)
            except Exception:
                result.failed += 1
                self.failed_events += 1
                logger.exception("watched %s could not be processed", resource)
        self._flush(spans, objects, result)
        self.flush_pending(now_us, result)
        return result

    def _observe(
        self,
        kind: str,
        obj: Mapping[str, Any],
        cluster: str,
        group: str,
        version: str,
        resource: str,
        now_us: int,
        objects: dict[int, ObjectRow],
        spans: list[SpanRecord],
        result: BatchResult,
    ) -> None:
        meta = obj.get("metadata") or {}
        name = meta.get("name")
        if not name:
            return
        key = ObjectKey.make(cluster, group, resource, str(meta.get("namespace") or ""), str(name))
        ref = ObjectRef(
            key,
            str(meta.get("uid") or ""),
            str(obj.get("kind") or self.converter.resolver.kind_of(group, resource)),
            version,
        )
        link = self.converter.owner_link(ref, meta)
        if link is not None:
            known = key in self.graph
            if self.graph.set_owner(link.child, link.owner) and known:
                self._flush(spans, objects, result)
                result.spans += self._retrace(key)
            _note_object(objects, link.owner, None, None, None)
            _note_object(objects, ref, ids.object_id(link.owner.key), None, None)
        else:
            self.graph.add(ref)
            _note_object(objects, ref, None, None, None)
        body = self.converter.redactor.clean(group, resource, obj)
        rv = str(meta.get("resourceVersion") or "")
        if kind == "DELETED":
            change_id = f"delete@{ref.uid}"
            if (key, change_id) not in self._claimed:
                self._pending[(key, change_id)] = (
                    now_us,
                    ref,
                    "delete",
                    (Log("snapshot", compute.snapshot(body)),),
                )
            return
        previous = self.watched.previous(key, rv) if rv else None
        if rv:
            self.watched.put(key, rv, body)
        if kind == "LIST" or not rv:
            return
        change_id = f"update@{rv}" if kind == "MODIFIED" else f"create@{rv}"
        if (key, change_id) in self._claimed or (key, f"update@{rv}") in self._claimed:
            return
        logs: tuple[Log, ...] = ()
        if kind == "MODIFIED" and previous is not None:
            rendered = compute.render(
                [d for d in compute.compute(previous[1], body) if d.path != "metadata.resourceVersion"]
            )
            if not rendered:
                return
            logs = (Log("diff", rendered),)
        self._pending[(key, change_id)] = (now_us, ref, change_id.split("@")[0], logs)

    def _claim(self, event: Event) -> None:
        """An audit event accounts for the watched change with its resourceVersion."""
        verb = event.tags.get(tags.AUDIT_VERB)
        key = event.object.key
        if verb == "delete":
            change_id = f"delete@{event.object.uid}"
        else:
            change_id = f"update@{event.tags.get(tags.RESOURCE_VERSION, '')}"
        if len(self._claimed) > 100_000:
            self._claimed.clear()
        self._claimed.add((key, change_id))
        self._pending.pop((key, change_id), None)
        self._pending.pop((key, change_id.replace("update@", "create@")), None)

    def flush_pending(self, now_us: int, result: BatchResult | None = None) -> int:
        """Emit change spans for watched changes no audit event claimed within the grace period."""
        due = [k for k, (seen, *_rest) in self._pending.items() if seen + self.change_grace_us <= now_us]
        if not due:
            return 0
        spans: list[SpanRecord] = []
        objects: dict[int, ObjectRow] = {}
        for pending_key in due:
            seen, ref, verb, logs = self._pending.pop(pending_key)
            change = Event(
                object=ref,
                source=TraceSource.CHANGE,
                event_id=pending_key[1],
                title=f"{verb} (watched)",
                start_us=seen,
                end_us=seen + 1,
                tags={tags.CHANGE_VERB: verb, tags.RESOURCE_VERSION: pending_key[1].split("@", 1)[1]},
                logs=logs,
            )
            spans.extend(self.aggregator.aggregate(change, self.graph))
            _note_object(objects, ref, None, seen, seen)
        batch = result if result is not None else BatchResult()
        self._flush(spans, objects, batch)
        return len(due)

    def _with_changes(self, event: Event) -> Event:
        """Attach what the request changed: a diff against the object's previous version, or the
        object's last state on delete."""
        verb = event.tags.get(tags.AUDIT_VERB)
        key = event.object.key
        body = event.body
        version = str(event.tags.get(tags.RESOURCE_VERSION, ""))
        logs: list[Log] = []
        if verb in ("update", "patch") and body is not None and version:
            previous = self.history.previous(key, version)
            if previous is not None:
                diffs = compute.compute(previous[1], body)
                rendered = compute.render([d for d in diffs if d.path != "metadata.resourceVersion"])
                logs.append(Log("diff", rendered) if rendered else Log("verbose", "No-op update"))
            self.history.put(key, version, body)
        elif verb == "create" and body is not None and version:
            self.history.put(key, version, body)
        elif verb == "delete" and not event.tags.get(tags.AUDIT_SUBRESOURCE):
            last = body if body is not None else (self.history.latest(key) or (None, None))[1]
            if last is not None:
                logs.append(Log("snapshot", compute.snapshot(last)))
        if not logs:
            return event
        return replace(event, logs=(*event.logs, *logs))

    def _link(self, event: Event, objects: dict[int, ObjectRow]) -> bool:
        """Feed the event's object and owner to the graph; True if a known object's root changed."""
        graph = self.graph
        link = event.owner
        if link is None:
            graph.add(event.object)
            return False
        known = event.object.key in graph
        changed = graph.set_owner(link.child, link.owner)
        _note_object(objects, link.owner, None, None, None)
        _note_object(objects, event.object, ids.object_id(link.owner.key), None, None)
        return changed and known

    def _retrace(self, key: ObjectKey) -> int:
        """Move ``key``'s subtree into its new root's traces; returns the spans written."""
        graph = self.graph
        subtree = graph.subtree(key)
        subtree_ids = [ids.object_id(k) for k in subtree]
        windows = self.store.windows_of(subtree_ids)
        if not windows:
            return 0
        root = graph.root(key)
        spans: list[SpanRecord] = []
        for window in sorted(windows):
            self.store.retrace(subtree_ids, window, ids.trace_id(root, window))
            spans.extend(self.aggregator.object_chain(key, window, graph))
        objects: dict[int, ObjectRow] = {}
        for span in spans:
            _note_object(objects, graph.ref(span.key), None, None, None)
        self.store.write(spans, objects.values())
        logger.info("moved %s and %d dependents to the trace of %s", key, len(subtree) - 1, root)
        return len(spans)

    def _flush(self, spans: list[SpanRecord], objects: dict[int, ObjectRow], result: BatchResult) -> None:
        if not spans and not objects:
            return
        for span in spans:
            if span.object_id not in objects:
                _note_object(objects, self.graph.ref(span.key), None, None, None)
        try:
            self.store.write(spans, objects.values())
        except Exception:
            # The aggregator believes these object spans exist; make it write them again next time.
            self.aggregator.forget()
            raise
        result.spans += len(spans)
        spans.clear()
        objects.clear()


def _note_object(
    objects: dict[int, ObjectRow],
    ref: ObjectRef,
    owner_id: int | None,
    first_us: int | None,
    last_us: int | None,
) -> None:
    object_id = ids.object_id(ref.key)
    known = objects.get(object_id)
    if known is None:
        objects[object_id] = ObjectRow(
            object_id, ref.key, ref.uid, ref.kind, ref.version, owner_id, first_us, last_us
        )
        return
    objects[object_id] = ObjectRow(
        object_id,
        ref.key,
        ref.uid or known.uid,
        ref.kind or known.kind,
        ref.version or known.version,
        owner_id if owner_id is not None else known.owner_id,
        _min(known.first_us, first_us),
        _max(known.last_us, last_us),
    )


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def load_graph(store: SpanStore) -> OwnerGraph:
    """Rebuild the owner graph from the objects the store knows."""
    graph = OwnerGraph()
    rows = list(store.objects())
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
