"""Ingestion: durable acceptance of webhook batches and the worker that processes everything.

``accept`` runs on the webhook's request threads: it decodes and checks the whole batch once
(typed, `kelemetry.receivers.auditwire`), removes secrets, refuses it with `BacklogFull` if the
unprocessed backlog is over its limit, writes it to the inbox (durable) and queues the decoded
events. One worker thread takes work items in order — audit batches, Kubernetes Events from the
Events watch, object versions from the object watches — so the store has a single writer, and
deletes each audit batch from the inbox once its spans are committed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kelemetry import errors
from kelemetry.diff.redact import Redactor
from kelemetry.pipeline import Pipeline
from kelemetry.receivers.audit import scrub_batch
from kelemetry.receivers.auditwire import AuditEvent, decode_batch
from kelemetry.store.inbox import Inbox

logger = logging.getLogger(__name__)

WatchItem = tuple[str, Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class AuditBatch:
    """A webhook batch, in the inbox until processed. ``events`` were decoded at acceptance (the
    structs are not tracked by the garbage collector and their bodies are views of the received
    bytes, so a long queue costs neither GC passes nor a second copy); a batch recovered from the
    inbox after a restart has only its ``body``."""

    batch_id: int
    cluster: str
    size: int
    events: list[AuditEvent] | None = None
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class KubeEvents:
    """Kubernetes Events from the Events watch; their durability is the watch's resume point,
    saved by ``on_done`` once they are stored."""

    cluster: str
    events: list[Mapping[str, Any]]
    on_done: Callable[[], None] | None = None


@dataclass(frozen=True, slots=True)
class WatchedObjects:
    """Object versions from an object watch: (group, version, resource) and (watch type, object)."""

    cluster: str
    target: tuple[str, str, str]
    items: list[WatchItem]


class _Stop:
    pass


WorkItem = AuditBatch | KubeEvents | WatchedObjects | _Stop
_STOP = _Stop()


class Ingestor:
    def __init__(
        self, inbox: Inbox, pipeline: Pipeline, *, max_backlog_bytes: int, redactor: Redactor | None = None
    ) -> None:
        self.inbox = inbox
        self.redactor = redactor or Redactor()
        self.pipeline = pipeline
        self.max_backlog_bytes = max_backlog_bytes
        self.counters: Counter[str] = Counter()
        self._queue: queue.Queue[WorkItem] = queue.Queue()
        self._backlog_bytes = 0
        # Audit batches queued and not yet finished; guarded by _changed, which also wakes wait_idle.
        self._queued_ids: set[int] = set()
        self._pending_items = 0
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self.last_processed_us = 0

    @property
    def backlog_bytes(self) -> int:
        return self._backlog_bytes

    def accept(self, cluster: str, body: bytes) -> int:
        """Decode, check, persist and queue one webhook body; returns the number of events in it."""
        try:
            events = decode_batch(body)
        except errors.InputError:
            self.counters["batches_rejected"] += 1
            raise
        body, events = scrub_batch(body, events, self.redactor)
        size = len(body)
        with self._changed:
            if self._backlog_bytes + size > self.max_backlog_bytes and self._backlog_bytes > 0:
                self.counters["batches_throttled"] += 1
                raise errors.BacklogFull(
                    f"backlog of {self._backlog_bytes} bytes is at its limit of {self.max_backlog_bytes}"
                )
            self._backlog_bytes += size
        try:
            batch_id = self.inbox.put(cluster, body, time.time_ns() // 1000)
        except errors.StoreError:
            with self._changed:
                self._backlog_bytes -= size
            raise
        self._enqueue_batch(AuditBatch(batch_id, cluster, size, events), counted=True)
        self.counters["batches_accepted"] += 1
        self.counters["events_received"] += len(events)
        return len(events)

    def _enqueue_batch(self, batch: AuditBatch, *, counted: bool) -> bool:
        with self._changed:
            if batch.batch_id in self._queued_ids:
                return False
            self._queued_ids.add(batch.batch_id)
            if not counted:
                self._backlog_bytes += batch.size
        self._queue.put(batch)
        return True

    def _enqueue(self, item: KubeEvents | WatchedObjects) -> None:
        with self._changed:
            self._pending_items += 1
        self._queue.put(item)

    def submit_kube_events(
        self, cluster: str, events: list[Mapping[str, Any]], on_done: Callable[[], None] | None = None
    ) -> None:
        """Queue Kubernetes Events for the worker; ``on_done`` runs after they are stored."""
        self._enqueue(KubeEvents(cluster, events, on_done))

    def submit_object_changes(
        self, cluster: str, target: tuple[str, str, str], items: list[WatchItem]
    ) -> None:
        """Queue watched object versions for the worker."""
        self._enqueue(WatchedObjects(cluster, target, items))

    def start(self) -> None:
        """Queue what the inbox kept from a previous run (unless already queued), then start the worker."""
        recovered = 0
        for batch_id, cluster, body in self.inbox.pending():
            if self._enqueue_batch(AuditBatch(batch_id, cluster, len(body), body=body), counted=False):
                recovered += 1
        if recovered:
            logger.info("recovered %d unprocessed batches from the inbox", recovered)
        # Daemon only as a safety net: the collector stops and joins it (stop()).
        self._thread = threading.Thread(target=self._run, name="kelemetry-ingest", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Process what is queued, then stop the worker."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None

    def wait_idle(self, timeout: float) -> bool:
        """Block until every accepted batch and submitted item is processed (tests, shutdown)."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._queued_ids and not self._pending_items, timeout)

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                self._flush_pending()
                continue
            match item:
                case _Stop():
                    return
                case AuditBatch():
                    self._audit(item)
                case KubeEvents():
                    self._guarded(item, self._kube_events)
                case WatchedObjects():
                    self._guarded(item, self._watched)
            # Watched changes nobody claimed become change spans once their grace period ends, also
            # while the queue never runs dry.
            self._flush_pending()

    def _flush_pending(self) -> None:
        try:
            self.pipeline.flush_pending(time.time_ns() // 1000)
        except Exception:
            logger.exception("emitting watched changes failed")

    def _kube_events(self, item: KubeEvents) -> None:
        result = self.pipeline.process_kube_events(item.events, item.cluster)
        self.counters["kube_events_kept"] += result.kept
        self.counters["spans_written"] += result.spans
        if item.on_done is not None:
            item.on_done()

    def _watched(self, item: WatchedObjects) -> None:
        result = self.pipeline.process_object_changes(
            item.items, item.cluster, item.target, time.time_ns() // 1000
        )
        self.counters["object_changes"] += result.events
        self.counters["spans_written"] += result.spans

    def _guarded(self, item: KubeEvents | WatchedObjects, work: Callable[[Any], None]) -> None:
        try:
            work(item)
        except Exception:
            self.counters["batches_failed"] += 1
            logger.exception("%s could not be processed", type(item).__name__)
        finally:
            with self._changed:
                self._pending_items -= 1
                self._changed.notify_all()

    def _audit(self, batch: AuditBatch) -> None:
        try:
            events = batch.events
            if events is None:
                try:
                    events = decode_batch(batch.body)
                except errors.InputError:
                    logger.error("inbox batch %d is unreadable; dropping it", batch.batch_id)
                    self.inbox.delete(batch.batch_id)
                    return
            result = self.pipeline.process_audit(events, batch.cluster)
            self.inbox.delete(batch.batch_id)
            self.counters["events_kept"] += result.kept
            self.counters["spans_written"] += result.spans
            self.counters["events_failed"] += result.failed
            self.last_processed_us = time.time_ns() // 1000
        except errors.StoreError:
            # The batch stays in the inbox and is retried on the next start; keep serving.
            self.counters["batches_failed"] += 1
            logger.exception("batch %d could not be stored; it stays in the inbox", batch.batch_id)
        except Exception:
            self.counters["batches_failed"] += 1
            logger.exception("batch %d failed", batch.batch_id)
            self.inbox.delete(batch.batch_id)
        finally:
            with self._changed:
                self._backlog_bytes -= batch.size
                self._queued_ids.discard(batch.batch_id)
                self._changed.notify_all()
