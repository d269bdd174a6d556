"""The query side on the real control plane: Go Kelemetry's own e2e expectations on our API.

Each scenario is driven with kubectl, then looked up the way the original's harness does it:
``GET /redirect`` with the object and the current time must answer 302 to ``/trace/<id>``; hex
digits 3–10 of the id are replaced by the display mode under test; ``GET /api/traces/<id>`` is
checked with the same assertions as the original's ``validate.jq`` scripts. The last scenario reads
the same traces back from the real Jaeger through ``kelemetry frontend --jaeger-url``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Collector, ControlPlane, Jaeger
from tests.e2e.servers import CLUSTER, Binaries, Server, free_port, http_ok, wait_until
from tests.e2e.test_deployment import DEPLOYMENT_CONTROLLER, lifecycle, rollout
from tests.jaegerjson import children_of, fields, root_of, tags

pytestmark = pytest.mark.e2e


def now_rfc3339() -> str:
    return datetime.now(tz=UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def redirect_id(base_url: str, params: dict[str, str]) -> str | None:
    """The trace id /redirect sends the browser to, or None while it is not found yet."""
    response = httpx.get(f"{base_url}/redirect", params={**params, "ts": now_rfc3339()}, timeout=10)
    if response.status_code == 404:
        return None
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith("/trace/")
    return location.removeprefix("/trace/")


def with_mode(trace_id: str, mode: str) -> str:
    """What the original's harness does: keep ``ff``, put the mode in hex digits 3–10."""
    return f"ff{mode}{trace_id[10:]}"


