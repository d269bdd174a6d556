"""Benchmark of the query side: prints figures, asserts nothing.

Builds a store through the real pipeline holding one Deployment with 1,000 descendants
(10 ReplicaSets x 99 Pods) and 10,000 audit events on them, spread over two trace windows, then:

  api     a real `kelemetry frontend` process; wall time of `GET /api/traces` (search by object, the
          full tree in `tracing` mode), of the UI's search-and-open (`GET /api/kelemetry/lookup`, then
          `GET /api/traces/{id}`) and of `GET /api/traces/{id}` in each base mode, median of 5.
  ui      headless Chromium (tests/browser/driver.py) opening the trace page of that view: time to
          the first render of the tree, as the page measures it (navigation start → tree drawn).

Run: `make bench-query` (or `python tests/bench/bench_query.py`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from kelemetry.store.sqlite import SpanStore

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.factories import audit_event, new_pipeline, owner_ref  # noqa: E402

CLUSTER = "bench"
REPLICASETS = 10
PODS_PER_RS = 99
EVENTS = 10_000
START = datetime(2024, 5, 1, 10, 10, tzinfo=UTC)


def stamp(offset_ms: int) -> dict[str, str]:
    moment = START + timedelta(milliseconds=offset_ms)
    done = moment + timedelta(milliseconds=8)
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    return {"received": moment.strftime(fmt), "completed": done.strftime(fmt)}


def build_events() -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = [
        {"resource": "deployments", "group": "apps", "name": "big", "uid": "uid-big", "owner": None}
    ]
    for r in range(REPLICASETS):
        rs = f"big-{r:02d}"
        objects.append(
            {
                "resource": "replicasets",
                "group": "apps",
                "name": rs,
                "uid": f"uid-{rs}",
                "owner": owner_ref("Deployment", "big", uid="uid-big"),
            }
        )
        for p in range(PODS_PER_RS):
            pod = f"{rs}-pod-{p:03d}"
            objects.append(
                {
                    "resource": "pods",
                    "group": "",
                    "name": pod,
                    "uid": f"uid-{pod}",
                    "owner": owner_ref("ReplicaSet", rs, uid=f"uid-{rs}"),
                }
            )
    events: list[dict[str, Any]] = []
    # 40 minutes of activity: the hierarchy spans two 30-minute windows that the query merges.
    step_ms = 40 * 60 * 1000 // EVENTS
    for i in range(EVENTS):
        obj = objects[i % len(objects)]
        generation = i // len(objects)
        verb = "create" if generation == 0 else "update"
        body = {
            "kind": {"deployments": "Deployment", "replicasets": "ReplicaSet", "pods": "Pod"}[
                obj["resource"]
            ],
            "apiVersion": "apps/v1" if obj["group"] else "v1",
            "metadata": {
                "name": obj["name"],
                "namespace": "default",
                "uid": obj["uid"],
                "resourceVersion": str(1000 + i),
                **({"ownerReferences": [obj["owner"]]} if obj["owner"] else {}),
            },
            "status": {"observedGeneration": generation, "phase": f"step-{generation}"},
        }
        events.append(
            audit_event(
                verb=verb,
                resource=obj["resource"],
                group=obj["group"],
                name=obj["name"],
                uid=obj["uid"],
                code=201 if verb == "create" else 200,
                owner=obj["owner"],
                response_object=body,
                request_object=body,
                audit_id=f"bench-{i:06d}",
                **{k: v for k, v in zip(("received", "completed"), stamp(i * step_ms).values(), strict=True)},
            )
        )
    return events


def build_store(path: Path) -> float:
    started = time.perf_counter()
    store = SpanStore(path)
    pipeline = new_pipeline(store)
    events = build_events()
    for i in range(0, len(events), 500):
        pipeline.process_audit(events[i : i + 500], CLUSTER)
    store.close()
    return time.perf_counter() - started


def timed_get(client: httpx.Client, url: str, params: dict[str, str] | None = None) -> tuple[float, Any]:
    started = time.perf_counter()
    response = client.get(url, params=params)
    took = time.perf_counter() - started
    response.raise_for_status()
    return took * 1000, response.json()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-ui", action="store_true", help="skip the browser measurement")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "bench.db"
        took = build_store(store)
        print(
            f"store: 1 Deployment + {REPLICASETS * (PODS_PER_RS + 1)} descendants, {EVENTS} audit events, "
            f"built in {took:.1f}s"
        )
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kelemetry",
                "frontend",
                "--listen",
                f"127.0.0.1:{port}",
                "--store",
                str(store),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            with httpx.Client(timeout=60) as client:
                for _ in range(100):
                    try:
                        client.get(f"{base}/healthz")
                        break
                    except httpx.TransportError:
                        time.sleep(0.1)
                search = {
                    "service": "tracing [full tree]",
                    "operation": CLUSTER,
                    "tags": json.dumps({"resource": "deployments", "name": "big"}),
                }
                times = []
                body: Any = None
                for _ in range(args.runs):
                    ms, body = timed_get(client, f"{base}/api/traces", search)
                    times.append(ms)
                trace = body["data"][0]
                logs = sum(len(span["logs"]) for span in trace["spans"])
                print(
                    f"api  GET /api/traces (search, tracing [full tree]): "
                    f"median {statistics.median(times):.0f} ms, "
                    f"min {min(times):.0f} ms, max {max(times):.0f} ms  "
                    f"({len(trace['spans'])} spans, {logs} logs, target < 500 ms)"
                )
                view_id = trace["traceID"]
                # The UI's search-and-open: a lookup to the view id, then the view itself.
                lookup = {"cluster": CLUSTER, "resource": "deployments", "name": "big", "mode": "21000000"}
                looked, opened = [], []
                for _ in range(args.runs):
                    ms, found = timed_get(client, f"{base}/api/kelemetry/lookup", lookup)
                    looked.append(ms)
                    view = f"{base}/api/traces/{found['data'][0]['viewId']}"
                    opened.append(ms + timed_get(client, view)[0])
                print(
                    f"api  GET /api/kelemetry/lookup: median {statistics.median(looked):.0f} ms; "
                    f"search-and-open (lookup + view): median {statistics.median(opened):.0f} ms"
                )
                for mode in ("21000000", "31000000", "01000000", "11000000"):
                    mode_id = f"ff{mode}{view_id[10:]}"
                    times = [timed_get(client, f"{base}/api/traces/{mode_id}")[0] for _ in range(args.runs)]
                    print(
                        f"api  GET /api/traces/{{id}} mode {mode}: median {statistics.median(times):.0f} ms"
                    )
            if not args.no_ui:
                measure_ui(f"{base}/trace/{view_id}")
        finally:
            server.terminate()
            server.wait(10)
    return 0


def measure_ui(url: str) -> None:
    try:
        from tests.browser.driver import Browser
    except ImportError as exc:
        print(f"ui   not measured: {exc}")
        return
    browser = Browser().start()
    try:
        for attempt in range(3):
            browser.open(url)
            timing = browser.wait_rendered(120)
            print(
                f"ui   first render of the trace page (run {attempt + 1}): total {timing['totalMs']:.0f} ms "
                f"(fetch {timing['fetchMs']:.0f} ms, render {timing['renderMs']:.0f} ms)"
            )
    finally:
        browser.quit()


if __name__ == "__main__":
    raise SystemExit(main())
