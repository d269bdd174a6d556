"""Ingestion: durable acceptance of webhook batches and the worker that processes them.

``accept`` runs on the webhook's request threads: it validates the whole batch, refuses it with
`BacklogFull` if the unprocessed backlog is over its limit, writes it to the inbox (durable) and
queues it. One worker thread drains the queue in order through the pipeline, so the store has a
single writer, and deletes each batch from the inbox once its spans are committed.
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
from kelemetry.receivers.audit import decode_webhook_body, scrub_batch
from kelemetry.store.inbox import Inbox

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Batch:
    # The body stays bytes until the worker takes it: decoded JSON is ~4x larger and millions of
    # queued dicts make every garbage-collector pass stall the webhook for hundreds of ms.
    batch_id: int
    cluster: str
    body: bytes
    # Kubernetes Events from the watcher travel the same queue, so the store keeps one writer;
    # they are not in the inbox: their durability is the watcher's resume point, saved by on_done.
    kube_events: list[Mapping[str, Any]] | None = None
    on_done: Callable[[], None] | None = None
    # Watched object versions: (group, version, resource) and (watch type, object) items.
    target: tuple[str, str, str] | None = None
    changes: list[tuple[str, Mapping[str, Any]]] | None = None

    @property
    def size(self) -> int:
        return len(self.body)


_STOP = _Batch(-1, "", b"")


class Ingestor:
    def __init__(
        self, inbox: Inbox, pipeline: Pipeline, *, max_backlog_bytes: int, redactor: Redactor | None = None
    ) -> None:
        self.inbox = inbox
        self.redactor = redactor or Redactor()
        self.pipeline = pipeline
        self.max_backlog_bytes = max_backlog_bytes
        self.counters: Counter[str] = Counter()
        self._queue: queue.Queue[_Batch] = queue.Queue()
        self._backlog_bytes = 0
        # Batches queued and not yet finished; guarded by _changed, which also wakes wait_idle.
        self._queued_ids: set[int] = set()
        self._next_internal_id = -1
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self.last_processed_us = 0

    @property
    def backlog_bytes(self) -> int:
        return self._backlog_bytes

    def accept(self, cluster: str, body: bytes) -> int:
        """Validate, persist and queue one webhook body; returns the number of events in it."""
        try:
            events = decode_webhook_body(body)
        except errors.InputError:
            self.counters["batches_rejected"] += 1
            raise
        body = scrub_batch(body, events, self.redactor)
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
        self._enqueue(_Batch(batch_id, cluster, body), counted=True)
        self.counters["batches_accepted"] += 1
        self.counters["events_received"] += len(events)
        return len(events)

    def _enqueue(self, batch: _Batch, *, counted: bool) -> bool:
        with self._changed:
            if batch.batch_id in self._queued_ids:
                return False
            self._queued_ids.add(batch.batch_id)
            if not counted:
                self._backlog_bytes += batch.size
        self._queue.put(batch)
        return True

    def submit_kube_events(
        self, cluster: str, events: list[Mapping[str, Any]], on_done: Callable[[], None] | None = None
    ) -> None:
        """Queue Kubernetes Events for the worker; ``on_done`` runs after they are stored."""
        with self._changed:
            self._next_internal_id -= 1
            batch_id = self._next_internal_id
        self._enqueue(_Batch(batch_id, cluster, b"", events, on_done), counted=False)

    def submit_object_changes(
        self, cluster: str, target: tuple[str, str, str], items: list[tuple[str, Mapping[str, Any]]]
    ) -> None:
        """Queue watched object versions for the worker."""
        with self._changed:
            self._next_internal_id -= 1
            batch_id = self._next_internal_id
        self._enqueue(_Batch(batch_id, cluster, b"", target=target, changes=items), counted=False)

    def start(self) -> None:
        """Queue what the inbox kept from a previous run (unless already queued), then start the worker."""
        recovered = 0
        for batch_id, cluster, body in self.inbox.pending():
            with self._changed:
                if batch_id in self._queued_ids:
                    continue
            if self._enqueue(_Batch(batch_id, cluster, body), counted=False):
                recovered += 1
        if recovered:
            logger.info("recovered %d unprocessed batches from the inbox", recovered)
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
        """Block until every accepted batch is processed (tests and graceful shutdown)."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._queued_ids, timeout)

    def _run(self) -> None:
        while True:
            try:
                batch = self._queue.get(timeout=1.0)
            except queue.Empty:
                # Watched changes nobody claimed become change spans once their grace period ends.
                try:
                    self.pipeline.flush_pending(time.time_ns() // 1000)
                except Exception:
                    logger.exception("emitting watched changes failed")
                continue
            if batch is _STOP:
                return
            try:
                if batch.changes is not None and batch.target is not None:
                    result = self.pipeline.process_object_changes(
                        batch.changes, batch.cluster, batch.target, time.time_ns() // 1000
                    )
                    self.counters["object_changes"] += result.events
                    self.counters["spans_written"] += result.spans
                    continue
                if batch.kube_events is not None:
                    result = self.pipeline.process_kube_events(batch.kube_events, batch.cluster)
                    self.counters["kube_events_kept"] += result.kept
                    self.counters["spans_written"] += result.spans
                    if batch.on_done is not None:
                        batch.on_done()
                    continue
                try:
                    events = decode_webhook_body(batch.body)
                except errors.InputError:
                    logger.error("inbox batch %d is unreadable; dropping it", batch.batch_id)
                    self.inbox.delete(batch.batch_id)
                    continue
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
