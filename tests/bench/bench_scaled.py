"""The scaling curve of scaled mode: prints figures, asserts nothing.

  servers  a real nats-server with JetStream (tests/natsserver.py), a Jaeger v2 with in-memory
           storage (the e2e suite's), webhook replicas and worker replicas as `kelemetry serve
           --queue ... --role ...` processes, all on loopback; fresh ones for every worker count.
  input    samples/deployment/audit.log (a recorded Deployment lifecycle) cloned over many
           namespaces and objects: every copy has fresh names, uids, audit IDs and
           resourceVersions, so nothing is deduplicated and every copy is diffed and linked.
  load     400-event batches (kube-apiserver's default batch) posted from a few concurrent senders,
           spread over the webhook replicas, as fast as they are acknowledged (a 429 waits and
           sends again, as the apiserver does).
  measure  end-to-end events/s: from the first post until every partition's exported progress
           (`done` in the KELEMETRY_PROGRESS bucket) has reached the partition's last stream
           sequence; CPU-seconds per 1,000 events of each role (webhooks, workers, nats-server,
           jaeger) from /proc/<pid>/stat over the same interval; and which role ran out of room
           first (a process near one core is GIL-bound; near the machine's cores, the machine).

Run: `make bench`, or `.venv/bin/python tests/bench/bench_scaled.py --events 60000 --workers 1,2,3`.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import itertools
import logging
import os
import queue
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import orjson

from kelemetry.queue import layout
from kelemetry.queue.jetstream import JetStream
from tests.e2e.conftest import Jaeger
from tests.e2e.servers import CACHE, JAEGER_VERSION, Binaries, free_port
from tests.natsserver import NatsServer

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "deployment" / "audit.log"
BATCH = 400
CLUSTER = "bench"
TICKS = os.sysconf("SC_CLK_TCK")


# -- the input


def _rename(value: str, suffix: str) -> str:
    return f"{value}-{suffix}" if value else value


def _clone_meta(body: Any, suffix: str, namespace: str | None, rv_offset: int) -> None:
    if not isinstance(body, dict):
        return
    meta = body.get("metadata")
    if not isinstance(meta, dict):
        return
    for name in ("name", "generateName", "uid"):
        if meta.get(name):
            meta[name] = _rename(str(meta[name]), suffix)
    if meta.get("namespace") and namespace is not None:
        meta["namespace"] = namespace
    if str(meta.get("resourceVersion", "")).isdigit():
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + rv_offset)
    for ref in meta.get("ownerReferences") or ():
        if isinstance(ref, dict):
            for name in ("name", "uid"):
                if ref.get(name):
                    ref[name] = _rename(str(ref[name]), suffix)
    # A list's items (a PodList answer) are objects too.
    for item in body.get("items") or ():
        _clone_meta(item, suffix, namespace, rv_offset)


def clone(event: dict[str, Any], copy_no: int, namespaces: int) -> dict[str, Any]:
    """The event as it would be in copy ``copy_no`` of the scenario: other objects in namespace
    ``<ns>-<copy_no % namespaces>``, another request, later resourceVersions."""
    event = copy.deepcopy(event)
    suffix = f"c{copy_no}"
    rv_offset = copy_no * 1_000_000
    event["auditID"] = f"{event.get('auditID', '')}-{suffix}"
    ref = event.get("objectRef")
    namespace = None
    if isinstance(ref, dict):
        old_ns, old_name = ref.get("namespace"), ref.get("name")
        if old_ns:
            namespace = f"{old_ns}-{copy_no % namespaces}"
            ref["namespace"] = namespace
        for name in ("name", "uid"):
            if ref.get(name):
                ref[name] = _rename(str(ref[name]), suffix)
        if ref.get("resource") == "namespaces" and old_name:
            # The Namespace object is the namespace its copies' objects are in.
            ref["name"] = f"{old_name}-{copy_no % namespaces}"
        if str(ref.get("resourceVersion", "")).isdigit():
            ref["resourceVersion"] = str(int(ref["resourceVersion"]) + rv_offset)
        uri = str(event.get("requestURI", ""))
        if old_ns:
            uri = uri.replace(f"/namespaces/{old_ns}/", f"/namespaces/{namespace}/", 1)
        if old_name:
            uri = uri.replace(f"/{old_name}", f"/{ref['name']}", 1)
        event["requestURI"] = uri
    _clone_meta(event.get("requestObject"), suffix, namespace, rv_offset)
    _clone_meta(event.get("responseObject"), suffix, namespace, rv_offset)
    return event


def batches(events: int, namespaces: int) -> list[bytes]:
    """``events`` audit events (whole copies of the sample, in order) as 400-event webhook bodies."""
    sample = [orjson.loads(line) for line in SAMPLE.read_bytes().splitlines() if line.strip()]
    stream = (clone(event, n, namespaces) for n in itertools.count() for event in sample)
    bodies = []
    taken = list(itertools.islice(stream, events))
    for start in range(0, len(taken), BATCH):
        items = taken[start : start + BATCH]
        bodies.append(orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}))
    return bodies


# -- processes and their CPU time


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its reaped children), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    # After the command: state is field 3; utime, stime, cutime, cstime are fields 14-17.
    return sum(int(v) for v in fields[11:15]) / TICKS


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU-seconds of the whole machine since boot, every process included."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return (total - idle) / TICKS, total / TICKS


@dataclass
class Role:
    name: str
    argv: list[str]
    log: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Role:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(
            f"{self.name} did not answer /healthz in {timeout:.0f}s: {self.log.read_text()[-3000:]}"
        )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


@dataclass
class Run:
    """One measured configuration and its figures."""

    webhooks: int
    workers: int
    events: int = 0
    seconds: float = 0.0
    post_seconds: float = 0.0
    retried: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    machine: float = 0.0
    """Cores of the machine busy over the run, with every other process on it."""
    busiest: dict[str, float] = field(default_factory=dict)
    """Per role: the CPU-seconds of its busiest process over the run, divided by the run's wall time."""

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


