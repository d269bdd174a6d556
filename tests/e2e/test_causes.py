"""Causal answers on a real control plane: who really did what, asked the way an incident asks it.

Four scenarios, each in its own namespace and driven with kubectl as user ``admin``: a rollout by
``kubectl set image``, a ``kubectl scale --replicas=0``, a Deployment whose Pods no node can take
(the real scheduler's FailedScheduling), and a ReplicaSet deleted by hand that the
deployment-controller creates again. Each test first checks what reached the collector's store
(the requests, Events and incarnations the answers are built from), then asks ``kelemetry
explain``, ``blame`` and ``stuck`` (the CLI against the collector's store) and the HTTP API.

The namespaces are made and the workloads created together at the start of the module, so the
scenarios' control loops run while the earlier tests check their answers. With
KELEMETRY_RECORD=1 the module writes samples/causes/ (the scenarios' part of the audit log and
their Events) when it ends.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from kelemetry.model.events import TraceSource
from kelemetry.model.spans import SpanRecord
from kelemetry.model.times import parse_time_us
from kelemetry.store.sqlite import StoreReader
from tests.e2e.conftest import Collector, ControlPlane
from tests.e2e.servers import CLUSTER, REPO, Binaries, wait_until

pytestmark = pytest.mark.e2e

ADMIN = "admin"
DEPLOYMENT_CONTROLLER = "system:serviceaccount:kube-system:deployment-controller"
REPLICASET_CONTROLLER = "system:serviceaccount:kube-system:replicaset-controller"
SCHEDULER = "system:kube-scheduler"

ROLLOUT, SCALE, PENDING, RECREATE = "causes-rollout", "causes-scale", "causes-pending", "causes-recreate"
NAMESPACES = (ROLLOUT, SCALE, PENDING, RECREATE)
IMAGE_DIFF = 'spec.template.spec.containers[name=nginx].image "nginx:1.27" -> "nginx:1.28"'

# No node has this label (the kwok node is `type: kwok`), so the scheduler can never place the Pods.
# A short progress deadline lets the deployment-controller give up on the rollout within the run.
PENDING_DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": PENDING},
    "spec": {
        "replicas": 1,
        "progressDeadlineSeconds": 10,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "nodeSelector": {"disktype": "ssd"},
                "containers": [{"name": "nginx", "image": "nginx:1.27"}],
            },
        },
    },
}


@dataclass(frozen=True)
class Scenarios:
    cluster: ControlPlane
    collector: Collector
    binaries: Binaries
    started_us: int


@pytest.fixture(scope="module")
def scenarios(cluster: ControlPlane, collector: Collector, binaries: Binaries) -> Iterator[Scenarios]:
    started_us = time.time_ns() // 1000 - 1_000_000
    for namespace in NAMESPACES:
        cluster.kubectl("create", "namespace", namespace)
    wait_until(
        "the namespaces' default service accounts",
        lambda: all(cluster.kubectl("get", "sa", "default", "-n", ns, check=False) for ns in NAMESPACES),
        60,
    )
    replicas = {ROLLOUT: "2", SCALE: "2", RECREATE: "1"}
    for namespace, count in replicas.items():
        create_web(cluster, namespace, count)
    cluster.kubectl("create", "-f", "-", stdin=json.dumps(PENDING_DEPLOYMENT))
    yield Scenarios(cluster, collector, binaries, started_us)
    if os.environ.get("KELEMETRY_RECORD"):
        record_sample(cluster, started_us)


def create_web(cluster: ControlPlane, namespace: str, replicas: str) -> None:
    cluster.kubectl(
        "create", "deployment", "web", "-n", namespace, "--image=nginx:1.27", f"--replicas={replicas}"
    )


def jsonpath(cluster: ControlPlane, namespace: str, *what: str, path: str) -> str:
    return cluster.kubectl("get", *what, "-n", namespace, "-o", f"jsonpath={path}", check=False)


def rolled_out(cluster: ControlPlane, namespace: str, replicas: int) -> None:
    wait_until(
        f"deployment web in {namespace} to have {replicas} updated, available pods",
        lambda: (
            jsonpath(
                cluster,
                namespace,
                "deployment",
                "web",
                path="{.status.availableReplicas}/{.status.updatedReplicas}/{.status.replicas}",
            )
            == (f"{replicas}/{replicas}/{replicas}" if replicas else "//")
        ),
        90,
        0.5,
    )


# -- what reached the store


def spans_in(collector: Collector, namespace: str) -> list[SpanRecord]:
    reader = StoreReader(collector.store)
    try:
        return [s for s in reader.all_spans() if s.key.namespace == namespace and s.key.cluster == CLUSTER]
    finally:
        reader.close()


def requests_of(spans: list[SpanRecord], resource: str, name: str | None = None) -> list[SpanRecord]:
    return sorted(
        (
            s
            for s in spans
            if s.source is TraceSource.AUDIT
            and s.key.resource == resource
            and (name is None or s.key.name == name)
        ),
        key=lambda s: s.start_us,
    )


def call(span: SpanRecord) -> tuple[Any, Any, Any]:
    return (span.tags.get("audit.user"), span.tags.get("audit.verb"), span.tags.get("audit.subresource"))


def diff_lines(span: SpanRecord) -> list[str]:
    return [line for log in span.logs if log.kind == "diff" for line in log.message.split("\n")]


def incarnations(collector: Collector, namespace: str, resource: str, name: str) -> list[str]:
    reader = StoreReader(collector.store)
    try:
        found = reader.find_objects(cluster=CLUSTER, resource=resource, namespace=namespace, name=name)
    finally:
        reader.close()
    return sorted(o.uid for o in found if o.uid)


def wait_for_spans(collector: Collector, namespace: str, what: str, check: Any, timeout: float = 60) -> Any:
    return wait_until(what, lambda: check(spans_in(collector, namespace)), timeout, 0.5)


# -- the answers, from the real CLI against the collector's store


def cli_json(scenarios: Scenarios, *args: str) -> Any:
    result = subprocess.run(
        [
            str(scenarios.binaries.kelemetry),
            *args,
            "--store",
            str(scenarios.collector.store),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, f"kelemetry {' '.join(args)} failed: {result.stderr.strip()}"
    return json.loads(result.stdout)


# -- the scenarios


def test_rollout_by_set_image_reaches_the_store(scenarios: Scenarios) -> None:
    cluster, collector = scenarios.cluster, scenarios.collector
    rolled_out(cluster, ROLLOUT, 2)
    first_rs = jsonpath(cluster, ROLLOUT, "rs", path="{.items[0].metadata.name}")
    cluster.kubectl("set", "image", "deployment/web", "-n", ROLLOUT, "nginx=nginx:1.28")
    rolled_out(cluster, ROLLOUT, 2)
    wait_until(
        "the old ReplicaSet to be scaled to 0",
        lambda: jsonpath(cluster, ROLLOUT, "rs", first_rs, path="{.status.replicas}") == "0",
        60,
    )

    def arrived(spans: list[SpanRecord]) -> list[SpanRecord] | None:
        patches = [
            s
            for s in requests_of(spans, "deployments", "web")
            if call(s) == (ADMIN, "patch", None) and IMAGE_DIFF in diff_lines(s)
        ]
        new_rs = [
            s
            for s in requests_of(spans, "replicasets")
            if call(s) == (DEPLOYMENT_CONTROLLER, "create", None) and s.key.name != first_rs
        ]
        pods = [
            s
            for s in requests_of(spans, "pods")
            if new_rs
            and call(s) == (REPLICASET_CONTROLLER, "create", None)
            and s.key.name.startswith(new_rs[0].key.name + "-")
        ]
        return patches if patches and len(new_rs) == 1 and len(pods) >= 2 else None

    patches = wait_for_spans(
        collector, ROLLOUT, "admin's set-image patch, the new ReplicaSet and its pods", arrived
    )
    assert len(patches) == 1
    assert "kubectl" in str(patches[0].tags.get("audit.user_agent"))


def test_scale_to_zero_reaches_the_store(scenarios: Scenarios) -> None:
    cluster, collector = scenarios.cluster, scenarios.collector
    rolled_out(cluster, SCALE, 2)
    cluster.kubectl("scale", "deployment/web", "-n", SCALE, "--replicas=3")
    rolled_out(cluster, SCALE, 3)
    cluster.kubectl("scale", "deployment/web", "-n", SCALE, "--replicas=0")
    rolled_out(cluster, SCALE, 0)

    def arrived(spans: list[SpanRecord]) -> list[SpanRecord] | None:
        scales = [s for s in requests_of(spans, "deployments", "web") if call(s) == (ADMIN, "patch", "scale")]
        return scales if len(scales) == 2 else None

    scales = wait_for_spans(collector, SCALE, "admin's two scale requests", arrived)
    assert "spec.replicas 2 -> 3" in diff_lines(scales[0])
    assert "spec.replicas 3 -> 0" in diff_lines(scales[1])


def test_unschedulable_pods_reach_the_store(scenarios: Scenarios) -> None:
    cluster, collector = scenarios.cluster, scenarios.collector

    def failed_scheduling(spans: list[SpanRecord]) -> list[SpanRecord] | None:
        found = [
            s
            for s in spans
            if s.source is TraceSource.EVENT
            and s.key.resource == "pods"
            and s.tags.get("event.reason") == "FailedScheduling"
        ]
        return found or None

    events = wait_for_spans(collector, PENDING, "the scheduler's FailedScheduling Event", failed_scheduling)
    assert all(e.tags.get("event.type") == "Warning" for e in events)
    assert any("didn't match Pod's node affinity/selector" in log.message for e in events for log in e.logs)
    spans = spans_in(collector, PENDING)
    assert call(requests_of(spans, "deployments", "web")[0]) == (ADMIN, "create", None)
    assert not [s for s in requests_of(spans, "pods") if call(s)[2] == "binding"]
    wait_until(
        "the deployment-controller to give up on the rollout",
        lambda: (
            "ProgressDeadlineExceeded"
            in jsonpath(
                cluster,
                PENDING,
                "deployment",
                "web",
                path="{.status.conditions[?(@.type=='Progressing')].reason}",
            )
        ),
        60,
        0.5,
    )


def test_replicaset_deleted_by_hand_is_recreated(scenarios: Scenarios) -> None:
    cluster, collector = scenarios.cluster, scenarios.collector
    rolled_out(cluster, RECREATE, 1)
    rs = jsonpath(cluster, RECREATE, "rs", path="{.items[0].metadata.name}")
    old_uid = jsonpath(cluster, RECREATE, "rs", rs, path="{.metadata.uid}")
    cluster.kubectl("delete", "rs", rs, "-n", RECREATE)
    new_uid = wait_until(
        "the deployment-controller to create the ReplicaSet again",
        lambda: (
            (uid := jsonpath(cluster, RECREATE, "rs", rs, path="{.metadata.uid}")) not in ("", old_uid)
            and uid
        ),
        60,
        0.5,
    )
    rolled_out(cluster, RECREATE, 1)

    def arrived(spans: list[SpanRecord]) -> list[SpanRecord] | None:
        calls = requests_of(spans, "replicasets", rs)
        wanted = [(DEPLOYMENT_CONTROLLER, "create", None), (ADMIN, "delete", None)]
        seen = [call(s) for s in calls]
        return calls if all(w in seen for w in wanted) and seen.count(wanted[0]) == 2 else None

    calls = wait_for_spans(collector, RECREATE, "the delete and both creates of the ReplicaSet", arrived)
    order = [call(s) for s in calls if call(s)[1] in ("create", "delete")]
    assert order == [
        (DEPLOYMENT_CONTROLLER, "create", None),
        (ADMIN, "delete", None),
        (DEPLOYMENT_CONTROLLER, "create", None),
    ]
    creates = [s for s in calls if call(s)[1] == "create"]
    assert [s.uid for s in creates] == [old_uid, new_uid]
    wait_until(
        "both incarnations in the store",
        lambda: incarnations(collector, RECREATE, "replicasets", rs) == sorted([old_uid, new_uid]),
        30,
        0.5,
    )


# -- the sample


def record_sample(cluster: ControlPlane, started_us: int) -> None:
    """Write samples/causes/: the scenarios' requests from the apiserver's audit log and their Events."""
    time.sleep(2)  # the log backend writes the last requests a moment after they complete
    target = REPO / "samples" / "causes"
    target.mkdir(exist_ok=True)
    kept = []
    for line in cluster.audit_log.read_bytes().splitlines():
        event = orjson.loads(line)
        if (event.get("objectRef") or {}).get("namespace") not in NAMESPACES:
            continue
        if parse_time_us(event["requestReceivedTimestamp"]) < started_us:
            continue
        kept.append(line)
    (target / "audit.log").write_bytes(b"\n".join(kept) + b"\n")
    events = [
        event
        for namespace in NAMESPACES
        for event in json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json"))["items"]
    ]
    (target / "events.jsonl").write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in events))