def fetch(base_url: str, trace_id: str) -> dict[str, Any]:
    response = httpx.get(f"{base_url}/api/traces/{trace_id}", timeout=30)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def poll_view(
    base_url: str, params: dict[str, str], mode: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    def attempt() -> dict[str, Any] | None:
        found = redirect_id(base_url, params)
        if found is None:
            return None
        trace = fetch(base_url, with_mode(found, mode))["data"][0]
        return trace if done(trace) else None

    result: dict[str, Any] = wait_until(f"the {mode} view of {params['name']}", attempt, 90, 1.0)
    return result


def deployment_done(trace: dict[str, Any]) -> bool:
    root = next(s for s in trace["spans"] if not s["references"])
    audits = [fields(log).get("audit", "") for log in root["logs"]]
    replicasets = [s for s in children_of(trace, root["spanID"]) if tags(s).get("resource") == "replicasets"]
    return any(a.endswith(" delete") for a in audits) and len(replicasets) == 2


def check_deployment(trace: dict[str, Any], name: str) -> None:
    """The assertions of Go Kelemetry's e2e/deployment/validate.jq, on our JSON."""
    root = root_of(trace)
    root_tags = tags(root)
    assert root_tags["resource"] == "deployments" and root_tags["name"] == name
    logs = [fields(log) for log in root["logs"]]
    deletes = [log for log in logs if str(log.get("audit", "")).endswith(" delete")]
    assert deletes, "no delete log on the root"
    for log in deletes:
        assert json.loads(log["snapshot"])["metadata"]["name"] == name
    # The original's kwok cluster updates status as kwok-admin; a real controller-manager uses the
    # deployment controller's service account.
    assert any(log.get("audit") == f"{DEPLOYMENT_CONTROLLER} update status" for log in logs)
    diffs = [str(log["diff"]) for log in logs if "diff" in log]
    assert any("status.observedGeneration 1 -> 2" in diff for diff in diffs)
    every_diff = [str(fields(log).get("diff", "")) for span in trace["spans"] for log in span["logs"]]
    assert not any("metadata.managedFields" in diff for diff in every_diff)
    assert len(children_of(trace, root["spanID"])) == 2


@pytest.fixture(scope="module")
def compat_deployment(cluster: ControlPlane, collector: Collector) -> Iterator[str]:
    lifecycle(cluster, "default", "compat")
    yield "compat"


DEPLOYMENT_SEARCH = {
    "cluster": CLUSTER,
    "group": "apps",
    "resource": "deployments",
    "namespace": "default",
}


def test_original_deployment_expectations(collector: Collector, compat_deployment: str) -> None:
    params = {**DEPLOYMENT_SEARCH, "name": compat_deployment}
    trace = poll_view(collector.url, params, "21000000", deployment_done)
    check_deployment(trace, compat_deployment)

    # The default mode (tracing, the full tree) is what /redirect itself names.
    trace_id = redirect_id(collector.url, params)
    assert trace_id is not None and trace_id[2:10] == "21000000"
    full = fetch(collector.url, trace_id)["data"][0]
    assert len(full["spans"]) > 1
    alone = fetch(collector.url, with_mode(trace_id, "20000000"))["data"][0]
    assert len(alone["spans"]) == 1
    # tree [full tree]: requests are spans of their own, under their objects.
    tree = fetch(collector.url, with_mode(trace_id, "01000000"))["data"][0]
    root = root_of(tree)
    sources = {tags(s).get("kelemetry.trace_source") for s in children_of(tree, root["spanID"])}
    assert {"object", "audit", "event"} <= sources


def test_original_ancestors_expectations(cluster: ControlPlane, collector: Collector) -> None:
    name = "ancestors"
    cluster.kubectl("create", "deployment", name, "-n", "default", "--image=nginx:1.27", "--replicas=2")
    rollout(cluster, "default", name, 2)
    first_rs = cluster.kubectl(
        "get", "rs", "-n", "default", "-l", f"app={name}", "-o", "jsonpath={.items[0].metadata.name}"
    )
    assert first_rs.startswith(f"{name}-")
    cluster.kubectl("set", "image", f"deployment/{name}", "-n", "default", "nginx=nginx:1.28")
    rollout(cluster, "default", name, 2)
    cluster.kubectl("delete", "deployment", name, "-n", "default", "--wait=true")

    params = {
        "cluster": CLUSTER,
        "group": "apps",
        "resource": "replicasets",
        "namespace": "default",
        "name": first_rs,
    }

    def done(trace: dict[str, Any]) -> bool:
        root = next(s for s in trace["spans"] if not s["references"])
        return tags(root).get("resource") == "deployments"

    trace = poll_view(collector.url, params, "22000000", done)
    root = root_of(trace)
    assert tags(root)["resource"] == "deployments" and tags(root)["name"] == name
    children = children_of(trace, root["spanID"])
    assert len(children) == 1
    assert tags(children[0])["name"] == first_rs


def test_frontend_reads_the_same_traces_back_from_jaeger(
    binaries: Binaries, collector: Collector, jaeger: Jaeger, compat_deployment: str, tmp_path: Any
) -> None:
    port = free_port()
    server = Server(
        "kelemetry-frontend",
        [
            binaries.kelemetry,
            "frontend",
            "--listen",
            f"127.0.0.1:{port}",
            "--jaeger-url",
            jaeger.api,
            "--views",
            tmp_path / "views.db",
        ],
        tmp_path / "frontend.log",
    )
    server.start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until("kelemetry frontend", lambda: server.check_alive() or http_ok(f"{url}/healthz"), 30)
        params = {**DEPLOYMENT_SEARCH, "name": compat_deployment}
        from_store = poll_view(collector.url, params, "21000000", deployment_done)
        from_jaeger = poll_view(url, params, "21000000", deployment_done)
        check_deployment(from_jaeger, compat_deployment)

        def summary(trace: dict[str, Any]) -> tuple[set[str], set[str]]:
            root = root_of(trace)
            audits = {str(fields(log).get("auditId")) for log in root["logs"] if "auditId" in fields(log)}
            children = {tags(s)["name"] for s in children_of(trace, root["spanID"])}
            return audits, children

        deadline = time.monotonic() + 60
        while summary(from_jaeger) != summary(from_store) and time.monotonic() < deadline:
            time.sleep(1)
            from_jaeger = poll_view(url, params, "21000000", deployment_done)
        assert summary(from_jaeger) == summary(from_store)
        clusters = httpx.get(f"{url}/api/kelemetry/clusters", timeout=10).json()["data"]
        assert CLUSTER in clusters
    finally:
        server.stop()