# -- the scaled mode's progress, read from JetStream


def progress_done(value: bytes) -> int:
    """The last exported stream sequence of a partition's progress entry."""
    return int(orjson.loads(value).get("done", 0))


class Progress:
    """One connection to JetStream for the whole run, asked how far the partitions are exported."""

    def __init__(self, url: str, partitions: int) -> None:
        self.partitions = partitions
        self._loop = asyncio.new_event_loop()
        self._stream = self._loop.run_until_complete(
            JetStream.connect(layout.QueueSettings(url=url, partitions=partitions), "kelemetry-bench")
        )

    async def _behind(self) -> int:
        behind = 0
        for partition in range(self.partitions):
            last = await self._stream.last_seq(partition)
            if not last:
                continue
            entry = await self._stream.get(layout.PROGRESS_BUCKET, layout.progress_key(partition))
            if entry is None or progress_done(entry.value) < last:
                behind += 1
        return behind

    async def _owners(self) -> list[str]:
        owners = []
        for partition in range(self.partitions):
            entry = await self._stream.get(layout.LEASES_BUCKET, layout.lease_key(partition))
            owners.append(entry.value.decode() if entry else "")
        return owners

    def wait_balanced(self, workers: int, timeout: float = 120.0) -> None:
        """Until every partition is leased and the workers own their fair shares: a measurement
        started while partitions still move would time the hand-overs, not the work."""
        deadline = time.monotonic() + timeout
        while True:
            owners = self._loop.run_until_complete(self._owners())
            counts = Counter(owners)
            if (
                "" not in counts
                and len(counts) == workers
                and max(counts.values()) - min(counts.values()) <= 1
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"partitions not balanced over {workers} workers: {dict(counts)}")
            time.sleep(0.5)

    def behind(self) -> int:
        """How many partitions still have messages past their exported progress."""
        return self._loop.run_until_complete(self._behind())

    def wait_drained(self, roles: Sequence[Role], timeout: float) -> float:
        """Poll until every partition is exported up to its last message; when that was seen."""
        deadline = time.monotonic() + timeout
        while True:
            behind = self.behind()
            if behind == 0:
                return time.perf_counter()
            for role in roles:
                if role.process is not None and role.process.poll() is not None:
                    raise RuntimeError(f"{role.name} exited: {role.log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{behind} partitions not exported after {timeout:.0f}s")
            time.sleep(0.1)

    def close(self) -> None:
        self._loop.run_until_complete(self._stream.close())
        self._loop.close()


# -- the load


