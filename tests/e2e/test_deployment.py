"""End-to-end scenarios on a real control plane, driven with kubectl as a user would.

The collector under test is the real `kelemetry serve` process receiving kube-apiserver's audit
webhook and exporting OTLP to a real Jaeger v2. Traces are checked in our store (through the same
assembly `kelemetry dump` uses) and through Jaeger's own query API.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from frontend.types import AssembledTrace, ObjectQuery, SpanNode
from kelemetry.errors import NotFound
from kelemetry.model.events import TraceSource
from kelemetry.model.times import parse_time_us
from kelemetry.store.sqlite import StoreReader
from tests.e2e.conftest import Collector, ControlPlane, Jaeger
from tests.e2e.servers import CLUSTER, REPO, wait_until
from tests.lookups import assemble

pytestmark = pytest.mark.e2e

ADMIN = "admin"
DEPLOYMENT_CONTROLLER = "system:serviceaccount:kube-system:deployment-controller"
REPLICASET_CONTROLLER = "system:serviceaccount:kube-system:replicaset-controller"
SCHEDULER = "system:kube-scheduler"


def trace_of(collector: Collector, resource: str, namespace: str, name: str) -> AssembledTrace:
    reader = StoreReader(collector.store)
    try:
        return assemble(
            reader, ObjectQuery(cluster=CLUSTER, resource=resource, namespace=namespace, name=name)
        )
    finally:
        reader.close()


def objects(trace: AssembledTrace) -> list[SpanNode]:
    return [n for n in trace.walk() if n.span.source is TraceSource.OBJECT]


def requests(node: SpanNode) -> list[dict[str, Any]]:
    return [c.span.tags for c in node.children if c.span.source is TraceSource.AUDIT]


def wait_for_trace(
    collector: Collector, resource: str, namespace: str, name: str, check: Any, timeout: float = 60
) -> AssembledTrace:
    def attempt() -> AssembledTrace | None:
        try:
            trace = trace_of(collector, resource, namespace, name)
        except NotFound:
            return None
        return trace if check(trace) else None

    result: AssembledTrace = wait_until(
        f"the trace of {resource}/{name} to be complete", attempt, timeout, 0.5
    )
    return result


def rollout(cluster: ControlPlane, namespace: str, name: str, replicas: int) -> None:
    wait_until(
        f"deployment {name} to have {replicas} available pods",
        lambda: (
            cluster.kubectl(
                "get",
                "deployment",
                name,
                "-n",
                namespace,
                "-o",
                "jsonpath={.status.availableReplicas}/{.status.updatedReplicas}",
                check=False,
            )
            == f"{replicas}/{replicas}"
        ),
        90,
        0.5,
    )


def lifecycle(cluster: ControlPlane, namespace: str, name: str) -> None:
    """create with 2 replicas, scale to 4, change the image, scale to 2, delete."""
    if namespace != "default":
        cluster.kubectl("create", "namespace", namespace)
        wait_until(
            "the namespace's default service account",
            lambda: cluster.kubectl("get", "sa", "default", "-n", namespace, check=False),
            60,
        )
    cluster.kubectl("create", "deployment", name, "-n", namespace, "--image=nginx:1.27", "--replicas=2")
    rollout(cluster, namespace, name, 2)
    cluster.kubectl("scale", "deployment", name, "-n", namespace, "--replicas=4")
    rollout(cluster, namespace, name, 4)
    cluster.kubectl("set", "image", f"deployment/{name}", "-n", namespace, "nginx=nginx:1.28")
    rollout(cluster, namespace, name, 4)
    cluster.kubectl("scale", "deployment", name, "-n", namespace, "--replicas=2")
    rollout(cluster, namespace, name, 2)
    cluster.kubectl("delete", "deployment", name, "-n", namespace, "--wait=true")


def complete_lifecycle(trace: AssembledTrace) -> bool:
    root = trace.root
    verbs = {(t.get("audit.user"), t.get("audit.verb"), t.get("audit.subresource")) for t in requests(root)}
    replicasets = [c for c in root.children if c.span.key.resource == "replicasets"]
    return (ADMIN, "delete", None) in verbs and len(replicasets) == 2


def record_sample(audit_log: Path, namespace: str, since_us: int) -> None:
    """Keep the scenario's part of the apiserver's audit log as samples/deployment/audit.log."""
    target = REPO / "samples" / "deployment" / "audit.log"
    kept = []
    for line in audit_log.read_bytes().splitlines():
        event = orjson.loads(line)
        if (event.get("objectRef") or {}).get("namespace") != namespace:
            continue
        if parse_time_us(event["requestReceivedTimestamp"]) < since_us:
            continue
        kept.append(line)
    target.write_bytes(b"\n".join(kept) + b"\n")


def test_deployment_lifecycle(cluster: ControlPlane, collector: Collector) -> None:
    started_us = time.time_ns() // 1000 - 1_000_000
    lifecycle(cluster, "default", "demo")
    trace = wait_for_trace(collector, "deployments", "default", "demo", complete_lifecycle)
    root = trace.root
    assert root.span.key.display == "deployments.apps/demo" and root.span.kind == "Deployment"

    calls = {(t.get("audit.user"), t.get("audit.verb"), t.get("audit.subresource")) for t in requests(root)}
    assert (ADMIN, "create", None) in calls
    assert (ADMIN, "patch", "scale") in calls or (ADMIN, "update", "scale") in calls
    assert (ADMIN, "patch", None) in calls  # kubectl set image
    assert (ADMIN, "delete", None) in calls
    assert (DEPLOYMENT_CONTROLLER, "update", "status") in calls

    replicasets = [c for c in root.children if c.span.key.resource == "replicasets"]
    assert len(replicasets) == 2
    pods = []
    for rs in replicasets:
        assert rs.span.kind == "ReplicaSet"
        rs_calls = {(t.get("audit.user"), t.get("audit.verb")) for t in requests(rs)}
        assert (DEPLOYMENT_CONTROLLER, "create") in rs_calls
        rs_pods = [c for c in rs.children if c.span.key.resource == "pods"]
        assert rs_pods, f"{rs.span.key.name} has no pods"
        pods.extend(rs_pods)
    assert len(pods) >= 4
    for pod in pods:
        pod_calls = {
            (t.get("audit.user"), t.get("audit.verb"), t.get("audit.subresource")) for t in requests(pod)
        }
        assert (REPLICASET_CONTROLLER, "create", None) in pod_calls
        assert (SCHEDULER, "create", "binding") in pod_calls

    def has_events(trace: AssembledTrace) -> bool:
        root = trace.root
        reasons = {c.span.name for c in root.children if c.span.source is TraceSource.EVENT}
        rs_reasons = {
            c.span.name
            for rs in root.children
            if rs.span.key.resource == "replicasets"
            for c in rs.children
            if c.span.source is TraceSource.EVENT
        }
        pod_reasons = {
            c.span.name
            for n in trace.walk()
            if n.span.key.resource == "pods"
            for c in n.children
            if c.span.source is TraceSource.EVENT
        }
        return (
            "ScalingReplicaSet" in reasons
            and {"SuccessfulCreate", "SuccessfulDelete"} <= rs_reasons
            and "Scheduled" in pod_reasons
        )

    trace = wait_for_trace(collector, "deployments", "default", "demo", has_events)
    logs = [(log.kind, log.message, node.span) for node in trace.walk() for log in node.span.logs]
    status_diffs = [
        message
        for kind, message, span in logs
        if kind == "diff"
        and span.key.resource == "deployments"
        and span.tags.get("audit.subresource") == "status"
    ]
    assert any("status.observedGeneration 1 -> 2" in diff.split("\n") for diff in status_diffs)
    snapshots = [
        json.loads(m) for k, m, span in logs if k == "snapshot" and span.key.resource == "deployments"
    ]
    assert [s["metadata"]["name"] for s in snapshots] == ["demo"]
    assert all("managedFields" not in message for _kind, message, _span in logs)
    scaling = [c.span for c in trace.root.children if c.span.name == "ScalingReplicaSet"]
    assert all(s.tags["event.source"] == "deployment-controller" for s in scaling)
    assert any("Scaled up replica set demo-" in log.message for s in scaling for log in s.logs)
    if os.environ.get("KELEMETRY_RECORD"):
        time.sleep(2)  # the log backend writes the last requests a moment after they complete
        record_sample(cluster.audit_log, "default", started_us)
        events = json.loads(cluster.kubectl("get", "events", "-n", "default", "-o", "json"))["items"]
        (REPO / "samples" / "deployment" / "events.jsonl").write_text(
            "".join(json.dumps(e, sort_keys=True) + "\n" for e in events)
        )


def test_pod_lookup_leads_to_the_deployment_hierarchy(cluster: ControlPlane, collector: Collector) -> None:
    namespace = "lookup"
    cluster.kubectl("create", "namespace", namespace)
    wait_until(
        "default service account",
        lambda: cluster.kubectl("get", "sa", "default", "-n", namespace, check=False),
        60,
    )
    cluster.kubectl("create", "deployment", "web", "-n", namespace, "--image=nginx:1.27", "--replicas=2")
    rollout(cluster, namespace, "web", 2)
    pod = cluster.kubectl("get", "pods", "-n", namespace, "-o", "jsonpath={.items[0].metadata.name}")
    trace = wait_for_trace(
        collector,
        "pods",
        namespace,
        pod,
        lambda t: t.root.span.key.resource == "deployments" and len(objects(t)) >= 4,
    )
    assert trace.root.span.key.name == "web"
    assert trace.target.key.name == pod
    chain = [n.span.key.resource for n in objects(trace)]
    assert chain[:2] == ["deployments", "replicasets"] and chain.count("pods") == 2


def jaeger_traces(jaeger: Jaeger, service: str, tags: dict[str, str]) -> list[dict[str, Any]]:
    now = time.time_ns() // 1000
    response = httpx.get(
        f"{jaeger.api}/api/traces",
        params={
            "service": service,
            "tags": json.dumps(tags),
            "start": now - 3600 * 10**6 * 24,
            "end": now,
            "limit": 50,
        },
        timeout=10,
    )
    response.raise_for_status()
    data: list[dict[str, Any]] = response.json()["data"] or []
    return data


def test_trace_is_found_through_jaegers_own_api(
    cluster: ControlPlane, collector: Collector, jaeger: Jaeger
) -> None:
    namespace = "jaegerapi"
    cluster.kubectl("create", "namespace", namespace)
    wait_until(
        "default service account",
        lambda: cluster.kubectl("get", "sa", "default", "-n", namespace, check=False),
        60,
    )
    cluster.kubectl("create", "deployment", "api", "-n", namespace, "--image=nginx:1.27", "--replicas=1")
    rollout(cluster, namespace, "api", 1)
    pod = cluster.kubectl("get", "pods", "-n", namespace, "-o", "jsonpath={.items[0].metadata.name}")

    def hierarchy() -> dict[str, Any] | None:
        # Events (from the watch) can place the objects before the batched audit stream brings the
        # requests: wait for both.
        for trace in jaeger_traces(jaeger, "object", {"name": pod}):
            names = {s["operationName"] for s in trace["spans"]}
            pod_ids = {s["spanID"] for s in trace["spans"] if s["operationName"] == f"pods/{pod}"}
            pod_audit = [
                s
                for s in trace["spans"]
                if trace["processes"][s["processID"]]["serviceName"] == "audit"
                and any(ref["spanID"] in pod_ids for ref in s["references"])
            ]
            if (
                {"deployments.apps/api", f"pods/{pod}"} <= names
                and any(s["operationName"].startswith("replicasets.apps/api-") for s in trace["spans"])
                and pod_audit
            ):
                return trace
        return None

    trace = wait_until("Jaeger to hold the Deployment → ReplicaSet → Pod trace", hierarchy, 60, 1.0)
    spans = {s["spanID"]: s for s in trace["spans"]}
    pod_span = next(s for s in trace["spans"] if s["operationName"] == f"pods/{pod}")
    rs_span = spans[pod_span["references"][0]["spanID"]]
    deploy_span = spans[rs_span["references"][0]["spanID"]]
    assert rs_span["operationName"].startswith("replicasets.apps/api-")
    assert deploy_span["operationName"] == "deployments.apps/api" and not deploy_span["references"]
    services = {trace["processes"][s["processID"]]["serviceName"] for s in trace["spans"]}
    assert {"object", "audit"} <= services
    audit = [s for s in trace["spans"] if trace["processes"][s["processID"]]["serviceName"] == "audit"]
    assert any(s["references"][0]["spanID"] == pod_span["spanID"] for s in audit)


def qualifying_audit_ids(audit_log: Path, namespace: str) -> set[str]:
    """Audit IDs of the mutating, completed requests on objects in ``namespace`` that the apiserver logged."""
    ids = set()
    for line in audit_log.read_bytes().splitlines():
        event = orjson.loads(line)
        ref = event.get("objectRef") or {}
        if (
            event.get("stage") == "ResponseComplete"
            and event.get("verb") in ("create", "update", "patch", "delete", "deletecollection")
            and ref.get("namespace") == namespace
            and ref.get("resource") not in ("events", "leases")
        ):
            ids.add(event["auditID"])
    return ids


def stored_audit_ids(collector: Collector) -> list[str]:
    reader = StoreReader(collector.store)
    try:
        return [str(s.tags["audit.id"]) for s in reader.all_spans() if s.source is TraceSource.AUDIT]
    finally:
        reader.close()


def test_crash_safety_kill_9_mid_scenario(cluster: ControlPlane, collector: Collector) -> None:
    namespace = "crash"
    cluster.kubectl("create", "namespace", namespace)
    wait_until(
        "default service account",
        lambda: cluster.kubectl("get", "sa", "default", "-n", namespace, check=False),
        60,
    )
    cluster.kubectl("create", "deployment", "victim", "-n", namespace, "--image=nginx:1.27", "--replicas=3")
    collector.kill9()
    cluster.kubectl("scale", "deployment", "victim", "-n", namespace, "--replicas=5")
    time.sleep(1)
    collector.start()
    rollout(cluster, namespace, "victim", 5)
    collector.kill9()
    collector.start()
    cluster.kubectl("delete", "deployment", "victim", "-n", namespace, "--wait=true")
    wait_until(
        "the apiserver's audit log to show the delete",
        lambda: (
            b'"victim"' in cluster.audit_log.read_bytes()
            and qualifying_audit_ids(cluster.audit_log, namespace)
        ),
        30,
    )
    time.sleep(3)  # let the log backend and the webhook catch up with the last requests
    expected = qualifying_audit_ids(cluster.audit_log, namespace)
    assert len(expected) > 10

    def all_stored() -> bool:
        stored = stored_audit_ids(collector)
        return expected <= set(stored)

    wait_until("every audit ID the apiserver sent to be stored", all_stored, 90, 1.0)
    stored = stored_audit_ids(collector)
    duplicates = {i for i in expected if stored.count(i) != 1}
    assert not duplicates


def test_jaeger_down_then_back(cluster: ControlPlane, collector: Collector, jaeger: Jaeger) -> None:
    namespace = "jaegerdown"
    cluster.kubectl("create", "namespace", namespace)
    wait_until(
        "default service account",
        lambda: cluster.kubectl("get", "sa", "default", "-n", namespace, check=False),
        60,
    )
    jaeger.stop()
    try:
        cluster.kubectl(
            "create", "deployment", "later", "-n", namespace, "--image=nginx:1.27", "--replicas=1"
        )
        rollout(cluster, namespace, "later", 1)
        wait_for_trace(
            collector,
            "deployments",
            namespace,
            "later",
            lambda t: any(n.span.key.resource == "pods" for n in objects(t)),
        )
        # The exporter's own retries take a while to give up on a batch; then it counts a failure
        # and the spans keep waiting in the store.
        wait_until(
            "the collector to notice that Jaeger is down",
            lambda: collector.metrics().get("kelemetry_otlp_export_failures_total", 0) >= 1,
            60,
            0.5,
        )
    finally:
        jaeger.start()
    pod = cluster.kubectl("get", "pods", "-n", namespace, "-o", "jsonpath={.items[0].metadata.name}")

    def arrived() -> bool:
        return any(
            {"deployments.apps/later", f"pods/{pod}"} <= {s["operationName"] for s in t["spans"]}
            for t in jaeger_traces(jaeger, "object", {"name": pod})
        )

    wait_until("the spans made while Jaeger was down to arrive", arrived, 90, 1.0)


def test_events_keep_flowing_after_an_apiserver_restart(cluster: ControlPlane, collector: Collector) -> None:
    namespace = "restart"
    cluster.restart_apiserver()
    cluster.kubectl("create", "namespace", namespace)
    wait_until(
        "default service account",
        lambda: cluster.kubectl("get", "sa", "default", "-n", namespace, check=False),
        60,
    )
    cluster.kubectl("create", "deployment", "after", "-n", namespace, "--image=nginx:1.27", "--replicas=1")
    rollout(cluster, namespace, "after", 1)
    trace = wait_for_trace(
        collector,
        "deployments",
        namespace,
        "after",
        lambda t: any(c.span.name == "ScalingReplicaSet" for c in t.root.children),
        90,
    )
    assert trace.root.span.key.name == "after"
    assert collector.metrics().get("kelemetry_events_watch_reconnects_total", 0) >= 1


SECRET_CANARIES = ("kelemetry-canary-4f1d2e", "kelemetry-canary-second-9b7c")


def secret_needles() -> list[str]:
    import base64

    return [*SECRET_CANARIES, *(base64.b64encode(c.encode()).decode() for c in SECRET_CANARIES)]


def test_secret_canary_appears_nowhere(
    cluster: ControlPlane, collector: Collector, jaeger: Jaeger, tmp_path: Path
) -> None:
    from kelemetry import cli

    namespace = "secret"
    cluster.restart_apiserver(REPO / "samples" / "apiserver" / "audit-policy-secret-bodies.yaml")
    try:
        started_us = time.time_ns() // 1000 - 1_000_000
        cluster.kubectl("create", "namespace", namespace)
        cluster.kubectl(
            "create",
            "secret",
            "generic",
            "db",
            "-n",
            namespace,
            f"--from-literal=password={SECRET_CANARIES[0]}",
            "--from-literal=user=admin",
        )
        cluster.kubectl(
            "patch",
            "secret",
            "db",
            "-n",
            namespace,
            "-p",
            json.dumps({"stringData": {"password": SECRET_CANARIES[1]}}),
        )
        cluster.kubectl("delete", "secret", "db", "-n", namespace)

        def complete(trace: AssembledTrace) -> bool:
            kinds = {log.kind for n in trace.walk() for log in n.span.logs}
            return {"diff", "snapshot"} <= kinds

        trace = wait_for_trace(collector, "secrets", namespace, "db", complete)
        diffs = [log.message for n in trace.walk() for log in n.span.logs if log.kind == "diff"]
        assert "data.password <redacted> -> <redacted>" in diffs
        if os.environ.get("KELEMETRY_RECORD"):
            time.sleep(2)
            target = REPO / "samples" / "secret" / "audit.log"
            target.parent.mkdir(exist_ok=True)
            kept = [
                line
                for line in cluster.audit_log.read_bytes().splitlines()
                if (orjson.loads(line).get("objectRef") or {}).get("namespace") == namespace
                and parse_time_us(orjson.loads(line)["requestReceivedTimestamp"]) >= started_us
            ]
            target.write_bytes(b"\n".join(kept) + b"\n")
    finally:
        cluster.restart_apiserver()

    def in_jaeger() -> list[dict[str, Any]]:
        return [t for service in ("object", "audit") for t in jaeger_traces(jaeger, service, {"name": "db"})]

    wait_until("the Secret's spans in Jaeger", in_jaeger, 60, 1.0)
    outputs: dict[str, bytes] = {"Jaeger's API output": json.dumps(in_jaeger()).encode()}
    for path in collector.store.parent.glob("kelemetry.db*"):
        outputs[path.name] = path.read_bytes()
    outputs["the collector's log"] = collector.server.log_path.read_bytes()
    for fmt in ("tree", "json", "jsonl", "parquet"):
        target = tmp_path / f"dump.{fmt}"
        code = cli.main(
            [
                "dump",
                "--store",
                str(collector.store),
                "--cluster",
                CLUSTER,
                "--resource",
                "secrets",
                "--namespace",
                namespace,
                "--name",
                "db",
                "--format",
                fmt,
                "--output",
                str(target),
            ]
        )
        assert code == 0
        outputs[f"the {fmt} dump"] = target.read_bytes()
    for where, blob in outputs.items():
        for needle in secret_needles():
            assert needle.encode() not in blob, f"{needle} leaked into {where}"


WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}
                        },
                    }
                },
            }
        ],
    },
}


def widget(size: int) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "gear"},
        "spec": {"size": size},
    }


def test_without_audit_the_watch_still_gives_hierarchy_events_and_diffs(
    cluster: ControlPlane, collector: Collector, run_dir: Path, binaries: Any
) -> None:
    from tests.e2e.servers import Server, free_port, http_ok

    # A second collector that gets no audit webhook at all: only what it watches.
    port = free_port()
    store = run_dir / "noaudit.db"
    for stale in run_dir.glob("noaudit.db*"):
        stale.unlink()
    server = Server(
        "kelemetry-noaudit",
        [
            binaries.kelemetry,
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--store",
            store,
            "--cluster",
            CLUSTER,
            "--kubeconfig",
            run_dir / "collector.kubeconfig",
            "--change-grace",
            "1s",
        ],
        run_dir / "kelemetry-noaudit.log",
    ).start()
    try:
        wait_until(
            "the audit-less collector",
            lambda: server.check_alive() or http_ok(f"http://127.0.0.1:{port}/healthz"),
            30,
        )
        namespace = "noaudit"
        time.sleep(2)  # let the watches finish their initial lists
        lifecycle(cluster, namespace, "quiet")  # the same scenario as test_deployment_lifecycle

        def complete(trace: AssembledTrace) -> bool:
            root = trace.root
            kinds = {c.span.source for c in root.children}
            pods = [
                n
                for n in trace.walk()
                if n.span.key.resource == "pods" and n.span.source is TraceSource.OBJECT
            ]
            diffs = [log.message for n in trace.walk() for log in n.span.logs if log.kind == "diff"]
            replicasets = [c for c in root.children if c.span.key.resource == "replicasets"]
            return (
                TraceSource.EVENT in kinds
                and TraceSource.CHANGE in kinds
                and len(pods) >= 4
                and len(replicasets) == 2
                and any("spec.replicas 2 -> 4" in d.split("\n") for d in diffs)
                and any(log.kind == "snapshot" for c in root.children for log in c.span.logs)
            )

        def attempt() -> AssembledTrace | None:
            reader = StoreReader(store)
            try:
                trace = assemble(
                    reader,
                    ObjectQuery(cluster=CLUSTER, resource="deployments", namespace=namespace, name="quiet"),
                )
            except NotFound:
                return None
            finally:
                reader.close()
            return trace if complete(trace) else None

        trace = wait_until("a trace built from watches and Events alone", attempt, 90, 1.0)

        # Objects of a CustomResourceDefinition installed after the collector started are watched too.
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps(WIDGET_CRD))
        wait_until(
            "the Widget CRD to be served",
            lambda: (
                cluster.kubectl(
                    "get",
                    "crd",
                    "widgets.example.com",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type=='Established')].status}",
                    check=False,
                )
                == "True"
            ),
            60,
        )
        time.sleep(12)  # the collector looks for new CRDs every 10 s
        cluster.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(widget(1)))
        time.sleep(1)
        cluster.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(widget(5)))

        def widget_changed() -> bool:
            reader = StoreReader(store)
            try:
                spans = reader.all_spans()
            finally:
                reader.close()
            return any(
                s.key.resource == "widgets"
                and s.source is TraceSource.CHANGE
                and any("spec.size 1 -> 5" in log.message.split("\n") for log in s.logs)
                for s in spans
            )

        wait_until("the Widget change from its watch", widget_changed, 60, 1.0)
        assert trace.root.span.key.resource == "deployments"
        replicasets = [c for c in trace.root.children if c.span.key.resource == "replicasets"]
        assert len(replicasets) == 2 and all(rs.span.source is TraceSource.OBJECT for rs in replicasets)
        assert not any(n.span.source is TraceSource.AUDIT for n in trace.walk())
    finally:
        server.stop()
