"""Ingestion: durable acceptance of webhook batches and the worker that processes everything.

``accept`` runs on the webhook's request threads: it decodes and checks the whole batch once
(typed, `kelemetry.receivers.auditwire`), removes secrets, refuses it with `BacklogFull` if the
unprocessed backlog is over its limit, writes it to the inbox (durable) and queues the decoded
events. One worker thread takes work items in order — audit batches, Kubernetes Events from the
Events watch, object versions from the object watches — so the store has a single writer, and
deletes each audit batch from the inbox once its spans are committed.

Nothing acknowledged is dropped: a work item the store cannot take is retried in place with
backoff until it can (later items wait behind it, and while it fails `accept` answers
`StoreUnavailable`, so senders retry instead of being told "stored"); an event the pipeline cannot
process is quarantined in the inbox with its reason. While idle the worker checkpoints and
truncates the write-ahead logs, so space freed on disk is given back.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kelemetry import errors
from kelemetry.diff.redact import Redactor
from kelemetry.pipeline import BatchResult, Pipeline
from kelemetry.receivers.audit import scrub_batch
from kelemetry.receivers.auditwire import AuditEvent, cut, decode_batch, encode_batch
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


# Retry delays of a work item the store cannot take, and how often a busy worker checkpoints.
RETRY_FIRST_S = 0.25
RETRY_MAX_S = 30.0
CHECKPOINT_EVERY_S = 60.0


class Ingestor:
    def __init__(
        self,
        inbox: Inbox,
        pipeline: Pipeline,
        *,
        max_backlog_bytes: int,
        redactor: Redactor | None = None,
        min_free_bytes: int = 0,
        retry_first_s: float = RETRY_FIRST_S,
    ) -> None:
        self.inbox = inbox
        self.redactor = redactor or Redactor()
        self.pipeline = pipeline
        self.max_backlog_bytes = max_backlog_bytes
        self.min_free_bytes = min_free_bytes
        self.retry_first_s = retry_first_s
        self.counters: Counter[str] = Counter()
        # Why the store cannot take writes now (None while it can); set and cleared by the worker.
        self.store_failure: str | None = None
        self._stopping = threading.Event()
        self._dirty = False
        self._checkpointed = time.monotonic()
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

    @property
    def backlog_batches(self) -> int:
        return len(self._queued_ids)

    def accept(self, cluster: str, body: bytes) -> int:
        """Decode, check, persist and queue one webhook body; returns the number of events in it."""
        try:
            events = decode_batch(body)
        except errors.InputError:
            self.counters["batches_rejected"] += 1
            raise
        body, events = scrub_batch(body, events, self.redactor)
        size = len(body)
        self._check_writable(size)
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
        self.counters["received_bytes"] += size
        logger.debug(
            "accepted batch %d of cluster %s: %d events, %d bytes",
            batch_id,
            cluster,
            len(events),
            size,
            extra={"cluster": cluster, "batch": batch_id},
        )
        return len(events)

    def problems(self) -> list[str]:
        """Why a batch would not be acknowledged now (empty when ready): for ``/readyz``."""
        found = []
        if self.store_failure is not None:
            found.append(f"the store is failing: {self.store_failure}")
        low = self._low_space(0)
        if low is not None:
            found.append(low)
        if self._backlog_bytes >= self.max_backlog_bytes:
            found.append(
                f"backlog of {self._backlog_bytes} bytes is at its limit of {self.max_backlog_bytes}"
            )
        return found

    def _low_space(self, incoming: int) -> str | None:
        if not self.min_free_bytes:
            return None
        try:
            free = shutil.disk_usage(self.inbox.path.parent).free
        except OSError as exc:
            return f"cannot read the free space of the store's disk: {exc}"
        if free - incoming < self.min_free_bytes:
            return (
                f"only {free} bytes free on the store's disk, below the {self.min_free_bytes}-byte minimum "
                "(--min-free-space)"
            )
        return None

    def _check_writable(self, size: int) -> None:
        """Refuse before acknowledging what could not be kept: the sender retries a 503/507."""
        failure = self.store_failure
        if failure is not None:
            self.counters["batches_unavailable"] += 1
            raise errors.StoreUnavailable(f"the store is failing ({failure}); retry later")
        low = self._low_space(size)
        if low is not None:
            self.counters["batches_no_space"] += 1
            raise errors.StoreUnavailable(low, status=507)

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
        """Process what is queued, then stop the worker. Work the store cannot take is not retried
        any more: audit batches stay in the inbox for the next start."""
        if self._thread is None:
            return
        self._stopping.set()
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None
        self._stopping.clear()

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
                self._checkpoint(idle=True)
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
            self._dirty = True
            self._checkpoint(idle=False)

    def _checkpoint(self, *, idle: bool) -> None:
        if not self._dirty or (not idle and time.monotonic() - self._checkpointed < CHECKPOINT_EVERY_S):
            return
        try:
            self.pipeline.store.checkpoint()
            self.inbox.checkpoint()
        except errors.StoreError as exc:
            logger.warning("%s", exc)
            return
        self._dirty = False
        self._checkpointed = time.monotonic()
        self.counters["checkpoints"] += 1

    def _stored(self, work: Callable[[], None], what: str) -> bool:
        """Run ``work`` until the store takes it, waiting longer after each failure; False when the
        worker is stopping first (the work is left where it came from)."""
        delay = self.retry_first_s
        while True:
            try:
                work()
            except errors.StoreRefused:
                raise  # the same write would be refused again
            except errors.StoreError as exc:
                self.counters["store_failures"] += 1
                # SQLite's own words ("database or disk is full"): the answer to a sender must not
                # carry the store's path.
                self.store_failure = cut(str(exc.__cause__ or exc))
                logger.error("%s could not be stored (%s); retrying in %.2fs", what, cut(str(exc)), delay)
                if self._stopping.wait(delay):
                    return False
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            if self.store_failure is not None:
                logger.info("the store takes writes again")
                self.store_failure = None
            return True

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
            self._stored(lambda: work(item), type(item).__name__)
        except Exception:
            self.counters["batches_failed"] += 1
            logger.exception("%s could not be processed", type(item).__name__)
        finally:
            with self._changed:
                self._pending_items -= 1
                self._changed.notify_all()

    def _audit(self, batch: AuditBatch) -> None:
        try:
            if self._stored(lambda: self._audit_once(batch), f"batch {batch.batch_id}"):
                self.last_processed_us = time.time_ns() // 1000
                logger.debug(
                    "processed batch %d of cluster %s",
                    batch.batch_id,
                    batch.cluster,
                    extra={"cluster": batch.cluster, "batch": batch.batch_id},
                )
            else:
                self.counters["batches_left_in_inbox"] += 1
        except Exception:
            # Not the store: a fault of ours that retrying will not cure. The batch stays in the inbox.
            self.counters["batches_failed"] += 1
            logger.exception(
                "batch %d failed; it stays in the inbox",
                batch.batch_id,
                extra={"cluster": batch.cluster, "batch": batch.batch_id},
            )
        finally:
            with self._changed:
                self._backlog_bytes -= batch.size
                self._queued_ids.discard(batch.batch_id)
                self._changed.notify_all()

    def _audit_once(self, batch: AuditBatch) -> None:
        events = batch.events
        if events is None:
            try:
                events = decode_batch(batch.body)
            except errors.InputError as exc:
                self._quarantine(batch.cluster, batch.body, f"inbox batch unreadable: {exc}")
                self.inbox.delete(batch.batch_id)
                return
        try:
            self._count(self.pipeline.process_audit(events, batch.cluster))
        except errors.StoreRefused:
            # One event the store refuses must not take the others with it: each is written alone,
            # and the ones still refused are kept aside with the reason.
            logger.warning(
                "batch %d was refused whole; writing its events one by one",
                batch.batch_id,
                extra={"cluster": batch.cluster, "batch": batch.batch_id},
            )
            for event in events:
                try:
                    self._count(self.pipeline.process_audit([event], batch.cluster))
                except errors.StoreRefused as exc:
                    self._quarantine(batch.cluster, encode_batch([event]), str(exc))
        self.inbox.delete(batch.batch_id)

    def _count(self, result: BatchResult) -> None:
        self.counters["events_kept"] += result.kept
        self.counters["spans_written"] += result.spans
        self.counters["events_failed"] += result.failed

    def _quarantine(self, cluster: str, body: bytes, reason: str) -> None:
        reason = cut(reason)
        self.inbox.quarantine(cluster, body, reason, time.time_ns() // 1000)
        self.counters["events_quarantined"] += 1
        logger.error("quarantined input of cluster %s: %s", cluster, reason, extra={"cluster": cluster})