def post_all(bodies: list[bytes], webhooks: Sequence[Role], senders: int) -> int:
    """Post every body once, acknowledged; how many answers were 429/503 and sent again."""
    work: queue.Queue[bytes] = queue.Queue()
    for body in bodies:
        work.put(body)
    retried = [0] * senders
    failures: list[str] = []

    def send(n: int) -> None:
        url = f"http://127.0.0.1:{webhooks[n % len(webhooks)].port}/audit/{CLUSTER}"
        with httpx.Client(timeout=60, headers={"Content-Type": "application/json"}) as client:
            while not failures:
                try:
                    body = work.get_nowait()
                except queue.Empty:
                    return
                while True:
                    response = client.post(url, content=body)
                    if response.status_code == 200:
                        break
                    if response.status_code in (429, 503):
                        retried[n] += 1
                        time.sleep(0.2)
                        continue
                    failures.append(f"{response.status_code}: {response.text[:300]}")
                    return

    threads = [threading.Thread(target=send, args=(n,)) for n in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"the webhook refused a batch: {failures[0]}")
    return sum(retried)


def measure(
    bodies: list[bytes],
    events: int,
    webhooks: int,
    workers: int,
    partitions: int,
    senders: int,
    workdir: Path,
) -> Run:
    exe = str(Path(sys.executable).with_name("kelemetry"))
    nats = NatsServer(workdir / "nats").start()
    binaries = cast(Binaries, SimpleNamespace(jaeger=CACHE / "bin" / f"jaeger-{JAEGER_VERSION}" / "jaeger"))
    jaeger = Jaeger(binaries, workdir)
    roles: list[Role] = []
    try:
        jaeger.start()
        common = ["--queue", nats.url, "--partitions", str(partitions)]
        for n in range(webhooks):
            port = free_port()
            roles.append(
                Role(
                    f"webhook-{n}",
                    [exe, "serve", *common, "--role", "webhook", "--listen", f"127.0.0.1:{port}"],
                    workdir / f"webhook-{n}.log",
                    port,
                ).start()
            )
        for n in range(workers):
            port = free_port()
            state = workdir / f"worker-{n}"
            roles.append(
                Role(
                    f"worker-{n}",
                    [
                        exe,
                        "serve",
                        *common,
                        "--role",
                        "worker",
                        "--listen",
                        f"127.0.0.1:{port}",
                        "--worker-id",
                        f"bench-{n}",
                        "--state-dir",
                        str(state),
                        "--otlp-endpoint",
                        f"grpc://127.0.0.1:{jaeger.otlp_grpc}",
                        # The settle time delays the export by a fixed time and costs no work: the
                        # rate is measured without it.
                        "--settle",
                        "0s",
                    ],
                    workdir / f"worker-{n}.log",
                    port,
                ).start()
            )
        for role in roles:
            role.wait_healthy()
        hooks = [r for r in roles if r.name.startswith("webhook")]
        # Warm-up: imports, connections and the workers' first leases before the clock starts.
        post_all(bodies[:1], hooks, 1)
        progress = Progress(nats.url, partitions)
        progress.wait_balanced(workers)
        progress.wait_drained(roles, timeout=120)
        pids: dict[str, list[int]] = {"webhook": [], "worker": [], "nats-server": [], "jaeger": []}
        for role in roles:
            pids[role.name.split("-")[0]].append(role.pid)
        assert nats.process is not None and jaeger.server.process is not None
        pids["nats-server"].append(nats.process.pid)
        pids["jaeger"].append(jaeger.server.process.pid)
        # The senders and the progress reader (this process) share the machine's cores too.
        pids["bench"] = [os.getpid()]
        before = {pid: cpu_seconds(pid) for group in pids.values() for pid in group}
        busy_before, total_before = machine_busy()
        started = time.perf_counter()
        retried = post_all(bodies[1:], hooks, senders)
        posted = time.perf_counter()
        drained = progress.wait_drained(roles, timeout=max(300.0, events / 200))
        progress.close()
        after = {pid: cpu_seconds(pid) for pid in before}
        busy_after, total_after = machine_busy()
        wall = drained - started
        run = Run(webhooks, workers, events - min(events, BATCH), wall, posted - started, retried)
        cores = os.cpu_count() or 1
        run.machine = (busy_after - busy_before) / (total_after - total_before) * cores
        for name, group in pids.items():
            run.cpu[name] = sum(after[p] - before[p] for p in group)
            if name != "bench":
                run.busiest[name] = max(after[p] - before[p] for p in group) / wall if wall else 0.0
        return run
    finally:
        for role in roles:
            role.stop()
        jaeger.stop()
        nats.stop()


