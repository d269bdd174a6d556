"""Benchmark of cross-cluster linking: prints figures, asserts nothing.

  per object  the default linkers (parent-link annotation, KubeAdmiral, Karmada, KubeFed, Liqo)
              asked for the parent of one object without a controller ownerReference, as the
              pipeline asks them: a plain object (no system's marks), a KubeAdmiral member copy, a
              parent-link annotation, a Karmada member object. Microseconds per object.
  fleet       the KubeAdmiral recording (samples/federation: host, member-1, member-2) restamped
              into N copies (fresh names and uids per copy, links kept) and replayed per cluster
              through the pipeline `kelemetry replay` builds, once with the default linkers and once
              with none: CPU per audit event, and how many links were made.
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
from tests.bench.bench_replay import restamp

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
            started = time.perf_counter()
            for _ in range(calls):
                pipeline._linked(ref, body)
            figures[label] = (time.perf_counter() - started) / calls * 1e6
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


def replay_fleet(
    files: Mapping[str, Path], store_path: Path, linker_names: tuple[str, ...]
) -> dict[str, float]:
    tune_gc()
    store = SpanStore(store_path, synchronous="OFF")
    pipeline = pipelines.build(store, TRACE, KindResolver(), linker_names=linker_names)
    stats = FileStats()
    cpu0 = time.process_time()
    for cluster, path in files.items():
        for batch in read_audit_file(str(path), stats):
            pipeline.process_audit(batch, cluster)
    cpu = time.process_time() - cpu0
    store.close()
    linked = sum(v for k, v in pipeline.links.counts.items() if k.startswith("linked_"))
    return {"events": stats.events, "cpu_s": cpu, "us_per_event": cpu / stats.events * 1e6, "links": linked}


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
    parser.add_argument("--calls", type=int, default=50_000, help="linker calls per object shape")
    parser.add_argument("--links", type=int, default=50_000, help="cross-cluster links for the memory figure")
    args = parser.parse_args()

    print("linking, per object without a controller ownerReference (default linkers):")
    for label, micros in bench_per_object(args.calls).items():
        print(f"  {label:24s} {micros:6.2f} µs")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = write_fleet(args.copies, work)
        plain = replay_fleet(files, work / "none.db", ())
        default = replay_fleet(files, work / "default.db", pipelines.linker_registry.DEFAULT)
    added = default["us_per_event"] - plain["us_per_event"]
    print(f"fleet replay, {default['events']:.0f} audit events of samples/federation × {args.copies}:")
    print(f"  no linkers       {plain['us_per_event']:7.1f} µs CPU per event, {plain['links']:.0f} links")
    print(f"  default linkers  {default['us_per_event']:7.1f} µs CPU per event, {default['links']:.0f} links")
    print(f"  added by linking {added:7.1f} µs per event ({added / plain['us_per_event'] * 100:+.1f}%)")

    memory = bench_memory(args.links)
    per_link = memory["bytes_per_link"]
    print(f"owner graph: {per_link:.0f} bytes per cross-cluster link ({memory['links']:.0f} links)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
