"""Benchmark of browsing what changed: prints figures, asserts nothing.

Writes a store of N request, Event and change spans (default 1,000,000) over 24 hours: 3 clusters,
20 namespaces each, 2,000 objects per cluster, 12 users (one of them rare), 2% failed requests,
10% Events (a fifth of them Warnings), 3% watched changes. Then times, on the query service the API
and the CLI use (store query + rows), median of 5:

  page    the first page of 50 rows: no filter, one namespace, one user, a rare user, errors only,
          a 15-minute range, and a page 200 pages deep (by cursor)
  hist    the per-minute histogram: the last 15 minutes, the last hour of one namespace, the whole
          24 hours (2-minute buckets), the whole 24 hours of one user

Run: `python tests/bench/bench_changes.py [--spans N] [--store FILE]` (an existing FILE is reused).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from frontend import changes  # noqa: E402
from frontend.backend import StoreBackend  # noqa: E402
from frontend.query import QueryService  # noqa: E402
from frontend.views import ViewStore  # noqa: E402
from kelemetry.model import tags  # noqa: E402
from kelemetry.model.events import Log, TagValue, TraceSource  # noqa: E402
from kelemetry.model.objects import KnownObject, ObjectKey  # noqa: E402
from kelemetry.model.spans import SpanRecord  # noqa: E402
from kelemetry.store.sqlite import SpanStore, StoreReader  # noqa: E402

START_US = 1_714_521_600_000_000  # 2024-05-01T00:00:00Z
DAY_US = 86_400_000_000
WINDOW_US = 1_800_000_000
CLUSTERS = ("east", "west", "fleet")
NAMESPACES = 20
OBJECTS_PER_CLUSTER = 2000
USERS = [f"user-{i}" for i in range(10)] + ["system:serviceaccount:kube-system:deployment-controller", "rare"]
VERBS = ("create", "update", "patch", "delete")
BATCH = 5000


def build(path: Path, count: int) -> float:
    rng = random.Random(12)
    started = time.perf_counter()
    store = SpanStore(path)
    objects: list[KnownObject] = []
    for c, cluster in enumerate(CLUSTERS):
        for i in range(OBJECTS_PER_CLUSTER):
            key = ObjectKey.make(cluster, "", "pods", f"ns-{i % NAMESPACES:02d}", f"pod-{i:05d}")
            objects.append(KnownObject(c * 1_000_000 + i + 1, key, f"uid-{c}-{i}", "Pod", "v1"))
    store.write([], objects)
    step = DAY_US // count
    batch: list[SpanRecord] = []
    for n in range(count):
        obj = objects[rng.randrange(len(objects))]
        start = START_US + n * step
        roll = rng.random()
        span_tags: dict[str, TagValue]
        logs: tuple[Log, ...] = ()
        error = False
        if roll < 0.10:
            source = TraceSource.EVENT
            warning = rng.random() < 0.2
            span_tags = {tags.EVENT_TYPE: "Warning" if warning else "Normal", tags.EVENT_REASON: "Reason"}
            logs = (Log("message", "something happened to the pod"),)
            error = warning
        elif roll < 0.13:
            source = TraceSource.CHANGE
            span_tags = {tags.CHANGE_VERB: "update"}
            logs = (Log("diff", "status.phase Pending -> Running"),)
        else:
            source = TraceSource.AUDIT
            # The rare user makes one request in 10,000.
            user = "rare" if rng.random() < 0.0001 else USERS[rng.randrange(len(USERS) - 1)]
            error = rng.random() < 0.02
            span_tags = {
                tags.AUDIT_USER: user,
                tags.AUDIT_VERB: VERBS[rng.randrange(len(VERBS))],
                tags.AUDIT_CODE: 409 if error else 200,
            }
            logs = (Log("diff", "metadata.generation 1 -> 2\nspec.replicas 1 -> 2"),)
        window = start // WINDOW_US
        span_tags[tags.TRACE_SOURCE] = source.value
        batch.append(
            SpanRecord(
                trace_id=obj.object_id * 100_000 + window,
                span_id=n + 1,
                parent_id=None,
                source=source,
                name="x",
                start_us=start,
                end_us=start + 5_000,
                key=obj.key,
                object_id=obj.object_id,
                window=window,
                uid=obj.uid,
                kind="Pod",
                version="v1",
                tags=span_tags,
                logs=logs,
                error=error,
            )
        )
        if len(batch) == BATCH:
            store.write(batch)
            batch = []
    if batch:
        store.write(batch)
    store.close()
    return time.perf_counter() - started


def median_ms(action: Callable[[], Any], runs: int = 5) -> tuple[float, Any]:
    times = []
    result = None
    for _ in range(runs):
        started = time.perf_counter()
        result = action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--store", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kelemetry-bench-changes-"))
    path = args.store or work / "changes.db"
    if not path.exists():
        took = build(path, args.spans)
        print(f"built {args.spans:,} spans in {took:.1f}s ({path.stat().st_size / 2**20:.0f} MiB)")
    service = QueryService(StoreBackend(StoreReader(path)), ViewStore(None))
    end = START_US + DAY_US
    last_15m = {"start_us": end - 15 * 60_000_000, "end_us": end}

    def page(**filters: Any) -> Callable[[], Any]:
        return lambda: service.changes(changes.ChangeQuery(limit=50, **filters))

    def histogram(**filters: Any) -> Callable[[], Any]:
        query = changes.ChangeQuery(**filters)
        return lambda: service.backend.histogram(query)

    deep_cursor = None
    cursor_query = changes.ChangeQuery(limit=50)
    for _ in range(200):
        found = service.backend.changes(cursor_query)
        deep_cursor = found.next
        cursor_query = changes.ChangeQuery(limit=50, cursor=deep_cursor)

    cases: list[tuple[str, Callable[[], Any]]] = [
        ("page: no filter", page()),
        ("page: one namespace", page(cluster="east", namespace="ns-07")),
        ("page: one user", page(user="user-3")),
        ("page: a rare user (~90 requests)", page(user="rare")),
        ("page: errors only", page(errors_only=True)),
        ("page: last 15 minutes, one cluster", page(cluster="west", **last_15m)),
        ("page: 200 pages deep (cursor)", page(cursor=deep_cursor)),
        ("hist: last 15 minutes", histogram(**last_15m)),
        (
            "hist: last hour, one namespace",
            histogram(cluster="east", namespace="ns-07", start_us=end - 3_600_000_000, end_us=end),
        ),
        ("hist: 24 hours", histogram(start_us=START_US, end_us=end)),
        ("hist: 24 hours, one user", histogram(user="user-3", start_us=START_US, end_us=end)),
    ]
    for label, action in cases:
        ms, result = median_ms(action)
        if isinstance(result, dict):
            size = f"{len(result['data'])} rows"
        else:
            size = f"{len(result[1])} buckets of {result[0] // 60_000_000} min"
        print(f"{label:40s} {ms:9.1f} ms   ({size})")
    service.close()


if __name__ == "__main__":
    main()
