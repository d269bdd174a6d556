"""One partition a worker owns: its stream read in order, traced, exported, recorded, snapshotted.

A runner keeps a working SQLite store in the worker's scratch directory, the pipeline `serve`
builds, and an `OtlpFollower` sending that store's spans to the backend. Per fetched batch:
process each message (what the pipeline cannot take goes to the quarantine), export what has
settled — while the backend is down this retries and nothing else moves, the stream still holds
the messages — then record ``done`` (the last stream sequence whose spans were exported) in the
progress bucket by compare-and-set. The revision the runner last wrote is its fence: a failed
compare-and-set means another worker has taken the partition, and this runner stops without
writing anything more.

Settling: Jaeger cannot move or replace a span, yet a span written now may change soon — moved to
another trace when its owner's create arrives late, reissued with a fuller diff when a later event
reveals the change. So after each message the runner notes (stream sequence, the store's write
sequence, when), and exports only rows written at or before the newest write sequence noted at
least ``settle_seconds`` ago (everything, when giving the partition up). A row rewritten meanwhile
has a later write sequence, so it waits again and is exported once, in its final form. ``done`` is
the last message before the first one whose writes are not all exported yet, so the progress entry
lags by the settle time while the runner goes on fetching and processing.

Taking a partition over: claim the progress entry (compare-and-set, so the previous owner is
fenced from here on), restore the last snapshot (state at stream sequence ``s0``), then read from
``s0 + 1``. Messages up to the recorded ``done`` are processed again only to rebuild memory: their
spans were exported, so the follower's cursor is moved past them. Later ones are exported as
usual. When the snapshot is ahead of ``done`` (its store holds rows still settling when it was
taken), the cursor and the settling messages are the snapshot's, less those at or below ``done``:
the rest are exported after a settle time. Span ids are deterministic and the state is the one the
previous owner had, so a message it exported but had not yet recorded is exported again
identical, which the backend stores once.

Snapshots (every ``snapshot_seconds`` and when a partition is given up) record their sequence in
the progress entry first (compare-and-set: a fenced runner writes no snapshot), then save the
state with the export cursor and the settling messages, then trim the stream below the *previous*
snapshot: whichever of the two a worker taking over reads, the messages after it are still there.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, replace
from pathlib import Path

from kelemetry import errors
from kelemetry.export.otlp import OtlpFollower
from kelemetry.kube.kinds import KindResolver
from kelemetry.model import backoff
from kelemetry.pipeline import Pipeline, build
from kelemetry.queue import layout, snapshot
from kelemetry.queue.jetstream import JetStream, Message, PartitionReader
from kelemetry.receivers import quarantined
from kelemetry.receivers.auditwire import FUTURE_SKEW_US, decode_batch
from kelemetry.settings import TraceSettings
from kelemetry.store.sqlite import SpanStore, StoreReader

logger = logging.getLogger(__name__)

FETCH_WAIT_S = 1.0
"""How long an idle runner waits for a message before it looks at its flags again (and exports
what has settled meanwhile: a span reaches the backend at most this much after its settle time)."""
RELEASE_EXPORT_S = 30.0
"""How long giving a partition up waits for a backend that is down; past it the partition is given
up without recording the last batch, which its next owner then processes and exports again."""
MAX_REASON = 1000
INSTANCE_ID = "kelemetry-worker"
"""The ``service.instance.id`` of every worker's spans: a span re-exported by the worker that took a
partition over must be byte-identical to the first export, or Jaeger shows both."""
DEFAULT_CLUSTER = "default"


@dataclass(frozen=True, slots=True)
class Progress:
    """The progress entry of a partition: JSON in the progress bucket."""

    done: int = 0
    """The last stream sequence whose spans were exported."""
    snap: int = 0
    """The stream sequence of the last snapshot."""
    owner: str = ""

    def encode(self) -> bytes:
        return json.dumps({"done": self.done, "snap": self.snap, "owner": self.owner}).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Progress:
        try:
            value = json.loads(raw)
            return cls(int(value["done"]), int(value["snap"]), str(value["owner"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise errors.QueueError(f"unreadable progress entry {raw[:100]!r}: {exc}") from None


class Fenced(errors.QueueError):
    """Another worker owns the partition now (or this one lost its lease): stop, write nothing."""


@dataclass(frozen=True, slots=True)
class _Aside:
    data: bytes
    headers: dict[str, str]
    msg_id: str


class PartitionRunner:
    def __init__(
        self,
        stream: JetStream,
        partition: int,
        worker: layout.WorkerSettings,
        trace: TraceSettings,
        counts: Counter[str],
    ) -> None:
        self.stream = stream
        self.partition = partition
        self.worker = worker
        self.trace = trace
        self.counts = counts
        self.path = Path(worker.state_dir) / f"part-{partition}.db"
        self.lost = False
        """Set by the lease keeper when the lease is gone: the runner stops at once, writes nothing."""
        self.progress = Progress(owner=worker.worker_id)
        self.ready = False
        self._releasing = False
        self._revision = 0
        self._processed = 0
        self._replay_until = 0
        self._stored_snap = 0
        self._snapped_at = time.monotonic()
        self._aside: list[_Aside] = []
        self._settling: deque[tuple[int, int, float]] = deque()
        """(stream sequence, store write sequence after it, monotonic time) of each message processed
        whose writes are not all exported yet, oldest first."""
        self._store: SpanStore | None = None
        self._pipeline: Pipeline | None = None
        self._follower: OtlpFollower | None = None
        self._export_reader: StoreReader | None = None
        self._reader: PartitionReader | None = None

    def release(self) -> None:
        """Give the partition up gracefully: finish the batch in hand, export, record, snapshot."""
        self._releasing = True

    @property
    def releasing(self) -> bool:
        return self._releasing

    async def run(self) -> str:
        """Owns the partition until released, fenced, or failed; says which."""
        retry = backoff.WATCH.start()
        try:
            while not self.lost:
                try:
                    if not self.ready:
                        if self._releasing:
                            return "released"  # nothing taken over yet, so nothing to record
                        await self._take_over()
                    elif self._releasing:
                        await self._finish()
                        return "released"
                    else:
                        await self._step()
                    retry.succeeded()
                except Fenced as exc:
                    logger.warning("partition %d: %s; stopping", self.partition, exc)
                    self.counts["fenced"] += 1
                    return "fenced"
                except snapshot.UnknownFormat as exc:
                    # Nothing was processed, recorded or trimmed: giving the lease back lets a worker
                    # of the version that wrote the snapshot (a rolling upgrade) take the partition.
                    logger.error("partition %d: %s; giving it up untouched", self.partition, exc)
                    self.counts["runner_failures"] += 1
                    return "failed"
                except errors.QueueError as exc:
                    delay = retry.failed()
                    logger.warning("partition %d: %s; retrying in %.1fs", self.partition, exc, delay)
                    await asyncio.sleep(delay)
            return "lost"
        except Exception:
            logger.exception("partition %d failed; giving it up", self.partition)
            self.counts["runner_failures"] += 1
            return "failed"
        finally:
            await self._close()

    # -- taking over

    async def _take_over(self) -> None:
        key = layout.progress_key(self.partition)
        entry = await self.stream.get(layout.PROGRESS_BUCKET, key)
        previous = Progress.decode(entry.value) if entry is not None else Progress()
        mine = replace(previous, owner=self.worker.worker_id)
        if entry is None:
            revision = await self.stream.create(layout.PROGRESS_BUCKET, key, mine.encode())
        else:
            revision = await self.stream.update(layout.PROGRESS_BUCKET, key, mine.encode(), entry.revision)
        if revision is None:
            raise Fenced("another worker claimed the partition first")
        self._revision, self.progress = revision, mine
        state = await self.stream.get_state(layout.state_name(self.partition))
        start = await asyncio.to_thread(self._open, state, previous.done)
        self._processed = self._stored_snap = start
        self._replay_until = max(previous.done, start)
        self._reader = await self.stream.reader(self.partition, start + 1)
        self._snapped_at = time.monotonic()
        self.ready = True
        self.counts["takeovers"] += 1
        logger.info(
            "partition %d taken over from %s: snapshot at %d, exported up to %d",
            self.partition,
            previous.owner or "nobody",
            start,
            previous.done,
        )

    def _open(self, state: bytes | None, done: int) -> int:
        """Restore the snapshot (or start empty) and the export position for messages exported up
        to ``done``; the stream sequence the state is at."""
        self._close_files()
        snapshot.discard(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        restored = snapshot.restore(state, self.path) if state else None
        resolver = restored.memory.resolver if restored is not None else KindResolver()
        store = SpanStore(self.path)
        pipeline = build(store, self.trace, resolver)
        if restored is not None:
            snapshot.apply(pipeline, restored.memory)
        follower = OtlpFollower(self.path, self.worker.otlp_endpoint, instance_id=INSTANCE_ID)
        follower.cursor = store.last_seq
        self._settling.clear()
        if restored is not None and restored.cursor is not None and restored.seq > done:
            # Rows written after the cursor were still settling: export them after a settle time,
            # except what the previous owner recorded as exported after it took the snapshot.
            follower.cursor = restored.cursor
            now = time.monotonic()
            for seq, written in restored.pending:
                if seq <= done:
                    follower.cursor = max(follower.cursor, written)
                else:
                    self._settling.append((seq, written, now))
        # Otherwise every row in the store was exported: the snapshot is at or below ``done``.
        self._store, self._pipeline, self._follower = store, pipeline, follower
        self._export_reader = StoreReader(self.path)
        return restored.seq if restored is not None else 0

    # -- the loop

    async def _step(self) -> None:
        assert self._reader is not None
        messages = await self._reader.fetch(self.worker.batch_messages, FETCH_WAIT_S)
        if self.lost:
            return
        if not messages and await self.stream.last_seq(self.partition) >= self._reader.next_seq:
            # JetStream removes a reader's consumer that was not asked for messages for a while (a
            # long batch on a busy machine): reopen it where this runner stopped.
            logger.info("partition %d: reopening its reader at %d", self.partition, self._reader.next_seq)
            await self._reader.close()
        if messages:
            await asyncio.to_thread(self._process, messages)
        await self._set_aside()
        if not await self._export(None, self._bound()):
            return
        done = self._exported_through()
        if done > self.progress.done:
            await self._save(replace(self.progress, done=done))
        if (
            time.monotonic() - self._snapped_at >= self.worker.snapshot_seconds
            and self._processed > self._stored_snap
        ):
            await self._snapshot()

    def _bound(self) -> int:
        """The newest store write sequence that has settled: noted at least the settle time ago."""
        store, follower = self._store, self._follower
        assert store is not None and follower is not None
        if self._releasing or self.worker.settle_seconds <= 0:
            return store.last_seq
        bound = follower.cursor
        settled_at = time.monotonic() - self.worker.settle_seconds
        for _seq, written, noted in self._settling:
            if noted > settled_at:
                break
            bound = max(bound, written)
        return bound

    def _exported_through(self) -> int:
        """Forget the messages whose writes are all exported; the last message before the first one
        whose are not (all processed ones when none is left)."""
        follower = self._follower
        assert follower is not None
        while self._settling and self._settling[0][1] <= follower.cursor:
            self._settling.popleft()
        if self._settling:
            return max(self._settling[0][0] - 1, self.progress.done)
        return self._processed

    def _process(self, messages: list[Message]) -> None:
        pipeline, store, follower = self._pipeline, self._store, self._follower
        assert pipeline is not None and store is not None and follower is not None
        for message in messages:
            replayed = message.seq <= self._replay_until
            cluster = message.headers.get(layout.HEADER_CLUSTER) or DEFAULT_CLUSTER
            received = message.headers.get(layout.HEADER_RECEIVED, "")
            try:
                # Dated checks are against when the webhook took the batch, not when it is read.
                now = int(received) if received.isdigit() else None
                events = decode_batch(message.data, now=now, max_skew_us=FUTURE_SKEW_US)
            except errors.InputError as exc:
                if not replayed:
                    self._put_aside(message.data, cluster, f"unreadable message: {exc}", f"{message.seq}")
                    self._settling.append((message.seq, store.last_seq, time.monotonic()))
                self._processed = message.seq
                continue
            result = pipeline.process_audit(events, cluster)
            self.counts["events"] += result.events
            if not replayed:
                for index, failure in enumerate(result.failures):
                    body = quarantined.audit_body(failure.item)
                    self._put_aside(body, cluster, failure.reason, f"{message.seq}.{index}")
                self._settling.append((message.seq, store.last_seq, time.monotonic()))
            else:
                # Exported by the previous owner: the follower skips what rebuilding wrote again.
                follower.cursor = store.last_seq
            self._processed = message.seq

    def _put_aside(self, data: bytes, cluster: str, reason: str, where: str) -> None:
        reason = " ".join(reason.split())[:MAX_REASON]
        headers = {
            layout.HEADER_CLUSTER: cluster,
            layout.HEADER_REASON: reason,
            layout.HEADER_SOURCE: "audit",
        }
        self._aside.append(_Aside(data, headers, f"kelemetry-q-{self.partition}-{where}"))

    async def _set_aside(self) -> None:
        while self._aside:
            item = self._aside[0]
            await self.stream.quarantine(self.partition, item.data, item.headers, msg_id=item.msg_id)
            self._aside.pop(0)
            self.counts["quarantined"] += 1

    async def _export(self, deadline: float | None, up_to: int) -> bool:
        """Export until the follower has sent everything written up to write sequence ``up_to``;
        False if the lease was lost, or the backend stayed down past ``deadline`` (monotonic)."""
        follower, reader = self._follower, self._export_reader
        assert follower is not None and reader is not None
        retry = follower.retry.start()
        while not self.lost:
            try:
                sent = await asyncio.to_thread(follower.export_once, reader, up_to)
            except errors.ExportError as exc:
                self.counts["export_failures"] += 1
                delay = retry.failed()
                if deadline is not None and time.monotonic() + delay > deadline:
                    logger.warning("partition %d: %s; giving up the export", self.partition, exc)
                    return False
                logger.warning("partition %d: %s; retrying in %.1fs", self.partition, exc, delay)
                await asyncio.sleep(delay)
                continue
            retry.succeeded()
            self.counts["spans_exported"] += sent
            if sent == 0:
                return True
        return False

    async def _save(self, progress: Progress) -> None:
        """Compare-and-set the progress entry; `Fenced` if another worker wrote it since."""
        if self.lost:
            raise Fenced("the lease was lost")
        key, raw = layout.progress_key(self.partition), progress.encode()
        try:
            revision = await self.stream.update(layout.PROGRESS_BUCKET, key, raw, self._revision)
        except errors.QueueError:
            # The write may have landed before the connection broke: look before calling it a loss.
            entry = await self.stream.get(layout.PROGRESS_BUCKET, key)
            if entry is None or (entry.value != raw and entry.revision != self._revision):
                raise Fenced("the progress entry changed under this worker") from None
            if entry.value != raw:
                raise
            revision = entry.revision
        if revision is None:
            raise Fenced("the progress entry changed under this worker")
        self._revision, self.progress = revision, progress

    async def _snapshot(self) -> None:
        store, pipeline, follower = self._store, self._pipeline, self._follower
        assert store is not None and pipeline is not None and follower is not None
        seq = self._processed
        pending = tuple((message, written) for message, written, _noted in self._settling)
        data = await asyncio.to_thread(snapshot.capture, store, pipeline, seq, follower.cursor, pending)
        await self._save(replace(self.progress, snap=seq))
        await self.stream.put_state(layout.state_name(self.partition), data)
        if self._stored_snap > 0:
            await self.stream.trim(self.partition, self._stored_snap + 1)
        self._stored_snap = seq
        self._snapped_at = time.monotonic()
        self.counts["snapshots"] += 1
        self.counts["snapshot_bytes"] += len(data)
        logger.info("partition %d: snapshot at %d (%d bytes)", self.partition, seq, len(data))

    async def _finish(self) -> None:
        """Release: record and snapshot what was processed, if the backend takes it in time."""
        try:
            await self._set_aside()
            if not await self._export(time.monotonic() + RELEASE_EXPORT_S, self._bound()):
                return
            done = self._exported_through()
            if done > self.progress.done:
                await self._save(replace(self.progress, done=done))
            if self._processed > self._stored_snap:
                await self._snapshot()
        except Fenced:
            raise
        except errors.QueueError as exc:
            logger.warning("partition %d released without a final snapshot: %s", self.partition, exc)

    # -- closing

    async def _close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.close()
        await asyncio.to_thread(self._close_files)
        snapshot.discard(self.path)

    def _close_files(self) -> None:
        if self._follower is not None:
            self._follower.exporter.shutdown()
        for handle in (self._export_reader, self._store):
            if handle is not None:
                handle.close()
        self._follower = self._export_reader = self._store = None
        self._pipeline = None

    # -- what /metrics shows

    @property
    def done(self) -> int:
        return self.progress.done

    @property
    def settling_spans(self) -> int:
        """Span writes in the working store not exported yet (waiting to settle, or for the backend)."""
        store, follower = self._store, self._follower
        if store is None or follower is None:
            return 0
        return max(store.last_seq - follower.cursor, 0)

    @property
    def export_lag_seconds(self) -> float:
        """How long the oldest message whose spans are not all exported has waited."""
        try:
            oldest = self._settling[0]
        except IndexError:  # none, or emptied by a takeover in its thread meanwhile
            return 0.0
        return time.monotonic() - oldest[2]
