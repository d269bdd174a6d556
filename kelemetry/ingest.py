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
process — refused by the store, or raised on by a stage of the pipeline — is quarantined in the
inbox with its reason, as received (audit events scrubbed as the inbox keeps them, watched objects
redacted as the store would keep them), whatever its source; ``retry_quarantined`` feeds it back
through the same pipeline once the cause is fixed. While idle the worker checkpoints and
truncates the write-ahead logs, so space freed on disk is given back.

The worker also notes in the store, every few seconds, that the collector is receiving (a heartbeat
per cluster), and stores gaps (``kelemetry.model.gaps``): at start, one per cluster from the last
heartbeat of the previous run; from ``accept``, the interval over which batches were refused; from
the watches, relists and long reconnects. A gap the store cannot take waits beside the queue.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kelemetry import errors
from kelemetry.diff.redact import Redactor
from kelemetry.model.gaps import Gap, GapReason
from kelemetry.pipeline import BatchResult, Failure, Pipeline
from kelemetry.receivers import quarantined
from kelemetry.receivers.audit import scrub_batch
from kelemetry.receivers.auditwire import FUTURE_SKEW_US, AuditEvent, cut, decode_batch
from kelemetry.store.inbox import Inbox, Quarantined

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


@dataclass(frozen=True, slots=True)
class Retried:
    """What a retry of quarantined input did: rows stored (and released), rows kept with their new
    reason as (row id, reason)."""

    stored: int
    failed: list[tuple[int, str]]


# Input to keep aside once a work item's writes are done: (body, reason, source).
Aside = tuple[bytes, str, str]


@dataclass(slots=True)
class _Refusals:
    """Webhook batches of one cluster refused since the last one accepted."""

    first_us: int
    last_us: int
    count: int
    statuses: set[int]


WorkItem = AuditBatch | KubeEvents | WatchedObjects | _Stop
_STOP = _Stop()


