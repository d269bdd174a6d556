"""Benchmark of the hot paths on real audit data: prints figures, asserts nothing.

  input    the realistic stream of ../shared/bench/gen_stream.py (our recorded Deployment lifecycle,
           with bodies, ×3 plus the falco and audit2rbac logs, fresh ids and names in every copy so
           bodies are diffed and nothing dedups), 100k events; without ../shared, the recorded
           samples repeated the same way.
  lean     the practical limit for Python: an orjson decode-and-filter loop over the same file
           (decode every line, keep mutating verbs at ResponseComplete), nothing else.
  replay   decode → filter → link → diff → aggregate → store, through the same code as
           `kelemetry replay` (one pipeline builder), diffs on, request metrics counted as `serve`
           counts them. Reports audit events per CPU-second and
           the ratio to the lean loop.
  webhook  a real `kelemetry serve` process; 400-event batches POSTed at 4,000 events/s; p50/p99
           time until the 200 (the batch is durable by then).
  graph    memory per object held in the owner graph (tracemalloc), for 100k objects.

Run: `make bench` (or `python tests/bench/bench_replay.py --events 200000`).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import orjson

from kelemetry import metrics
from kelemetry import pipeline as pipelines
from kelemetry.cli import tune_gc
from kelemetry.diff import compute
from kelemetry.diff.history import BodyHistory
from kelemetry.diff.redact import Redactor
from kelemetry.kube.kinds import KindResolver
from kelemetry.linker.graph import OwnerGraph
from kelemetry.model.objects import Incarnation, ObjectKey, ObjectRef
from kelemetry.receivers.auditfiles import FileStats, read_audit_file
from kelemetry.receivers.requests import RequestMetrics
from kelemetry.settings import DEFAULT_EXCLUDED_RESOURCES, DEFAULT_EXCLUDED_USER_AGENTS, TraceSettings
from kelemetry.store.sqlite import SpanStore

ROOT = Path(__file__).resolve().parents[2]
REALDATA = ROOT.parent / "shared" / "realdata"
SOURCES = ("falco_k8s_audit_trace_events.jsonl", "audit2rbac_demo_v1beta1.jsonl")


def load_sources() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    samples = sorted((ROOT / "samples").glob("*/audit.log"))
    for path in [REALDATA / name for name in SOURCES] + samples:
        if path.exists():
            events.extend(orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip())
    if not events:
        sys.exit("bench: no audit data found (../shared/realdata or samples/*/audit.log)")
    return events


def _suffix_meta(body: Any, i: int) -> None:
    if not isinstance(body, dict):
        return
    meta = body.get("metadata")
    if not isinstance(meta, dict):
        return
    for field in ("name", "generateName", "uid"):
        if meta.get(field):
            meta[field] = f"{meta[field]}-c{i}"
    for ref in meta.get("ownerReferences") or ():
        ref["name"] = f"{ref['name']}-c{i}"
        if ref.get("uid"):
            ref["uid"] = f"{ref['uid']}-c{i}"


def restamp(event: dict[str, Any], i: int) -> dict[str, Any]:
    """A copy that is a different request on different objects, with the same shape and links."""
    event = copy.deepcopy(event)
    event["auditID"] = f"{event.get('auditID', '')}-c{i}"
    ref = event.get("objectRef")
    if isinstance(ref, dict):
        for field in ("name", "uid"):
            if ref.get(field):
                ref[field] = f"{ref[field]}-c{i}"
    _suffix_meta(event.get("requestObject"), i)
    _suffix_meta(event.get("responseObject"), i)
    return event


def write_input(events: list[dict[str, Any]], target: int, path: Path) -> int:
    copies = -(-target // len(events))
    written = 0
    with path.open("wb") as out:
        for i in range(copies):
            for event in events:
                out.write(orjson.dumps(restamp(event, i)) + b"\n")
                written += 1
    return written


def realistic_stream(path: Path, events: int) -> bool:
    """Write gen_stream.py's stream to ``path``; False when ../shared/bench is not there."""
    script = ROOT.parent / "shared" / "bench" / "gen_stream.py"
    if not script.exists():
        return False
    subprocess.run(
        [sys.executable, str(script), str(path), "--events", str(events)],
        cwd=ROOT,
        env={**os.environ, "KPY_DIR": str(ROOT)},
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return True


def bench_lean(path: Path) -> dict[str, float]:
    """Decode every line with orjson and keep mutating verbs at ResponseComplete: the floor."""
    keep = {"create", "update", "patch", "delete", "deletecollection"}
    cpu0 = time.process_time()
    events = kept = 0
    with path.open("rb") as source:
        for line in source:
            event = orjson.loads(line)
            events += 1
            if event.get("stage") == "ResponseComplete" and event.get("verb") in keep:
                kept += 1
    cpu = time.process_time() - cpu0
    return {"events": events, "kept": kept, "cpu_s": cpu, "events_per_cpu_s": events / cpu}


def bench_replay(path: Path, store_path: Path) -> dict[str, float]:
    tune_gc()  # as `kelemetry replay` does
    store = SpanStore(store_path, synchronous="OFF")
    trace = TraceSettings(
        excluded_resources=DEFAULT_EXCLUDED_RESOURCES, excluded_user_agents=DEFAULT_EXCLUDED_USER_AGENTS
    )
    # With the request metrics of the audit stream, as `serve` runs it.
    pipeline = pipelines.build(store, trace, KindResolver(), requests=RequestMetrics(metrics.Registry()))
    stats = FileStats()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    kept = spans = 0
    for batch in read_audit_file(str(path), stats):
        result = pipeline.process_audit(batch, "bench")
        kept += result.kept
        spans += result.spans
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    store.close()
    return {
        "events": stats.events,
        "kept": kept,
        "spans": spans,
        "wall_s": wall,
        "cpu_s": cpu,
        "events_per_cpu_s": stats.events / cpu,
        "kept_per_cpu_s": kept / cpu,
        "store_mb": sum(p.stat().st_size for p in store_path.parent.glob(store_path.name + "*")) / 1e6,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bench_webhook(events: list[dict[str, Any]], workdir: Path, batches: int) -> dict[str, float]:
    port = _free_port()
    exe = Path(sys.executable).with_name("kelemetry")
    server = subprocess.Popen(
        [str(exe), "serve", "--listen", f"127.0.0.1:{port}", "--store", str(workdir / "webhook.db")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        with httpx.Client(timeout=30, headers={"Content-Type": "application/json"}) as client:
            while True:
                try:
                    if client.get(f"{base}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("kelemetry serve did not start")
                time.sleep(0.1)
            bodies = []
            for b in range(batches):
                items = [restamp(events[(b * 400 + k) % len(events)], 10_000 + b) for k in range(400)]
                bodies.append(
                    orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items})
                )
            for body in bodies[:5]:
                # Warm-up: the first requests pay for imports and SQLite page cache.
                client.post(f"{base}/audit/warmup", content=body)
            latencies = []
            # 400-event batches at 4,000 events/s, as a busy kube-apiserver sends them (one every 100 ms).
            started = time.perf_counter()
            for n, body in enumerate(bodies):
                time.sleep(max(0.0, started + n * 0.1 - time.perf_counter()))
                t0 = time.perf_counter()
                response = client.post(f"{base}/audit/bench", content=body)
                latencies.append(time.perf_counter() - t0)
                if response.status_code != 200:
                    raise RuntimeError(f"webhook answered {response.status_code}: {response.text}")
        latencies.sort()
        return {
            "batches": batches,
            "batch_mb": sum(len(b) for b in bodies) / len(bodies) / 1e6,
            "p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
            "max_ms": latencies[-1] * 1000,
        }
    finally:
        server.kill()
        server.wait()


def bench_graph(objects: int) -> dict[str, float]:
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    graph = OwnerGraph()
    for d in range(objects // 10):
        deploy = ObjectRef(
            ObjectKey.make("c", "apps", "deployments", f"ns{d % 50}", f"d{d}"), f"u{d}", "Deployment", "v1"
        )
        rs = ObjectRef(
            ObjectKey.make("c", "apps", "replicasets", f"ns{d % 50}", f"d{d}-x"), f"r{d}", "ReplicaSet", "v1"
        )
        graph.set_owner(rs, deploy)
        for p in range(8):
            pod = ObjectRef(
                ObjectKey.make("c", "", "pods", f"ns{d % 50}", f"d{d}-x-{p}"), f"p{d}-{p}", "Pod", "v1"
            )
            graph.set_owner(pod, rs)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    used = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return {"objects": len(graph), "bytes_per_object": used / len(graph)}


def bench_watch_cache(objects: int) -> dict[str, float]:
    """Memory per object in the watch's version cache and diff throughput, on recorded bodies."""
    sample = ROOT / "samples" / "deployment" / "audit.log"
    redactor = Redactor()
    versions: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for line in sample.read_bytes().splitlines():
        event = orjson.loads(line)
        body = event.get("responseObject")
        ref = event.get("objectRef") or {}
        if isinstance(body, dict) and body.get("metadata", {}).get("name") and body.get("kind") != "Status":
            versions.setdefault((ref.get("resource", ""), body["metadata"]["name"]), []).append(
                redactor.clean(ref.get("apiGroup", ""), ref.get("resource", ""), body)
            )
    bodies = [v[-1] for v in versions.values()]
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    history = BodyHistory(max_objects=objects)
    for i in range(objects):
        body = copy.deepcopy(bodies[i % len(bodies)])
        history.put(Incarnation(ObjectKey.make("c", "", "pods", "ns", f"o{i}"), f"u{i}"), str(i), body)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    used = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    pairs = [(a, b) for chain in versions.values() for a, b in itertools.pairwise(chain)]
    rounds = max(1, 20_000 // max(len(pairs), 1))
    cpu0 = time.process_time()
    lines = 0
    for _ in range(rounds):
        for old, new in pairs:
            lines += len(compute.compute(old, new))
    cpu = time.process_time() - cpu0
    return {"objects": objects, "bytes_per_object": used / objects, "diffs_per_s": rounds * len(pairs) / cpu}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--graph-objects", type=int, default=100_000)
    args = parser.parse_args()
    events = load_sources()
    with tempfile.TemporaryDirectory(prefix="kelemetry-bench-") as tmp:
        workdir = Path(tmp)
        path = workdir / "audit.jsonl"
        if realistic_stream(path, args.events):
            source = "../shared/bench/gen_stream.py (Deployment lifecycle x3, falco, audit2rbac)"
            total = sum(1 for _ in path.open("rb"))
        else:
            source = f"the recorded samples repeated ({len(events)} real events)"
            total = write_input(events, args.events, path)
        print(f"input: {total} audit events ({path.stat().st_size / 1e6:.1f} MB) from {source}")
        lean = bench_lean(path)
        replay = bench_replay(path, workdir / "replay.db")
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"lean decode-and-filter loop: {lean['events_per_cpu_s']:,.0f} audit events per CPU-second "
            f"({lean['kept']:.0f} of {lean['events']:.0f} kept)"
        )
        print(
            f"replay: {replay['events']:.0f} events ({replay['kept']:.0f} traced, "
            f"{replay['spans']:.0f} spans) "
            f"in {replay['wall_s']:.2f} s wall / {replay['cpu_s']:.2f} s CPU"
        )
        print(
            f"replay: {replay['events_per_cpu_s']:,.0f} audit events per CPU-second, diffs on "
            f"({replay['events_per_cpu_s'] / lean['events_per_cpu_s']:.2f}x the lean loop; "
            "target >= 30,000, then 60,000)"
        )
        print(f"replay: {replay['kept_per_cpu_s']:,.0f} traced events per CPU-second")
        print(f"store: {replay['store_mb']:.1f} MB; peak RSS of the replay process: {peak_mb:.0f} MB")
        hook = bench_webhook(events, workdir, args.batches)
        print(
            f"webhook: {hook['batches']:.0f} batches of 400 events ({hook['batch_mb']:.2f} MB each): "
            f"at 4,000 events/s: p50 {hook['p50_ms']:.1f} ms, p99 {hook['p99_ms']:.1f} ms, "
            f"max {hook['max_ms']:.1f} ms (target p99 < 20)"
        )
    cache = bench_watch_cache(20_000)
    print(
        f"watch cache: {cache['bytes_per_object']:.0f} bytes per cached object (one version, cleaned); "
        f"diffs: {cache['diffs_per_s']:,.0f} object-version diffs/s per core"
    )
    graph = bench_graph(args.graph_objects)
    print(
        f"owner graph: {graph['objects']:.0f} objects, {graph['bytes_per_object']:.0f} bytes/object "
        "(target <= 1024)"
    )
    print(f"cpu count: {os.cpu_count()}")


if __name__ == "__main__":
    main()
