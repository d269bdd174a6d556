"""The worker role of scaled mode: owns a fair share of the partitions and runs one runner per partition.

Every ``lease / 4`` seconds the worker writes its membership entry (``member.<id>``, expiring
after the lease time), refreshes each lease it holds by compare-and-set — a refresh that fails
means the lease expired or was taken, and that partition's runner stops at once — and balances:
its share (`kelemetry.queue.leases.share`) from the live members; below it, it creates leases of
free partitions and starts runners on them; above it, it asks its extra runners to give their
partitions up gracefully and deletes each lease once its runner has recorded and snapshotted. A
worker that dies stops refreshing: its entries expire after one lease time and the others take
its partitions over from their snapshots. SIGTERM gives every partition up gracefully, so a
rolling restart replays nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
from collections import Counter
from collections.abc import Iterable

from kelemetry import errors, metrics
from kelemetry.metrics import Metric
from kelemetry.queue import layout, leases, probes
from kelemetry.queue.jetstream import JetStream
from kelemetry.queue.partition import PartitionRunner
from kelemetry.settings import TraceSettings

logger = logging.getLogger(__name__)

SHUTDOWN_S = 45.0
"""How long SIGTERM waits for partitions to be given up (a backend or NATS that is down); the
leases of what is left expire on their own and another worker replays from the last record."""
_WORKER_ID = re.compile(r"[-_=A-Za-z0-9.]{1,200}")


class Worker:
    def __init__(
        self,
        stream: JetStream,
        queue: layout.QueueSettings,
        worker: layout.WorkerSettings,
        trace: TraceSettings,
    ) -> None:
        self.stream = stream
        self.queue = queue
        self.settings = worker
        self.trace = trace
        self.me = worker.worker_id
        self.counts: Counter[str] = Counter()
        self.runners: dict[int, PartitionRunner] = {}
        self.tasks: dict[int, asyncio.Task[str]] = {}
        self.leases: dict[int, int] = {}
        """Partition → the revision of its lease entry this worker wrote last."""
        self.share = 0
        self.members = 0
        self.joined = False
        self.lag: dict[int, int] = {}

    @property
    def tick_seconds(self) -> float:
        return max(self.queue.lease_seconds / 4, 0.1)

    @property
    def owned(self) -> list[int]:
        return sorted(self.runners)

    async def run(self, stop: asyncio.Event) -> None:
        """Keep leases and balance until ``stop``; then give every partition up."""
        while not stop.is_set():
            try:
                await self.tick()
            except errors.QueueError as exc:
                logger.warning("cannot keep leases this round: %s", exc)
            try:
                await asyncio.wait_for(stop.wait(), self.tick_seconds)
            except TimeoutError:
                pass
        await self.shutdown()

    async def tick(self) -> None:
        await self.stream.put(layout.LEASES_BUCKET, layout.member_key(self.me), self._member_value())
        self.joined = True
        await self._refresh()
        await self._reap()
        members = [
            key.removeprefix("member.") for key in await self.stream.keys(layout.LEASES_BUCKET, "member.")
        ]
        self.members = len(set(members) | {self.me})
        self.share = leases.share(members, self.me, self.queue.partitions)
        active = [p for p, runner in self.runners.items() if not runner.releasing]
        if len(active) > self.share:
            for partition in leases.extras(active, len(active) - self.share):
                logger.info(
                    "giving partition %d up (share %d of %d members)", partition, self.share, self.members
                )
                self.runners[partition].release()
        elif len(active) < self.share:
            await self._take(self.share - len(active))
        await self._measure()

    def _member_value(self) -> bytes:
        return json.dumps({"owned": self.owned}).encode()

    async def _refresh(self) -> None:
        for partition, revision in list(self.leases.items()):
            key = layout.lease_key(partition)
            renewed = await self.stream.update(layout.LEASES_BUCKET, key, self.me.encode(), revision)
            if renewed is not None:
                self.leases[partition] = renewed
                continue
            logger.warning("lease of partition %d lost; stopping it", partition)
            self.counts["leases_lost"] += 1
            del self.leases[partition]
            runner = self.runners.get(partition)
            if runner is not None:
                runner.lost = True

    async def _reap(self) -> None:
        for partition, task in list(self.tasks.items()):
            if not task.done():
                continue
            outcome = task.result()
            del self.tasks[partition], self.runners[partition]
            self.lag.pop(partition, None)
            revision = self.leases.pop(partition, None)
            if revision is not None:
                await self.stream.delete(layout.LEASES_BUCKET, layout.lease_key(partition), revision)
            logger.info("partition %d given up (%s)", partition, outcome)

    async def _take(self, wanted: int) -> None:
        taken = {
            int(key.removeprefix("lease.")) for key in await self.stream.keys(layout.LEASES_BUCKET, "lease.")
        }
        for partition in leases.candidates(self.me, self.queue.partitions, taken | set(self.runners)):
            if wanted <= 0:
                return
            revision = await self.stream.create(
                layout.LEASES_BUCKET, layout.lease_key(partition), self.me.encode()
            )
            if revision is None:
                continue
            self.leases[partition] = revision
            runner = PartitionRunner(self.stream, partition, self.settings, self.trace, self.counts)
            self.runners[partition] = runner
            self.tasks[partition] = asyncio.create_task(runner.run(), name=f"partition-{partition}")
            wanted -= 1
            logger.info("took partition %d", partition)

    async def _measure(self) -> None:
        for partition, runner in list(self.runners.items()):
            if runner.ready:
                self.lag[partition] = max(await self.stream.last_seq(partition) - runner.done, 0)

    async def shutdown(self) -> None:
        """Give every partition up gracefully (leases kept alive meanwhile), then leave."""
        for runner in self.runners.values():
            runner.release()
        deadline = asyncio.get_running_loop().time() + SHUTDOWN_S
        while self.tasks:
            if asyncio.get_running_loop().time() > deadline:
                # NATS is away: what was not recorded is processed again by the next owner.
                logger.warning("giving up %d partitions without a final record", len(self.tasks))
                for task in self.tasks.values():
                    task.cancel()
                await asyncio.wait(list(self.tasks.values()), timeout=5)
                return
            try:
                await self._refresh()
                await self._reap()
            except errors.QueueError as exc:
                logger.warning("while giving partitions up: %s", exc)
            if self.tasks:
                await asyncio.wait(list(self.tasks.values()), timeout=self.tick_seconds)
        try:
            await self.stream.delete(layout.LEASES_BUCKET, layout.member_key(self.me))
        except errors.QueueError as exc:
            logger.warning("could not leave the membership list: %s", exc)

    # -- probes and metrics

    def healthz(self) -> probes.Answer:
        return probes.Answer(200, b"ok\n")

    def readyz(self) -> probes.Answer:
        if not self.stream.connected:
            return probes.Answer(503, b"not connected to NATS\n")
        if not self.joined:
            return probes.Answer(503, b"not a member yet\n")
        ready = sum(1 for runner in self.runners.values() if runner.ready)
        if ready < min(self.share, 1):
            return probes.Answer(503, f"owns no partition yet (share {self.share})\n".encode())
        return probes.Answer(200, f"ok: {ready} partitions of {self.queue.partitions}\n".encode())

    def metrics_families(self) -> Iterable[Metric]:
        counted = (
            (
                "events",
                "kelemetry_worker_events_total",
                "Audit events processed (replays after a takeover included).",
            ),
            ("spans_exported", "kelemetry_worker_spans_exported_total", "Spans sent to the OTLP endpoint."),
            ("snapshots", "kelemetry_worker_snapshots_total", "Partition snapshots saved to JetStream."),
            ("snapshot_bytes", "kelemetry_worker_snapshot_bytes_total", "Bytes of the snapshots saved."),
            ("takeovers", "kelemetry_worker_takeovers_total", "Partitions this worker started owning."),
            (
                "quarantined",
                "kelemetry_worker_quarantined_total",
                "Inputs set aside in the quarantine stream.",
            ),
            ("export_failures", "kelemetry_worker_export_failures_total", "Failed OTLP export attempts."),
            (
                "leases_lost",
                "kelemetry_worker_leases_lost_total",
                "Leases found expired or taken at refresh.",
            ),
            (
                "fenced",
                "kelemetry_worker_fenced_total",
                "Partitions stopped because another worker took them.",
            ),
        )
        for key, name, text in counted:
            yield metrics.counter_family(name, text, (), float(self.counts[key]))
        yield metrics.gauge(
            "kelemetry_worker_partitions_owned", "Partitions this worker owns.", len(self.runners)
        )
        yield metrics.gauge(
            "kelemetry_worker_partition_share", "Partitions this worker should own.", self.share
        )
        yield metrics.gauge("kelemetry_worker_members", "Live workers seen.", self.members)
        yield metrics.gauge(
            "kelemetry_worker_settling_spans",
            "Span writes of the owned partitions not exported yet: waiting for --settle, or for the backend.",
            sum(runner.settling_spans for runner in self.runners.values()),
        )
        yield metrics.gauge(
            "kelemetry_worker_export_lag_seconds",
            "Age of the oldest processed message whose spans are not all exported (--settle when busy).",
            max((runner.export_lag_seconds for runner in self.runners.values()), default=0.0),
        )
        yield metrics.gauge(
            "kelemetry_worker_partition_lag_messages",
            "Messages of an owned partition not yet exported (last stream sequence - done; includes the "
            "settle time).",
            {(str(p),): float(lag) for p, lag in sorted(self.lag.items())},
            ("partition",),
        )


def worker_id_problem(worker_id: str) -> str | None:
    """Why ``worker_id`` cannot name a worker in the lease bucket's keys, or None."""
    if _WORKER_ID.fullmatch(worker_id):
        return None
    return f"--worker-id {worker_id[:100]!r}: use letters, digits and - _ = . (at most 200)"


