"""Benchmark of one scaled-mode webhook replica: ack latency and throughput. Prints, asserts nothing
about time (it checks only that every posted event reached the stream).

Starts a real nats-server (tests/natsserver.py) and `kelemetry serve --queue ... --role webhook` as
subprocesses, and posts 400-event batches made from the recorded Deployment lifecycle
(samples/deployment/audit.log), copied with fresh audit IDs and spread over 64 namespaces, so
every batch is new to JetStream and touches many partitions. Three runs:

  paced     one sender at a fixed rate (default 4,000 events/s, DESIGN §9's webhook target):
            ack latency p50/p99 of each batch (request sent → 200 read)
  closed    one sender posting back to back: events/s of one replica with one apiserver
  parallel  four senders back to back: events/s of one replica with several apiservers

and CPU-seconds per 1,000 events of the replica and of nats-server (/proc/<pid>/stat). The senders
run in this process on the same machine, so they take CPU from what they measure.

Run: `python tests/bench/bench_queue_webhook.py [--batches 200] [--rate 4000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from kelemetry.queue import layout
from kelemetry.queue.jetstream import JetStream
from tests.natsserver import NatsServer

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "deployment" / "audit.log"
BATCH = 400
PARTITIONS = 16
NAMESPACES = 64
HEADERS = {"Content-Type": "application/json"}
TICKS = os.sysconf("SC_CLK_TCK")


def make_batches(count: int, start: int) -> list[bytes]:
    sample = [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]
    bodies = []
    serial = start * BATCH
    for _ in range(count):
        items: list[dict[str, Any]] = []
        for _ in range(BATCH):
            event = json.loads(json.dumps(sample[serial % len(sample)]))
            copy = serial // len(sample)
            event["auditID"] = f"{event['auditID']}-{copy}"
            if event.get("objectRef", {}).get("namespace"):
                event["objectRef"]["namespace"] = f"bench-{copy % NAMESPACES}"
            items.append(event)
            serial += 1
        bodies.append(
            json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}).encode()
        )
    return bodies


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def post_all(url: str, bodies: list[bytes], latencies: list[float], interval: float = 0.0) -> None:
    with httpx.Client(timeout=30) as client:
        next_at = time.perf_counter()
        for body in bodies:
            if interval:
                pause = next_at - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                next_at += interval
            started = time.perf_counter()
            response = client.post(url, content=body, headers=HEADERS)
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise SystemExit(f"batch refused: {response.status_code} {response.text[:200]}")


def run(
    name: str, url: str, batches: list[list[bytes]], pids: dict[str, int], interval: float = 0.0
) -> dict[str, float]:
    latencies: list[float] = []
    before = {role: cpu_seconds(pid) for role, pid in pids.items()}
    started = time.perf_counter()
    senders = [threading.Thread(target=post_all, args=(url, part, latencies, interval)) for part in batches]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    elapsed = time.perf_counter() - started
    events = sum(len(part) for part in batches) * BATCH
    result = {
        "events": events,
        "events_per_s": events / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
    }
    for role, pid in pids.items():
        result[f"cpu_{role}_per_1k"] = (cpu_seconds(pid) - before[role]) / events * 1000
    print(
        f"{name:9} {events:7d} events  {result['events_per_s']:8.0f} events/s  "
        f"ack p50 {result['p50_ms']:6.1f} ms  p99 {result['p99_ms']:6.1f} ms  "
        + "  ".join(f"CPU {role} {result[f'cpu_{role}_per_1k']:.3f} s/1k" for role in pids),
        flush=True,
    )
    return result


def stream_messages(url: str) -> int:
    async def count() -> int:
        stream = await JetStream.connect(layout.QueueSettings(url=url, partitions=PARTITIONS), "bench")
        try:
            total = 0
            for partition in range(PARTITIONS):
                reader = await stream.reader(partition, 1)
                try:
                    while batch := await reader.fetch(1024, timeout=0.5):
                        total += len(batch)
                finally:
                    await reader.close()
            return total
        finally:
            await stream.close()

    return asyncio.run(count())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=200, help="batches per run (400 events each)")
    parser.add_argument("--rate", type=float, default=4000.0, help="events/s of the paced run")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="kelemetry-bench-"))
    server = NatsServer(folder / "nats").start()
    port = free_port()
    replica = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("kelemetry")),
            "serve",
            "--queue",
            server.url,
            "--role",
            "webhook",
            "--listen",
            f"127.0.0.1:{port}",
            "--partitions",
            str(PARTITIONS),
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the webhook replica did not become ready")
            time.sleep(0.1)
        print(
            f"webhook replica on one nats-server, {BATCH}-event batches, {PARTITIONS} partitions", flush=True
        )
        n = args.batches
        warm = make_batches(10, 0)
        paced = make_batches(n, 10)
        closed = make_batches(n, 10 + n)
        parallel = make_batches(n, 10 + 2 * n)
        pids = {"webhook": replica.pid, "nats": server.process.pid if server.process else 0}
        url = f"{base}/audit/bench"
        post_all(url, warm, [])
        run("paced", url, [paced], pids, interval=BATCH / args.rate)
        run("closed", url, [closed], pids)
        run("parallel", url, [parallel[i::4] for i in range(4)], pids)
        posted = (10 + 3 * n) * BATCH
        held = stream_messages(server.url)
        print(f"stream holds {held} messages for {posted} events posted", flush=True)
        metrics = httpx.get(f"{base}/metrics").text
        events_line = next(
            line
            for line in metrics.splitlines()
            if line.startswith("kelemetry_queue_published_events_total ")
        )
        published = float(events_line.split()[1])
        if published != posted:
            raise SystemExit(f"the replica published {published} events, {posted} were posted")
    finally:
        replica.terminate()
        try:
            replica.wait(20)
        except subprocess.TimeoutExpired:
            replica.kill()
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
