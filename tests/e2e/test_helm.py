"""The Helm chart on a real control plane: lint, render, validate server-side, and run it.

helm (v3.18.4, built from the Go module proxy) lints and renders the chart with default and other
values; kube-apiserver validates every rendered object (`kubectl apply --dry-run=server`). Then the
chart's collector runs for real: the rendered RBAC objects, ServiceAccount, token Secret and
ConfigMaps are created in the cluster, the Pod's volumes are filled on the host the way the kubelet
would fill them (ConfigMaps and Secrets as files, a TokenRequest token of the chart's ServiceAccount,
the cluster's kube-root-ca.crt, empty directories for the store and /tmp), and the container's
command line runs with its environment, only its paths moved under a temporary folder (and the
chart's `cluster.apiServer` set to the apiserver's loopback address, as no cluster DNS resolves
kubernetes.default.svc here). This module's own control plane runs a kube-apiserver with the audit
policy and webhook kubeconfig the chart renders (https, the token read from a file), so its audit
webhook reaches that collector. A Deployment lifecycle driven with kubectl must come out as
one trace, with the Events watch, the object watches and discovery working on the ServiceAccount's
permissions alone (no 403 anywhere), while the ServiceAccount cannot read Secrets or write.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import yaml

from frontend.types import AssembledTrace, ObjectQuery
from kelemetry.connection import parse_watch_target
from kelemetry.errors import NotFound
from tests.chart import CHART, FULLNAME, NAMESPACE, RELEASE, SCALED_VALUES, documents, find, render, run_helm
from tests.e2e.conftest import SERVERS, ControlPlane
from tests.e2e.servers import Binaries, Server, collector_tls, free_port, http_ok, wait_until
from tests.e2e.test_deployment import ADMIN, DEPLOYMENT_CONTROLLER, complete_lifecycle, lifecycle, requests
from tests.lookups import assemble

pytestmark = pytest.mark.e2e

HELM_CLUSTER = "helmtest"
SERVICE_ACCOUNT = f"system:serviceaccount:{NAMESPACE}:{FULLNAME}"
TLS_SECRET = "kelemetry-tls"
# Other values than the defaults in every part that renders differently; the live run uses them.
OTHER_VALUES: dict[str, Any] = {
    "cluster": {"name": HELM_CLUSTER},
    "tls": {"enabled": True, "secretName": TLS_SECRET},
    "store": {"retention": "2d", "maxSize": "2GB", "minFreeSpace": "64MB", "persistence": {"size": "5Gi"}},
    "trace": {"window": "1h", "cacheSize": "64MiB", "redact": ["configmaps:data"]},
    "token": {"publicQuery": True},
    "serviceMonitor": {"enabled": True},
    "service": {"type": "NodePort"},
}


class ChartCollector:
    """The chart's container run on the host: its rendered command line, env and volumes."""

    def __init__(self, docs: list[dict[str, Any]], root: Path, plane: ControlPlane) -> None:
        self.docs = docs
        self.root = root
        self.plane = plane
        pod = find(docs, "Deployment")["spec"]["template"]["spec"]
        (self.container,) = pod["containers"]
        self.volumes = {v["name"]: v for v in pod["volumes"]}
        self.mounts = {m["mountPath"]: m for m in self.container["volumeMounts"]}

    def host_path(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def mapped(self, text: str) -> str:
        """Paths inside the Pod → where they are on the host, in an argument, a variable's value or
        a mounted file (the chart's kubeconfig names the token and CA files); the rest as it is."""
        mounts = "|".join(re.escape(m.rstrip("/")) for m in sorted(self.mounts, key=len, reverse=True))
        return re.sub(rf"(?<![\w/.-])({mounts})(?=/|$|\s)", lambda m: str(self.host_path(m[1])), text)

    def rendered(self, kind: str, name: str) -> dict[str, Any] | None:
        found = [d for d in self.docs if d["kind"] == kind and d["metadata"]["name"] == name]
        return found[0] if found else None

    def live(self, kind: str, name: str) -> dict[str, Any]:
        """An object the chart refers to but does not render (kube-root-ca.crt, the TLS Secret)."""
        text = self.plane.kubectl("get", kind, name, "-n", NAMESPACE, "-o", "json")
        document: dict[str, Any] = json.loads(text)
        return document

    def files_of(self, kind: str, name: str) -> dict[str, bytes]:
        obj = self.rendered(kind, name) or self.live(kind, name)
        if kind == "Secret":
            return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        return {k: v.encode() for k, v in (obj.get("data") or {}).items()}

    def fill_volumes(self, service_account_token: str) -> None:
        for path, mount in self.mounts.items():
            folder = self.host_path(path)
            folder.mkdir(parents=True, exist_ok=True)
            volume = self.volumes[mount["name"]]
            if "configMap" in volume:
                files = self.files_of("ConfigMap", volume["configMap"]["name"])
            elif "secret" in volume:
                files = self.files_of("Secret", volume["secret"]["secretName"])
            elif "projected" in volume:
                files = {}
                for source in volume["projected"]["sources"]:
                    if "serviceAccountToken" in source:
                        files[source["serviceAccountToken"]["path"]] = service_account_token.encode()
                    else:
                        data = self.files_of("ConfigMap", source["configMap"]["name"])
                        for item in source["configMap"]["items"]:
                            files[item["path"]] = data[item["key"]]
            else:
                assert set(volume) & {"emptyDir", "persistentVolumeClaim"}, volume
                files = {}
            for name, content in files.items():
                if "configMap" in volume:
                    content = self.mapped(content.decode()).encode()
                (folder / name).write_bytes(content)

    def environment(self) -> dict[str, str]:
        env = {}
        for var in self.container["env"]:
            if "value" in var:
                env[var["name"]] = self.mapped(var["value"])
            else:
                ref = var["valueFrom"]["secretKeyRef"]
                env[var["name"]] = self.files_of("Secret", ref["name"])[ref["key"]].decode()
        return env

    def argv(self, binaries: Binaries) -> list[str]:
        command = [*self.container["command"], *self.container["args"]]
        assert command[0] == "kelemetry"
        return [str(binaries.kelemetry), *(self.mapped(str(a)) for a in command[1:])]


def kubectl_apply(plane: ControlPlane, text: str, *flags: str) -> str:
    return plane.kubectl("apply", *flags, "-f", "-", stdin=text)


def can_i(plane: ControlPlane, verb: str, what: str) -> bool:
    scope = [] if what.startswith("/") else ["--all-namespaces"]
    answer = plane.kubectl(
        "auth", "can-i", verb, what, *scope, f"--as={SERVICE_ACCOUNT}", check=False
    ).strip()
    assert answer in ("yes", "no"), answer
    return answer == "yes"


@dataclass(frozen=True)
class HelmRun:
    plane: ControlPlane
    url: str
    token: str
    """The bearer token of the chart's generated Secret (the webhook kubeconfig's token file)."""
    pod: ChartCollector
    collector: Server
    store: Path


@pytest.fixture(scope="module")
def helm_run(binaries: Binaries, run_dir: Path) -> Iterator[HelmRun]:
    """A control plane whose apiserver audits to the chart's collector, and that collector."""
    run = run_dir / "helm"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    port = free_port()
    certs = collector_tls(run / "pki-collector")
    webhook_token_file = run / "apiserver-files" / "token"
    apiserver_port = free_port()
    values: dict[str, Any] = {
        **OTHER_VALUES,
        "cluster": {"name": HELM_CLUSTER, "apiServer": f"https://127.0.0.1:{apiserver_port}"},
        "listenHost": "127.0.0.1",
        "containerPort": port,
        "apiserver": {
            "webhookServer": f"https://127.0.0.1:{port}",
            "tokenFile": str(webhook_token_file),
            "certificateAuthorityFile": str(certs.ca),
        },
    }
    text = render(values, folder=run)
    (run / "rendered.yaml").write_text(text)
    docs = documents(text)
    apiserver_side = find(docs, "ConfigMap", f"{FULLNAME}-apiserver")["data"]
    files = webhook_token_file.parent
    files.mkdir()
    (files / "audit-policy.yaml").write_text(apiserver_side["audit-policy.yaml"])
    (files / "audit-webhook.kubeconfig").write_text(apiserver_side["audit-webhook.kubeconfig"])
    token = base64.b64decode(find(docs, "Secret", f"{FULLNAME}-token")["data"]["token"]).decode()
    webhook_token_file.write_text(token)
    webhook_token_file.chmod(0o600)

    # ControlPlane asks the collector for its address and CA only, to write the sample webhook
    # kubeconfig, which the chart's replaces below.
    address = SimpleNamespace(url=f"https://127.0.0.1:{port}", certs=certs)
    before = dict(SERVERS)
    plane = ControlPlane(binaries, run, address, apiserver_port)  # type: ignore[arg-type]
    # The chart's apiserver files instead of the samples the shared harness passes.
    apiserver = plane.servers[1]
    apiserver.argv = [
        f"--audit-policy-file={files / 'audit-policy.yaml'}"
        if str(a).startswith("--audit-policy-file=")
        else f"--audit-webhook-config-file={files / 'audit-webhook.kubeconfig'}"
        if str(a).startswith("--audit-webhook-config-file=")
        else a
        for a in apiserver.argv
    ]
    SERVERS.clear()
    SERVERS.update(before)
    for server in [*plane.servers, *plane.controllers]:
        SERVERS[f"helm {server.name}"] = server
    collector: Server | None = None
    try:
        plane.start()
        plane.kubectl("create", "namespace", NAMESPACE)
        plane.kubectl(
            "create",
            "secret",
            "tls",
            TLS_SECRET,
            "-n",
            NAMESPACE,
            f"--cert={certs.cert}",
            f"--key={certs.key}",
        )
        # The objects the Pod needs, for real; the workload objects only in the dry runs below.
        needed = [
            d
            for d in docs
            if d["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Secret", "ConfigMap")
        ]
        for doc in needed:
            # What `helm install` marks its objects with, so a later helm run may take them over.
            doc["metadata"].setdefault("annotations", {}).update(
                {"meta.helm.sh/release-name": RELEASE, "meta.helm.sh/release-namespace": NAMESPACE}
            )
        kubectl_apply(plane, yaml.safe_dump_all(needed))
        wait_until(
            "kube-root-ca.crt in the chart's namespace",
            lambda: plane.kubectl("get", "configmap", "kube-root-ca.crt", "-n", NAMESPACE, check=False),
            60,
        )
        volumes = find(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
        seconds = next(
            s["serviceAccountToken"]["expirationSeconds"]
            for v in volumes
            if "projected" in v
            for s in v["projected"]["sources"]
            if "serviceAccountToken" in s
        )
        sa_token = plane.kubectl(
            "create", "token", FULLNAME, "-n", NAMESPACE, f"--duration={seconds}s"
        ).strip()
        pod = ChartCollector(docs, run / "pod", plane)
        pod.fill_volumes(sa_token)
        collector = Server("helm kelemetry", pod.argv(binaries), run / "kelemetry.log", env=pod.environment())
        SERVERS["helm kelemetry"] = collector
        collector.start()
        url = f"https://127.0.0.1:{port}"
        wait_until(
            "the chart's collector /readyz", lambda: collector.check_alive() or http_ok(f"{url}/readyz"), 60
        )
        args = pod.container["args"]
        yield HelmRun(plane, url, token, pod, collector, Path(pod.mapped(args[args.index("--store") + 1])))
    finally:
        if collector is not None:
            collector.stop()
        plane.stop()
        # Later modules' failures report their own servers, not these stopped ones.
        for name in [n for n in SERVERS if n.startswith("helm ")]:
            del SERVERS[name]


# -- helm itself


def test_helm_lint_passes_for_default_and_other_values(tmp_path: Path) -> None:
    run_helm("lint", "--strict", CHART)
    values = tmp_path / "values.yaml"
    for other in (OTHER_VALUES, SCALED_VALUES):
        values.write_text(yaml.safe_dump(other))
        run_helm("lint", "--strict", CHART, "--values", values)


def test_the_apiserver_accepts_every_rendered_object(helm_run: HelmRun, tmp_path: Path) -> None:
    plane: ControlPlane = helm_run.plane
    for values in ({}, OTHER_VALUES):
        docs = documents(render(values, folder=tmp_path))
        # The Prometheus Operator's CRD is not in this cluster: the ServiceMonitor is checked by
        # the unit tests and by helm lint only.
        checked = [d for d in docs if d["kind"] != "ServiceMonitor"]
        out = kubectl_apply(plane, yaml.safe_dump_all(checked), "--dry-run=server", "-o", "name")
        names = sorted(out.split())
        assert len(names) == len(checked), out
        assert (
            "deployment.apps/kel-kelemetry" in names
            and "clusterrole.rbac.authorization.k8s.io/kel-kelemetry" in names
        )
    # Scaled mode: the webhook, worker and frontend Deployments and the webhook's Service.
    docs = documents(render(SCALED_VALUES, folder=tmp_path))
    out = kubectl_apply(plane, yaml.safe_dump_all(docs), "--dry-run=server", "-o", "name")
    names = sorted(out.split())
    assert len(names) == len(docs), out
    assert {f"deployment.apps/kel-kelemetry-{role}" for role in ("webhook", "worker", "frontend")} <= set(
        names
    )


# -- the collector the chart runs


def trace_of(store: Path, resource: str, namespace: str, name: str) -> AssembledTrace:
    return assemble(
        store, ObjectQuery(cluster=HELM_CLUSTER, resource=resource, namespace=namespace, name=name)
    )


def test_the_chart_collector_traces_a_deployment_lifecycle(helm_run: HelmRun) -> None:
    plane: ControlPlane = helm_run.plane
    store: Path = helm_run.store
    headers = {"Authorization": f"Bearer {helm_run.token}"}

    def connected() -> bool:
        fleet = httpx.get(f"{helm_run.url}/api/kelemetry/fleet", headers=headers, timeout=5).json()["data"]
        (cluster,) = fleet
        return bool(cluster["name"] == HELM_CLUSTER and cluster["state"] == "ok" and cluster["discovered"])

    wait_until("the chart's collector to watch and discover its cluster", connected, 60)
    lifecycle(plane, "helm-demo", "demo")

    def complete() -> AssembledTrace | None:
        try:
            trace = trace_of(store, "deployments", "helm-demo", "demo")
        except NotFound:
            return None
        events = [n for n in trace.walk() if n.span.tags.get("event.reason") == "ScalingReplicaSet"]
        return trace if complete_lifecycle(trace) and events else None

    trace: AssembledTrace = wait_until(
        "the lifecycle's trace in the chart collector's store", complete, 90, 0.5
    )
    verbs = {(t.get("audit.user"), t.get("audit.verb")) for t in requests(trace.root)}
    assert {(ADMIN, "create"), (ADMIN, "patch"), (ADMIN, "delete")} <= verbs
    replicasets = [c for c in trace.root.children if c.span.key.resource == "replicasets"]
    assert len(replicasets) == 2
    assert {t.get("audit.user") for rs in replicasets for t in requests(rs)} >= {DEPLOYMENT_CONTROLLER}
    pods = [n for rs in replicasets for n in rs.children if n.span.key.resource == "pods"]
    assert len(pods) >= 4


def service_account_requests(plane: ControlPlane) -> list[dict[str, Any]]:
    """Every request the chart's ServiceAccount made, from the apiserver's own audit log."""
    found = []
    for line in plane.audit_log.read_text().splitlines():
        event = json.loads(line)
        if event["user"]["username"] == SERVICE_ACCOUNT:
            found.append(event)
    return found


def discovery_verbs(made: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["requestURI"], e["verb"]) for e in made if "objectRef" not in e]


def test_the_service_account_had_every_permission_the_collector_used(helm_run: HelmRun) -> None:
    plane: ControlPlane = helm_run.plane
    headers = {"Authorization": f"Bearer {helm_run.token}"}
    (cluster,) = httpx.get(f"{helm_run.url}/api/kelemetry/fleet", headers=headers, timeout=5).json()["data"]
    assert cluster["errors"] == [] and cluster["discovered"]
    log = helm_run.collector.log_path.read_text(errors="replace")
    assert not re.search(r"403 Forbidden|401 Unauthorized", log), log[-3000:]
    made = service_account_requests(plane)
    refused = [
        (e["verb"], e["requestURI"], e["responseStatus"]["code"])
        for e in made
        if e["responseStatus"]["code"] >= 400
    ]
    assert refused == []
    resources = {
        (e["verb"], e["objectRef"].get("apiGroup", ""), e["objectRef"]["resource"])
        for e in made
        if "objectRef" in e
    }
    args = helm_run.pod.container["args"]
    watched = [args[i + 1] for i, a in enumerate(args) if a == "--watch"]
    expected = {("list", "", "events"), ("watch", "", "events")}
    for spec in watched:
        group, _version, resource = parse_watch_target(spec)
        expected |= {("list", group, resource), ("watch", group, resource)}
    # Exactly the chart's ClusterRole in use: every watch ran, nothing else was asked for
    # (no CustomResourceDefinitions: the chart turned that watch off).
    assert resources == expected
    discovery = {e["requestURI"].partition("?")[0].rstrip("/") for e in made if "objectRef" not in e}
    assert {"/api/v1", "/apis", "/apis/apps/v1", "/apis/batch/v1"} <= discovery
    assert all(uri.startswith("/api") and e_verb == "get" for uri, e_verb in discovery_verbs(made))


@pytest.mark.parametrize(
    "what",
    [
        ("list", "events"),
        ("watch", "events"),
        ("watch", "deployments.apps"),
        ("list", "replicasets.apps"),
        ("watch", "pods"),
        ("list", "nodes"),
        ("get", "/apis"),
        ("get", "/api/v1"),
    ],
)
def test_the_service_account_may_do_what_the_collector_does(helm_run: HelmRun, what: tuple[str, str]) -> None:
    assert can_i(helm_run.plane, *what)


@pytest.mark.parametrize(
    "what",
    [
        ("get", "secrets"),
        ("list", "secrets"),
        ("watch", "secrets"),
        ("get", "pods"),
        ("create", "deployments.apps"),
        ("patch", "configmaps"),
        ("delete", "pods"),
        ("create", "serviceaccounts/token"),
        ("list", "customresourcedefinitions.apiextensions.k8s.io"),
        ("list", "leases.coordination.k8s.io"),
        ("create", "events"),
        ("get", "/metrics"),
    ],
)
def test_the_service_account_may_do_nothing_more(helm_run: HelmRun, what: tuple[str, str]) -> None:
    assert not can_i(helm_run.plane, *what)


def test_the_collector_requires_the_charts_token(helm_run: HelmRun) -> None:
    url = helm_run.url
    # publicQuery: reading is open, the webhook and /metrics are not.
    assert httpx.post(f"{url}/audit/{HELM_CLUSTER}", json={}, timeout=5).status_code == 401
    assert httpx.get(f"{url}/metrics", timeout=5).status_code == 401
    assert (
        httpx.get(
            f"{url}/metrics", headers={"Authorization": f"Bearer {helm_run.token}"}, timeout=5
        ).status_code
        == 200
    )
    assert httpx.get(f"{url}/api/services", timeout=5).status_code == 200


def test_helm_install_keeps_the_token_and_prints_how_to_use_the_files(helm_run: HelmRun) -> None:
    """`helm install --dry-run=server` against the cluster where the token Secret already exists:
    the chart looks it up and keeps its token (what an upgrade does), and NOTES.txt renders."""
    plane: ControlPlane = helm_run.plane
    result = run_helm(
        "install", RELEASE, CHART, "--namespace", NAMESPACE, "--dry-run=server", f"--kubeconfig={plane.admin}"
    )
    manifest, _, notes = result.stdout.partition("NOTES:")
    secret = find(documents(manifest.partition("MANIFEST:")[2]), "Secret", f"{FULLNAME}-token")
    assert base64.b64decode(secret["data"]["token"]).decode() == helm_run.token
    assert f"kubectl -n {NAMESPACE} get configmap {FULLNAME}-apiserver" in notes
    assert "--audit-webhook-config-file=<dir>/audit-webhook.kubeconfig" in notes
    assert f"http://{FULLNAME}.{NAMESPACE}.svc:8080/audit/default" in notes


def test_the_probes_answer_as_the_kubelet_would_call_them(helm_run: HelmRun) -> None:
    spec = helm_run.pod.container
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = spec[kind]["httpGet"]
        # The kubelet does not check a probe's certificate; it needs the scheme right, no token.
        url = f"{probe['scheme'].lower()}://127.0.0.1:{ports[probe['port']]}{probe['path']}"
        assert httpx.get(url, verify=False, timeout=5).status_code == 200, url