def serve(
    queue: layout.QueueSettings, worker: layout.WorkerSettings, trace: TraceSettings, host: str, port: int
) -> int:
    problem = worker_id_problem(worker.worker_id)
    if problem:
        raise errors.InputError(problem)
    return asyncio.run(_serve(queue, worker, trace, host, port))


async def _serve(
    queue: layout.QueueSettings, settings: layout.WorkerSettings, trace: TraceSettings, host: str, port: int
) -> int:
    stream = await JetStream.connect(queue, name=f"kelemetry-worker {settings.worker_id}")
    try:
        worker = Worker(stream, queue, settings, trace)
        registry = metrics.Registry()
        registry.add_source(worker.metrics_families)
        routes: dict[str, probes.Route] = {
            "/healthz": worker.healthz,
            "/readyz": worker.readyz,
            "/metrics": lambda: probes.Answer(200, registry.render(), metrics.CONTENT_TYPE),
        }
        try:
            server = await probes.start(host, port, routes)
        except OSError as exc:
            raise errors.KelemetryError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        logger.info(
            "worker %s serving on %s:%d, %d partitions, exporting to %s",
            settings.worker_id,
            host,
            port,
            queue.partitions,
            settings.otlp_endpoint,
        )
        try:
            await worker.run(stop)
        finally:
            server.close()
    finally:
        try:
            await asyncio.wait_for(stream.close(), 10)
        except TimeoutError:
            logger.warning("NATS did not answer while closing the connection")
    return 0
