"""Benchmark of cross-cluster linking: prints figures, asserts nothing.

  per object  the default linkers (parent-link annotation, KubeAdmiral, Karmada, KubeFed, Liqo)
              asked for the parent of one object without a controller ownerReference, as the
              pipeline asks them: a plain object (no system's marks), a KubeAdmiral member copy, a
              parent-link annotation, a Karmada member object. Microseconds per object.
  fleet       the KubeAdmiral recording (samples/federation: host, member-1, member-2) restamped
              into N copies (fresh names and uids per copy, links kept) and replayed per cluster
              through the pipeline `kelemetry replay` builds, the linking step timed on its own:
              its µs per audit event beside the whole replay's, and the links made.
  one cluster the realistic single-cluster stream of bench_replay.py (../shared/bench/gen_stream.py,
              50k events; skipped without ../shared) replayed the same way: what linking costs
              someone who runs no federation system.
  memory      bytes the owner graph holds per cross-cluster link (tracemalloc): members linked to
              a host object of another cluster, minus the same objects unlinked.

Run: `make bench` (or `python tests/bench/bench_links.py --copies 200`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from kelemetry import pipeline as pipelines
from kelemetry.cli import tune_gc
from kelemetry.kube.kinds import KindResolver
from kelemetry.linker.graph import OwnerGraph
from kelemetry.linker.links import Clusters
from kelemetry.model.objects import ObjectKey, ObjectRef
from kelemetry.receivers.auditfiles import FileStats, read_audit_file
from kelemetry.settings import DEFAULT_EXCLUDED_RESOURCES, DEFAULT_EXCLUDED_USER_AGENTS, TraceSettings
from kelemetry.store.sqlite import SpanStore
from tests.bench.bench_replay import realistic_stream, restamp

ROOT = Path(__file__).resolve().parents[2]
FEDERATION = ROOT / "samples" / "federation"
CLUSTERS = ("host", "member-1", "member-2")
TRACE = TraceSettings(
    excluded_resources=DEFAULT_EXCLUDED_RESOURCES, excluded_user_agents=DEFAULT_EXCLUDED_USER_AGENTS
)


def _deployment(labels: Mapping[str, str], annotations: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "u-member",
            "labels": {"app": "web", **labels},
            "annotations": {"deployment.kubernetes.io/revision": "1", **annotations},
        },
        "spec": {"replicas": 2},
    }


BODIES: dict[str, dict[str, Any]] = {
    "plain object": _deployment({}, {}),
    "KubeAdmiral member": _deployment(
        {"kubeadmiral.io/managed": "true"}, {"kubeadmiral.io/source-generation": "2"}
    ),
    "parent-link annotation": _deployment(
        {},
        {
            "kelemetry.kubewharf.io/parent-link": json.dumps(
                {"cluster": "host", "group": "apps", "version": "v1", "resource": "deployments"}
                | {"namespace": "default", "name": "web"}
            )
        },
    ),
    "Karmada member": _deployment(
        {"work.karmada.io/permanent-id": "p-1"},
        {"work.karmada.io/namespace": "karmada-es-member-1", "work.karmada.io/name": "web-687f7fb96f"},
    ),
}


def bench_per_object(calls: int) -> dict[str, float]:
    """µs per object for the default linkers, through the pipeline's own linking step."""
    with tempfile.TemporaryDirectory() as work:
        store = SpanStore(Path(work) / "k.db", synchronous="OFF")
        pipeline = pipelines.build(
            store, TRACE, KindResolver(), clusters=Clusters(frozenset({"host", "member-1"}))
        )
        ref = ObjectRef(ObjectKey.make("member-1", "apps", "deployments", "default", "web"), "u-member")
        figures: dict[str, float] = {}
        for label, body in BODIES.items():
            for _ in range(200):  # warm-up
                pipeline._linked(ref, body)
            best = float("inf")
            for _ in range(5):  # best of 5: the VM's noise is larger than these differences
                started = time.perf_counter()
                for _ in range(calls):
                    pipeline._linked(ref, body)
                best = min(best, (time.perf_counter() - started) / calls * 1e6)
            figures[label] = best
        store.close()
    return figures


def write_fleet(copies: int, work: Path) -> dict[str, Path]:
    """Each cluster's audit log restamped ``copies`` times: the same names and uids get the same
    suffix in every cluster, so a member copy still names its host object."""
    files: dict[str, Path] = {}
    for cluster in CLUSTERS:
        lines = (FEDERATION / cluster / "audit.log").read_bytes().splitlines()
        events = [orjson.loads(line) for line in lines]
        path = work / f"{cluster}.log"
        with path.open("wb") as out:
            for i in range(copies):
                for event in events:
                    out.write(orjson.dumps(restamp(event, i)) + b"\n")
        files[cluster] = path
    return files


