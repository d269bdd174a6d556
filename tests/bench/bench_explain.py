"""Benchmark of the causal answers: prints figures, asserts nothing.

Builds a store through the real pipeline holding one Deployment with 1,002 related objects (2
ReplicaSets, 1,000 Pods) and 10,000 audit events on them: a person creates and scales the
Deployment, the deployment-controller creates and scales the ReplicaSets, the replicaset-controller
creates the Pods, and the kubelet writes their status over and over. Then, in process, on the
embedded store (the query service as the API and the CLI use it):

  explain   a Pod at its last activity (the whole chain: Pod → ReplicaSet → Deployment → admin), the
            same Pod at a moment in the middle, the Deployment itself — the chain alone (it reads the
            object's line of owners), then the whole answer (rollouts and stuck Pods read the
            hierarchy, without the Pods' routine status writes);
  blame     the Deployment's spec.replicas (every incarnation, with the value at creation), and a
            Pod's status.phase.

Median of 5 each (after one warm-up), target well under a second.

Run: `make bench` (or `python tests/bench/bench_explain.py`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from frontend import query  # noqa: E402
from frontend.types import ObjectQuery  # noqa: E402
from kelemetry.store.sqlite import SpanStore  # noqa: E402
from tests.factories import audit_event, new_pipeline, owner_ref  # noqa: E402

CLUSTER = "bench"
PODS = 1000
EVENTS = 10_000
START = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
DEPLOYMENT_CONTROLLER = "system:serviceaccount:kube-system:deployment-controller"
REPLICASET_CONTROLLER = "system:serviceaccount:kube-system:replicaset-controller"
KUBELET = "system:node:node-1"


def stamp(offset_ms: int) -> dict[str, str]:
    moment = START + timedelta(milliseconds=offset_ms)
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    return {"received": moment.strftime(fmt), "completed": (moment + timedelta(milliseconds=5)).strftime(fmt)}


def body(
    kind: str, name: str, uid: str, rv: int, owner: dict[str, Any] | None, **fields: Any
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "default", "uid": uid, "resourceVersion": str(rv)}
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    return {"kind": kind, "apiVersion": "v1" if kind == "Pod" else "apps/v1", "metadata": metadata, **fields}


class Stream:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.clock_ms = 0

    def add(
        self, verb: str, resource: str, name: str, uid: str, user: str, document: dict[str, Any], **extra: Any
    ) -> None:
        self.clock_ms += 3
        number = len(self.events)
        self.events.append(
            audit_event(
                verb=verb,
                resource=resource,
                group="" if resource == "pods" else "apps",
                name=name,
                uid=uid,
                user=user,
                code=201 if verb == "create" else 200,
                owner=document["metadata"].get("ownerReferences", [None])[0],
                request_object=document,
                response_object=document,
                audit_id=f"bench-{number:06d}",
                **stamp(self.clock_ms),
                **extra,
            )
        )


def build_events() -> list[dict[str, Any]]:
    stream = Stream()
    rv = iter(range(1000, 10**9))
    deployment_owner = owner_ref("Deployment", "big", uid="uid-big")
    template = {"spec": {"containers": [{"name": "app", "image": "app:1"}]}}

    def deployment(replicas: int, image: str) -> dict[str, Any]:
        spec = {"replicas": replicas, "template": {"spec": {"containers": [{"name": "app", "image": image}]}}}
        return body("Deployment", "big", "uid-big", next(rv), None, spec=spec)

    stream.add("create", "deployments", "big", "uid-big", "admin", deployment(500, "app:1"))
    replicasets = [("big-aaa", "uid-big-aaa", "app:1"), ("big-bbb", "uid-big-bbb", "app:2")]
    pods: list[tuple[str, str, dict[str, Any]]] = []
    for index, (rs, rs_uid, image) in enumerate(replicasets):
        if index == 1:
            stream.add("patch", "deployments", "big", "uid-big", "admin", deployment(1000, "app:2"))
        owner = owner_ref("ReplicaSet", rs, uid=rs_uid)
        spec = {"replicas": 0, "template": template}
        stream.add(
            "create",
            "replicasets",
            rs,
            rs_uid,
            DEPLOYMENT_CONTROLLER,
            body("ReplicaSet", rs, rs_uid, next(rv), deployment_owner, spec=spec),
        )
        for step in range(5):
            replicas = (step + 1) * PODS // 2 // 5
            spec = {"replicas": replicas, "template": template}
            stream.add(
                "update",
                "replicasets",
                rs,
                rs_uid,
                DEPLOYMENT_CONTROLLER,
                body("ReplicaSet", rs, rs_uid, next(rv), deployment_owner, spec=spec),
            )
            for _ in range(PODS // 2 // 5):
                pod = f"{rs}-{len(pods):04d}"
                document = body(
                    "Pod",
                    pod,
                    f"uid-{pod}",
                    next(rv),
                    owner,
                    spec={"containers": [{"name": "app", "image": image}]},
                )
                stream.add("create", "pods", pod, f"uid-{pod}", REPLICASET_CONTROLLER, document)
                pods.append((pod, f"uid-{pod}", document))
    # The rest: the kubelet reporting the Pods' status, round and round.
    round_ = 0
    while len(stream.events) < EVENTS:
        round_ += 1
        for pod, uid, document in pods:
            if len(stream.events) >= EVENTS:
                break
            status = {**document, "metadata": {**document["metadata"], "resourceVersion": str(next(rv))}}
            status["status"] = {"phase": "Running", "restartCount": round_}
            stream.add(
                "patch",
                "pods",
                pod,
                uid,
                KUBELET,
                status,
                objectRef={
                    "resource": "pods",
                    "namespace": "default",
                    "name": pod,
                    "apiVersion": "v1",
                    "subresource": "status",
                },
            )
    return stream.events


def build_store(path: Path) -> tuple[float, int]:
    started = time.perf_counter()
    store = SpanStore(path)
    pipeline = new_pipeline(store)
    events = build_events()
    for i in range(0, len(events), 500):
        pipeline.process_audit(events[i : i + 500], CLUSTER)
    store.close()
    return time.perf_counter() - started, len(events)


def timed(runs: int, work: Callable[[], Any]) -> tuple[list[float], Any]:
    result = work()  # warm-up: the first read of a fresh process pays for SQLite's page cache
    took = []
    for _ in range(runs):
        started = time.perf_counter()
        result = work()
        took.append((time.perf_counter() - started) * 1000)
    return took, result


def report(label: str, took: list[float], detail: str) -> None:
    print(
        f"{label}: median {statistics.median(took):.0f} ms, min {min(took):.0f} ms, max {max(took):.0f} ms  "
        f"({detail}; target well under 1000 ms)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        took, events = build_store(path)
        print(f"store: 1 Deployment, 2 ReplicaSets, {PODS} Pods, {events} audit events, built in {took:.1f}s")
        service = query.for_store(path, keep_views=False)
        try:
            pod = ObjectQuery(cluster=CLUSTER, resource="pods", namespace="default", name="big-bbb-0999")
            times, answer = timed(args.runs, lambda: service.explain(pod, chain_only=True))
            chain = " → ".join(f"{step.object.kind} {step.relation}" for step in answer.chain.steps)
            report("explain a Pod at its last activity, chain only", times, chain)
            middle = (START + timedelta(seconds=10)).timestamp() * 1_000_000
            times, answer = timed(args.runs, lambda: service.explain(pod, int(middle), chain_only=True))
            report(
                "explain a Pod at a moment in the middle, chain only",
                times,
                f"{len(answer.chain.steps)} steps",
            )
            big = ObjectQuery(cluster=CLUSTER, resource="deployments", namespace="default", name="big")
            times, answer = timed(args.runs, lambda: service.explain(big, chain_only=True))
            report("explain the Deployment, chain only", times, f"{len(answer.chain.steps)} step")
            # The whole answer: rollouts and stuck Pods read the hierarchy of 1,003 objects.
            times, answer = timed(args.runs, lambda: service.explain(pod))
            report("explain a Pod, with rollouts and stuck Pods", times, f"{len(answer.rollouts)} rollouts")
            times, answer = timed(args.runs, lambda: service.explain(big))
            report(
                "explain the Deployment, with rollouts and stuck Pods",
                times,
                f"{len(answer.rollouts)} rollouts, {len(answer.stuck)} stuck",
            )
            times, blamed = timed(args.runs, lambda: service.blame(big, "spec.replicas"))
            report(
                "blame the Deployment's spec.replicas",
                times,
                f"{len(blamed.incarnations[0].history)} entries",
            )
            times, blamed = timed(args.runs, lambda: service.blame(pod, "status.restartCount"))
            report(
                "blame a Pod's status.restartCount", times, f"{len(blamed.incarnations[0].history)} entries"
            )
        finally:
            service.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
