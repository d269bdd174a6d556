"""Benchmark of one scaled-mode worker: events/s and CPU-seconds per 1,000 audit events.

The recorded Deployment lifecycle (samples/deployment/audit.log, 192 events) is repeated in
namespaces ns0, ns1, … until there are N events, published to a real nats-server as the webhook
publishes it (per partition, EventList bodies of --chunk events), then one `kelemetry serve
--queue … --role worker` process traces all of it and exports to the real Jaeger v2. The clock runs
from the worker's start to the moment its /metrics show every event processed and no lag; the CPU
is the worker process's own (user + system, from /proc), so Jaeger and nats-server on the same
machine are not counted.

Run: `python tests/bench/bench_worker.py [--copies 200] [--partitions 16]`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.kelemetry.queue.workerkit import Jaeger, WorkerProcess, publish, sample_events, wait_until
from tests.natsserver import NatsServer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=200, help="copies of the 192-event scenario")
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=100, help="events per published message")
    args = parser.parse_args()
    events = sample_events(copies=args.copies)
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as folder:
        base = Path(folder)
        nats = NatsServer(base / "nats").start()
        jaeger = Jaeger(base / "jaeger").start()
        worker: WorkerProcess | None = None
        try:
            messages = publish(nats.url, events, args.partitions, chunk=args.chunk)
            # The settle time delays the export by a fixed time and costs no work: measured without it.
            worker = WorkerProcess(
                base / "w", nats.url, jaeger.endpoint, "bench", partitions=args.partitions, settle="0s"
            )
            started = time.monotonic()
            worker.start()

            def finished() -> bool:
                assert worker is not None
                values = worker.metrics()
                lag = sum(v for k, v in values.items() if k.startswith("kelemetry_worker_partition_lag"))
                return values.get("kelemetry_worker_events_total", 0) >= len(events) and lag == 0

            wait_until("every event processed and exported", finished, timeout=3600, every=0.25)
            elapsed = time.monotonic() - started
            cpu = worker.cpu_seconds()
            spans = worker.metrics()["kelemetry_worker_spans_exported_total"]
        finally:
            if worker is not None:
                worker.ensure_stopped()
            jaeger.stop()
            nats.stop()
    print(
        f"{len(events)} events in {messages} messages over {args.partitions} partitions, "
        f"{int(spans)} spans exported"
    )
    print(f"one worker: {len(events) / elapsed:,.0f} events/s wall ({elapsed:.1f}s, start-up included)")
    print(f"CPU: {cpu:.1f}s = {cpu / len(events) * 1000:.3f} CPU-seconds per 1,000 events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