def replay_timed(files: Mapping[str, Path], store_path: Path) -> dict[str, float]:
    """Replay with the default linkers, timing the pipeline's linking step on its own: the rest of
    the replay varies by ±10% from run to run on this VM, far more than linking costs, so a
    with/without difference of whole replays measures noise."""
    tune_gc()
    store = SpanStore(store_path, synchronous="OFF")
    pipeline = pipelines.build(store, TRACE, KindResolver())
    linked = pipeline._linked
    spent = [0.0, 0]

    def timed(obj: ObjectRef, body: Mapping[str, Any]) -> Any:
        started = time.perf_counter()
        try:
            return linked(obj, body)
        finally:
            spent[0] += time.perf_counter() - started
            spent[1] += 1

    pipeline._linked = timed  # type: ignore[method-assign]
    stats = FileStats()
    cpu0 = time.process_time()
    for cluster, path in files.items():
        for batch in read_audit_file(str(path), stats):
            pipeline.process_audit(batch, cluster)
    cpu = time.process_time() - cpu0
    store.close()
    # The timer itself, measured the same way, is taken off.
    empty = time.perf_counter()
    for _ in range(10_000):
        started = time.perf_counter()
        spent[0] += 0.0 * (time.perf_counter() - started)
    timer_s = (time.perf_counter() - empty) / 10_000
    linking_s = max(0.0, spent[0] - timer_s * spent[1])
    return {
        "events": stats.events,
        "us_per_event": cpu / stats.events * 1e6,
        "linking_us_per_event": linking_s / stats.events * 1e6,
        "asked": spent[1],
        "links": sum(v for k, v in pipeline.links.counts.items() if k.startswith("linked_")),
    }


def report(title: str, found: dict[str, float]) -> None:
    share = found["linking_us_per_event"] / found["us_per_event"] * 100
    total = found["us_per_event"]
    print(f"{title}: {found['events']:.0f} audit events, {total:.1f} µs CPU per event in all")
    print(
        f"  linking {found['linking_us_per_event']:.2f} µs per event ({share:.1f}%):"
        f" {found['asked']:.0f} objects without a controller owner asked, {found['links']:.0f} links made"
    )


def bench_memory(links: int) -> dict[str, float]:
    """Bytes per cross-cluster link: N member Deployments (each with a ReplicaSet) linked to N host
    Deployments, minus the same objects with only their same-cluster owners."""

    def build(linked: bool) -> int:
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        graph = OwnerGraph()
        for n in range(links):
            host = ObjectRef(
                ObjectKey.make("host", "apps", "deployments", "ns", f"d{n}"), f"h{n}", "Deployment"
            )
            member = ObjectRef(
                ObjectKey.make("member-1", "apps", "deployments", "ns", f"d{n}"), f"m{n}", "Deployment"
            )
            rs = ObjectRef(
                ObjectKey.make("member-1", "apps", "replicasets", "ns", f"d{n}-x"), f"r{n}", "ReplicaSet"
            )
            graph.add(host)
            graph.set_owner(rs, member)
            if linked:
                graph.set_owner(member, host)
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        return sum(stat.size_diff for stat in after.compare_to(before, "filename"))

    unlinked, linked = build(False), build(True)
    return {"links": links, "bytes_per_link": (linked - unlinked) / links}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--copies", type=int, default=200, help="copies of the fleet recording (default 200)")
    parser.add_argument("--stream-events", type=int, default=50_000, help="single-cluster stream size")
    parser.add_argument("--calls", type=int, default=20_000, help="linker calls per object shape, per round")
    parser.add_argument("--links", type=int, default=50_000, help="cross-cluster links for the memory figure")
    args = parser.parse_args()

    print("linking, per object without a controller ownerReference (default linkers):")
    for label, micros in bench_per_object(args.calls).items():
        print(f"  {label:24s} {micros:6.2f} µs")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fleet = replay_timed(write_fleet(args.copies, work), work / "f.db")
        report(f"fleet replay, samples/federation × {args.copies}", fleet)
        stream = work / "stream.jsonl"
        if realistic_stream(stream, args.stream_events):
            report("one cluster, gen_stream.py", replay_timed({"one": stream}, work / "s.db"))
        else:
            print("one cluster: skipped (../shared/bench/gen_stream.py is not here)")

    memory = bench_memory(args.links)
    per_link = memory["bytes_per_link"]
    print(f"owner graph: {per_link:.0f} bytes per cross-cluster link ({memory['links']:.0f} links)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