# Retry delays of a work item the store cannot take, and how often a busy worker checkpoints.
RETRY_FIRST_S = 0.25
RETRY_MAX_S = 30.0
CHECKPOINT_EVERY_S = 60.0
# How often the worker notes in the store that it is alive (a restart's gap starts at the last note).
HEARTBEAT_EVERY_S = 5.0
# How long gaps the store could not take wait before the worker tries them again.
GAP_RETRY_S = 5.0


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
        max_clock_skew_us: int = FUTURE_SKEW_US,
        clusters: Iterable[str] = (),
        heartbeat_s: float = HEARTBEAT_EVERY_S,
    ) -> None:
        self.inbox = inbox
        # The pipeline's own by default: what is kept aside is redacted as what is stored.
        self.redactor = redactor or pipeline.converter.redactor
        self.pipeline = pipeline
        self.max_backlog_bytes = max_backlog_bytes
        self.min_free_bytes = min_free_bytes
        self.retry_first_s = retry_first_s
        self.max_clock_skew_us = max_clock_skew_us
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
        # Gaps: the clusters a heartbeat is written for, refusals not yet recorded, and the metrics.
        self._served: set[str] = set(clusters)
        self.heartbeat_s = heartbeat_s
        self._beaten = 0.0
        self._refusals: dict[str, _Refusals] = {}
        # Gaps not stored yet (guarded by _changed; counted in _pending_items until stored).
        self._gaps: list[Gap] = []
        self._gaps_tried = 0.0
        self.gap_counts: Counter[tuple[str, str]] = Counter()
        self.gap_seconds: dict[tuple[str, str], float] = defaultdict(float)

    @property
    def backlog_bytes(self) -> int:
        return self._backlog_bytes

    @property
    def backlog_batches(self) -> int:
        return len(self._queued_ids)

    def accept(self, cluster: str, body: bytes) -> int:
        """Decode, check, persist and queue one webhook body; returns the number of events in it. A
        refusal the sender may give up after (429, 503, 507) opens a "possible loss" gap of the
        cluster, recorded when a batch of it is accepted again (or at stop)."""
        try:
            accepted = self._accept(cluster, body)
        except errors.BacklogFull:
            self._refused(cluster, 429)
            raise
        except errors.StoreUnavailable as exc:
            self._refused(cluster, exc.status)
            raise
        except errors.StoreError:
            self._refused(cluster, 503)
            raise
        self._accepted(cluster)
        return accepted

    def _accept(self, cluster: str, body: bytes) -> int:
        try:
            events = decode_batch(body, max_skew_us=self.max_clock_skew_us)
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

    # -- gaps

    def record_gap(self, gap: Gap) -> None:
        """Count a gap and queue it for the store (any thread)."""
        key = (gap.cluster, gap.reason.value)
        self.gap_counts[key] += 1
        self.gap_seconds[key] += gap.seconds
        logger.warning("cluster %s: %s", gap.cluster, gap.sentence())
        with self._changed:
            self._gaps.append(gap)
            self._pending_items += 1
        self._gaps_tried = 0.0

    def _store_gaps(self) -> None:
        """Write the gaps recorded since the last call, by the one writer. Gaps never hold the queue
        up: ones the store refuses wait (counted as pending) and are tried again after
        ``GAP_RETRY_S``, while batches go on being taken, or refused, on their own account."""
        if not self._gaps or time.monotonic() - self._gaps_tried < GAP_RETRY_S:
            return
        with self._changed:
            gaps, self._gaps = self._gaps, []
        try:
            result = self.pipeline.process_gaps(gaps)
        except Exception as exc:
            self._gaps_tried = time.monotonic()
            logger.warning("%d gap(s) could not be stored yet (%s)", len(gaps), cut(str(exc)))
            with self._changed:
                self._gaps[:0] = gaps
            return
        self.counters["spans_written"] += result.spans
        with self._changed:
            self._pending_items -= len(gaps)
            self._changed.notify_all()

    def _refused(self, cluster: str, status: int) -> None:
        now = time.time_ns() // 1000
        with self._changed:
            self._served.add(cluster)
            open_ = self._refusals.get(cluster)
            if open_ is None:
                self._refusals[cluster] = _Refusals(now, now, 1, {status})
                return
            open_.last_us = now
            open_.count += 1
            open_.statuses.add(status)

    def _accepted(self, cluster: str) -> None:
        with self._changed:
            self._served.add(cluster)
            open_ = self._refusals.pop(cluster, None)
        if open_ is not None:
            self._record_refusals(cluster, open_, time.time_ns() // 1000)

    def _record_refusals(self, cluster: str, refusals: _Refusals, end_us: int) -> None:
        codes = "/".join(str(code) for code in sorted(refusals.statuses))
        plural = "es" if refusals.count > 1 else ""
        detail = f"{refusals.count} batch{plural} refused ({codes})"
        self.record_gap(Gap(cluster, GapReason.REFUSED, refusals.first_us, end_us, detail))

    def _restart_gaps(self) -> None:
        """Each cluster a previous run received for has a gap from its last heartbeat to now."""
        store = self.pipeline.store
        try:
            beats = store.heartbeats()
        except errors.StoreError as exc:
            logger.warning("the heartbeats of the last run could not be read: %s", exc)
            return
        now = time.time_ns() // 1000
        for cluster, beat in sorted(beats.items()):
            self._served.add(cluster)
            if beat < now:
                self.record_gap(Gap(cluster, GapReason.RESTART, beat, now))

    def _beat(self, *, force: bool = False) -> None:
        if not force and time.monotonic() - self._beaten < self.heartbeat_s:
            return
        with self._changed:
            served = sorted(self._served)
        try:
            self.pipeline.store.beat(served, time.time_ns() // 1000)
        except errors.StoreError as exc:
            logger.debug("heartbeat not written: %s", exc)
            return
        self._beaten = time.monotonic()

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
        self._restart_gaps()
        self._beat(force=True)
        # Daemon only as a safety net: the collector stops and joins it (stop()).
        self._thread = threading.Thread(target=self._run, name="kelemetry-ingest", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Process what is queued, then stop the worker. Work the store cannot take is not retried
        any more: audit batches stay in the inbox for the next start."""
        if self._thread is None:
            return
        # Refusals not followed by an acceptance are gaps too (stored by the worker or, below, after it).
        with self._changed:
            open_refusals, self._refusals = self._refusals, {}
        for cluster, refusals in sorted(open_refusals.items()):
            self._record_refusals(cluster, refusals, refusals.last_us)
        self._stopping.set()
        self._queue.put(_STOP)
        self._thread.join(timeout)
        stopped = not self._thread.is_alive()
        self._thread = None
        self._stopping.clear()
        if stopped:
            # The worker is gone, so this thread is the store's one writer now.
            self._gaps_tried = 0.0
            self._store_gaps()
            self._beat(force=True)

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
                self._store_gaps()
                self._beat()
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
            self._store_gaps()
            self._beat()
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
        aside: list[Aside] = []
        results = self._alone_if_refused(
            item.events,
            lambda objs: self.pipeline.process_kube_events(objs, item.cluster),
            quarantined.event_body,
            "event",
            aside,
        )
        for result in results:
            self.counters["kube_events_kept"] += result.kept
            self.counters["spans_written"] += result.spans
            self.counters["events_failed"] += result.failed
        self._set_aside(item.cluster, aside)
        if item.on_done is not None:
            item.on_done()

    def _watched(self, item: WatchedObjects) -> None:
        aside: list[Aside] = []
        now = time.time_ns() // 1000
        results = self._alone_if_refused(
            item.items,
            lambda items: self.pipeline.process_object_changes(items, item.cluster, item.target, now),
            lambda watched: self._watch_body(item.target, watched),
            "watch",
            aside,
        )
        for result in results:
            self.counters["object_changes"] += result.events
            self.counters["spans_written"] += result.spans
            self.counters["events_failed"] += result.failed
        self._set_aside(item.cluster, aside)

    def _watch_body(self, target: tuple[str, str, str], watched: WatchItem) -> bytes:
        kind, obj = watched
        group, _version, resource = target
        if isinstance(obj, Mapping):
            obj = self.redactor.clean(group, resource, obj)
        return quarantined.watch_body(kind, target, obj)

    def _alone_if_refused(
        self,
        items: list[Any],
        process: Callable[[list[Any]], BatchResult],
        body_of: Callable[[Any], bytes],
        source: str,
        aside: list[Aside],
    ) -> list[BatchResult]:
        """Process ``items`` together; if the store refuses their write, each alone, so one refused
        input does not take the others with it. What is refused, or what a stage raised on, is added
        to ``aside`` to be quarantined once the writes are done (a write retried after a store
        failure must not quarantine anything twice)."""
        try:
            results = [process(items)]
        except errors.StoreRefused:
            logger.warning("%d %s inputs were refused whole; writing them one by one", len(items), source)
            results = []
            for one in items:
                try:
                    results.append(process([one]))
                except errors.StoreRefused as exc:
                    aside.append((body_of(one), _refused(exc), source))
        for result in results:
            aside.extend((body_of(failure.item), failure.reason, source) for failure in result.failures)
        return results

    def _set_aside(self, cluster: str, aside: list[Aside]) -> None:
        for body, reason, source in aside:
            self._quarantine(cluster, body, reason, source)

    def _guarded(self, item: KubeEvents | WatchedObjects, work: Callable[[Any], None]) -> None:
        try:
            self._stored(lambda: work(item), type(item).__name__)
        except Exception as exc:
            # Not the store's failure and not one input's: a fault of ours. What the item held is
            # kept aside rather than dropped.
            self.counters["batches_failed"] += 1
            logger.exception("%s could not be processed", type(item).__name__)
            self._quarantine_item(item, f"processing failed: {type(exc).__name__}: {exc}")
        finally:
            with self._changed:
                self._pending_items -= 1
                self._changed.notify_all()

    def _quarantine_item(self, item: KubeEvents | WatchedObjects, reason: str) -> None:
        try:
            if isinstance(item, KubeEvents):
                for obj in item.events:
                    self._quarantine(item.cluster, quarantined.event_body(obj), reason, "event")
            else:
                for watched in item.items:
                    self._quarantine(item.cluster, self._watch_body(item.target, watched), reason, "watch")
        except Exception:
            logger.exception("%s could not be quarantined either", type(item).__name__)

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
                events = decode_batch(batch.body, max_skew_us=self.max_clock_skew_us)
            except errors.InputError as exc:
                self._quarantine(batch.cluster, batch.body, f"inbox batch unreadable: {exc}")
                self.inbox.delete(batch.batch_id)
                return
        aside: list[Aside] = []
        for result in self._alone_if_refused(
            events,
            lambda some: self.pipeline.process_audit(some, batch.cluster),
            quarantined.audit_body,
            "audit",
            aside,
        ):
            self._count(result)
        self._set_aside(batch.cluster, aside)
        self.inbox.delete(batch.batch_id)

    def _count(self, result: BatchResult) -> None:
        self.counters["events_kept"] += result.kept
        self.counters["spans_written"] += result.spans
        self.counters["events_failed"] += result.failed

    def _quarantine(self, cluster: str, body: bytes, reason: str, source: str = "audit") -> None:
        reason = cut(reason)
        self.inbox.quarantine(cluster, body, reason, time.time_ns() // 1000, source)
        self.counters["events_quarantined"] += 1
        logger.error(
            "quarantined input of cluster %s: %s (%s)", cluster, reason, source, extra={"cluster": cluster}
        )

    def retry_quarantined(self, rows: list[Quarantined] | None = None) -> Retried:
        """Feed quarantined input (``rows``, default all) through the pipeline again, synchronously
        (not with the worker running); rows stored are released, the others kept with the reason
        they failed with now. A store that fails raises `errors.StoreError`: nothing is released
        that was not stored."""
        stored: list[int] = []
        failed: list[tuple[int, str]] = []
        now = time.time_ns() // 1000
        for row in self.inbox.quarantined() if rows is None else rows:
            try:
                failures = self._retry_one(row, now)
            except errors.StoreRefused as exc:
                failures = [Failure(None, _refused(exc))]
            except errors.StoreError:
                raise
            except errors.InputError as exc:
                failures = [Failure(None, f"unreadable: {exc}")]
            except Exception as exc:
                failures = [Failure(None, f"processing failed: {type(exc).__name__}: {exc}")]
            if failures:
                reason = cut(failures[0].reason)
                self.inbox.requarantine(row.row_id, reason, now)
                failed.append((row.row_id, reason))
            else:
                stored.append(row.row_id)
        self.inbox.release(stored)
        return Retried(len(stored), failed)

    def _retry_one(self, row: Quarantined, now: int) -> list[Failure]:
        if row.source == "audit":
            events = decode_batch(row.body, max_skew_us=self.max_clock_skew_us)
            return self.pipeline.process_audit(events, row.cluster).failures
        if row.source == "event":
            return self.pipeline.process_kube_events([quarantined.read_event(row.body)], row.cluster).failures
        if row.source == "watch":
            kind, target, obj = quarantined.read_watch(row.body)
            result = self.pipeline.process_object_changes([(kind, obj)], row.cluster, target, now)
            # A retried change waits for no audit event any more: it is written now, as this row's.
            self.pipeline.flush_pending(now + self.pipeline.change_grace_us + 1, result)
            return result.failures
        raise errors.WrongKind(f"unknown source {row.source!r}")


def _refused(exc: errors.StoreRefused) -> str:
    # SQLite's own words, without the store's path the message carries.
    return f"store refused: {exc.__cause__ or exc}"
