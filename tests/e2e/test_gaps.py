"""Gap markers on a real control plane: a `kelemetry serve` process of this module's own (its own
store and port; the real kube-apiserver's audit webhook pointed at it for the module's duration, then
back at the session's collector) is killed with SIGKILL while kubectl changes a Deployment, then
started again: the Deployment's view carries a gap covering the downtime ("collector restarted"),
the dump prints the sentence and the metrics count it. Then, while it is stopped, etcd is compacted
past the resourceVersion its Events watch saved: on the restart the real apiserver answers 410 Gone,
the watch lists again, and a relist gap is stored and shown on the views of what happened around it.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kelemetry.model.spans import SpanRecord
from kelemetry.store.sqlite import StoreReader
from tests import promtext
from tests.e2e.conftest import Collector, ControlPlane
from tests.e2e.servers import (
    CLUSTER,
    Binaries,
    Server,
    audit_webhook_kubeconfig,
    collector_tls,
    free_port,
    http_ok,
    tls_flags,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.disturbs_cluster]

NAMESPACE = "gaps"
DEPLOYMENT = "survivor"
WEBHOOK_FLAG = "--audit-webhook-config-file="


class GapCollector:
    """A `kelemetry serve` of this module's own, watching the session's cluster with the session
    collector's kubeconfig."""

    def __init__(self, binaries: Binaries, run: Path) -> None:
        run.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.certs = collector_tls(run / "pki")
        self.store = run / "kelemetry.db"
        for stale in run.glob("kelemetry.db*"):
            stale.unlink()
        argv = [
            binaries.kelemetry,
            "serve",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--store",
            self.store,
            "--kubeconfig",
            run.parent / "collector.kubeconfig",
            "--cluster",
            CLUSTER,
            *tls_flags(self.certs),
        ]
        self.server = Server("kelemetry-gaps", argv, run / "kelemetry.log")
        self.webhook = audit_webhook_kubeconfig(
            run / "audit-webhook.kubeconfig", f"{self.url}/audit/{CLUSTER}", self.certs
        )

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server.start()
        wait_until(
            "the gaps collector", lambda: self.server.check_alive() or http_ok(f"{self.url}/healthz"), 30
        )

    def metrics(self) -> dict[str, float]:
        return promtext.samples(httpx.get(f"{self.url}/metrics", timeout=5).text)

    def gaps(self) -> list[SpanRecord]:
        reader = StoreReader(self.store)
        try:
            return reader.gap_spans([CLUSTER], 0, time.time_ns() // 1000 + 60_000_000)
        finally:
            reader.close()

    def view(self, resource: str, name: str) -> dict[str, Any] | None:
        """The default view of an object around now, as the web UI opens it (None until found)."""
        params = {"cluster": CLUSTER, "resource": resource, "namespace": NAMESPACE, "name": name}
        response = httpx.get(
            f"{self.url}/redirect",
            params={**params, "ts": str(time.time_ns() // 1000)},
            timeout=10,
            follow_redirects=False,
        )
        if response.status_code == 404:
            return None
        assert response.status_code == 302, response.text
        view_id = response.headers["location"].removeprefix("/trace/")
        found = httpx.get(f"{self.url}/api/traces/{view_id}", timeout=30)
        assert found.status_code == 200, found.text
        trace: dict[str, Any] = found.json()["data"][0]
        return trace


def point_webhook_at(cluster: ControlPlane, webhook: Path) -> None:
    """Restart the real apiserver with its audit webhook sending to ``webhook``'s server."""
    apiserver = cluster.servers[1]
    apiserver.stop()
    apiserver.argv = [
        f"{WEBHOOK_FLAG}{webhook}" if str(a).startswith(WEBHOOK_FLAG) else a for a in apiserver.argv
    ]
    apiserver.start()
    wait_until(
        "kube-apiserver /readyz after a restart",
        lambda: apiserver.check_alive() or http_ok(f"{cluster.server_url}/readyz", verify=False),
        120,
    )


@pytest.fixture(scope="module")
def gap_collector(binaries: Binaries, cluster: ControlPlane, collector: Collector) -> Iterator[GapCollector]:
    mine = GapCollector(binaries, cluster.run / "gaps")
    session_webhook = next(
        Path(str(a).removeprefix(WEBHOOK_FLAG))
        for a in cluster.servers[1].argv
        if str(a).startswith(WEBHOOK_FLAG)
    )
    point_webhook_at(cluster, mine.webhook)
    try:
        mine.start()
        yield mine
    finally:
        mine.server.stop()
        point_webhook_at(cluster, session_webhook)


def gap_spans(trace: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in trace["spans"] if trace["processes"][s["processID"]]["serviceName"] == "gap"]


def tag_map(span: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span["tags"]}


def root_warnings(trace: dict[str, Any]) -> list[str]:
    root = next(s for s in trace["spans"] if not s["references"])
    return list(root["warnings"] or [])


def test_killing_the_collector_leaves_a_gap_covering_the_downtime(
    cluster: ControlPlane, gap_collector: GapCollector
) -> None:
    cluster.kubectl("create", "namespace", NAMESPACE)
    wait_until(
        "default service account",
        lambda: cluster.kubectl("get", "sa", "default", "-n", NAMESPACE, check=False),
        60,
    )
    cluster.kubectl("create", "deployment", DEPLOYMENT, "-n", NAMESPACE, "--image=nginx:1.27", "--replicas=1")
    wait_until("the Deployment's view", lambda: gap_collector.view("deployments", DEPLOYMENT), 60, 1.0)
    time.sleep(6)  # a heartbeat after the create (one at most every 5 s)
    assert gap_collector.gaps() == []

    killed = time.time_ns() // 1000
    gap_collector.server.kill9()
    cluster.kubectl("scale", "deployment", DEPLOYMENT, "-n", NAMESPACE, "--replicas=3")
    cluster.kubectl("set", "image", f"deployment/{DEPLOYMENT}", "-n", NAMESPACE, "nginx=nginx:1.28")
    time.sleep(15)
    restarted = time.time_ns() // 1000
    gap_collector.start()

    def marked() -> dict[str, Any] | None:
        trace = gap_collector.view("deployments", DEPLOYMENT)
        return trace if trace is not None and gap_spans(trace) else None

    trace = wait_until("a gap on the Deployment's view", marked, 60, 1.0)
    (gap,) = gap_spans(trace)
    tags = tag_map(gap)
    assert tags["gap.reason"] == "restart" and tags["cluster"] == CLUSTER
    # From the last heartbeat before the kill (at most 5 s before it) to the start after it.
    assert killed - 7_000_000 <= tags["gap.start"] <= killed
    assert tags["gap.end"] >= restarted
    assert gap["operationName"] == "collector restarted"
    (warning,) = [w for w in root_warnings(trace) if "collector restarted" in w]
    assert warning.startswith("data may be missing between ")

    # The same gap in the text dump, on the pseudo object of the cluster, and in the metrics.
    dump = subprocess.run(
        [
            str(Path(sys.executable).with_name("kelemetry")),
            "dump",
            "--store",
            str(gap_collector.store),
            "--cluster",
            CLUSTER,
            "--resource",
            "deployments",
            "--namespace",
            NAMESPACE,
            "--name",
            DEPLOYMENT,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"warning: {warning}" in dump.stdout
    (stored,) = [g for g in gap_collector.gaps() if g.tags["gap.reason"] == "restart"]
    assert stored.key.resource == "gaps" and stored.key.name == CLUSTER
    metrics = gap_collector.metrics()
    assert metrics[f'kelemetry_gaps_total{{cluster="{CLUSTER}",reason="restart"}}'] == 1
    assert metrics[f'kelemetry_gap_seconds_total{{cluster="{CLUSTER}",reason="restart"}}'] >= 15


def compact_etcd_past(cluster: ControlPlane, resource_version: int) -> None:
    """Compact the cluster's etcd (through its JSON gateway) at its newest revision, once that is
    past ``resource_version``: a watch resuming from it then meets 410 Gone, as after a long
    disconnection."""
    argv = [str(a) for a in cluster.servers[0].argv]
    url = argv[argv.index("--listen-client-urls") + 1]
    key = base64.b64encode(b"/registry/namespaces/default").decode()

    def head() -> int:
        answer = httpx.post(f"{url}/v3/kv/range", json={"key": key}, timeout=10)
        answer.raise_for_status()
        return int(answer.json()["header"]["revision"])

    # Leases and node heartbeats write every few seconds.
    revision = wait_until(
        "etcd to move past the saved version", lambda: head() > resource_version and head(), 60
    )
    answer = httpx.post(f"{url}/v3/kv/compaction", json={"revision": revision, "physical": True}, timeout=60)
    # The apiserver compacts on its own every 5 minutes; it may have just done so.
    assert answer.status_code == 200 or "compacted" in answer.text, answer.text


def test_a_forced_watch_relist_leaves_a_gap(cluster: ControlPlane, gap_collector: GapCollector) -> None:
    gap_collector.server.stop()
    # While it is stopped, etcd is compacted past the version its Events watch saved: on the restart
    # the watch resumes from a version the real apiserver no longer serves.
    resume = gap_collector.store.with_name(f"{gap_collector.store.name}.events-rv.{CLUSTER}")
    saved = json.loads(resume.read_text())
    assert saved["cluster"] == CLUSTER
    compact_etcd_past(cluster, int(saved["resourceVersion"]))
    gap_collector.start()

    def relisted() -> list[SpanRecord]:
        return [g for g in gap_collector.gaps() if g.tags["gap.reason"] == "relist"]

    (gap,) = wait_until("a relist gap", relisted, 60, 1.0)
    assert gap.tags["gap.detail"] == "watch of events"
    assert gap.end_us >= gap.start_us
    assert gap_collector.metrics()[f'kelemetry_gaps_total{{cluster="{CLUSTER}",reason="relist"}}'] == 1

    # A change right after it: its view says the data around it may be incomplete.
    cluster.kubectl("scale", "deployment", DEPLOYMENT, "-n", NAMESPACE, "--replicas=2")

    def marked() -> list[str] | None:
        trace = gap_collector.view("deployments", DEPLOYMENT)
        if trace is None:
            return None
        found = [w for w in root_warnings(trace) if "watch relisted after 410 Gone (watch of events)" in w]
        return found or None

    wait_until("the relist gap on the Deployment's view", marked, 60, 1.0)