def measure_embedded(bodies: list[bytes], workdir: Path) -> tuple[float, float]:
    """The ceiling being scaled past: one `kelemetry replay` process tracing the same events into
    its embedded store and exporting them to Jaeger; (events/s, CPU-seconds per 1,000 events)."""
    exe = str(Path(sys.executable).with_name("kelemetry"))
    source = workdir / "audit.jsonl"
    events = 0
    with source.open("wb") as out:
        for body in bodies:
            for item in orjson.loads(body)["items"]:
                out.write(orjson.dumps(item) + b"\n")
                events += 1
    binaries = cast(Binaries, SimpleNamespace(jaeger=CACHE / "bin" / f"jaeger-{JAEGER_VERSION}" / "jaeger"))
    jaeger = Jaeger(binaries, workdir)
    try:
        jaeger.start()
        argv = [exe, "replay", str(source), "--quiet", "--cluster", CLUSTER, "--store", str(workdir / "k.db")]
        argv += ["--otlp-endpoint", f"grpc://127.0.0.1:{jaeger.otlp_grpc}"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(
            argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        jaeger.stop()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return events / wall, cpu / events * 1000


# -- the report


def table(runs: Iterable[Run], roles: Sequence[str]) -> list[str]:
    head = ["webhooks", "workers", "events/s", "posted in s", "drained in s", "429s"]
    head += [f"{r} CPU-s/1k" for r in roles] + ["busiest process (cores)"]
    rows = [head, ["---"] * len(head)]
    for run in runs:
        busiest = max(run.busiest, key=lambda k: run.busiest[k])
        row = [
            str(run.webhooks),
            str(run.workers),
            f"{run.rate:,.0f}",
            f"{run.post_seconds:.1f}",
            f"{run.seconds:.1f}",
            str(run.retried),
        ]
        row += [f"{run.cpu.get(r, 0.0) / run.events * 1000:.3f}" for r in roles]
        row.append(f"{busiest} {run.busiest[busiest]:.2f}")
        rows.append(row)
    return ["| " + " | ".join(row) + " |" for row in rows]


def saturation(run: Run, cores: int) -> str:
    """What ran out of room first in one run, in words."""
    total = sum(run.cpu.values()) / run.seconds if run.seconds else 0.0
    busiest = max(run.busiest, key=lambda k: run.busiest[k])
    parts = [f"all roles together used {total:.2f} of {cores} cores"]
    if run.busiest[busiest] >= 0.8:
        parts.append(
            f"one {busiest} process was at {run.busiest[busiest]:.2f} cores (GIL-bound: add replicas)"
        )
    parts.append(f"the machine had {run.machine:.2f} of {cores} cores busy")
    if run.machine >= 0.9 * cores:
        parts.append("so its cores were the limit")
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=40_000, help="audit events per run (default 40,000)")
    parser.add_argument("--workers", default="1,2,3", help="worker counts to measure (default 1,2,3)")
    parser.add_argument("--webhooks", type=int, default=2, help="webhook replicas (default 2)")
    parser.add_argument("--partitions", type=int, default=layout.DEFAULT_PARTITIONS)
    parser.add_argument("--senders", type=int, default=4, help="concurrent senders (default 4)")
    parser.add_argument("--namespaces", type=int, default=64, help="namespaces the copies spread over")
    options = parser.parse_args()
    # The roles' reconnect chatter of the bench's own progress reader is not a figure.
    logging.getLogger("kelemetry.queue").setLevel(logging.ERROR)
    counts = [int(n) for n in options.workers.split(",") if n.strip()]
    bodies = batches(options.events, options.namespaces)
    events = options.events
    cores = os.cpu_count() or 1
    print(
        f"scaled mode: {events:,} audit events ({len(bodies)} batches of {BATCH}, "
        f"{sum(map(len, bodies)) / 1e6:.0f} MB) over {options.namespaces} namespaces, "
        f"{options.partitions} partitions, {options.webhooks} webhook(s), {options.senders} senders, "
        f"{cores} cores, load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="kelemetry-bench-scaled-") as scratch:
        rate, cpu = measure_embedded(bodies, Path(scratch))
    print(
        f"  embedded (one `kelemetry replay` process, store and export): {rate:,.0f} events/s, "
        f"{cpu:.3f} CPU-s per 1,000 events ({1000 / cpu:,.0f} events per CPU-second)",
        flush=True,
    )
    runs = []
    for workers in counts:
        with tempfile.TemporaryDirectory(prefix="kelemetry-bench-scaled-") as scratch:
            run = measure(
                bodies, events, options.webhooks, workers, options.partitions, options.senders, Path(scratch)
            )
        runs.append(run)
        print(f"  {workers} worker(s): {run.rate:,.0f} events/s; {saturation(run, cores)}", flush=True)
    print()
    for line in table(runs, ["webhook", "worker", "nats-server", "jaeger", "bench"]):
        print(line)


if __name__ == "__main__":
    main()
