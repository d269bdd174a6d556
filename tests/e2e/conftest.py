"""Session fixtures: a real control plane, Jaeger v2 and the collector under test, on loopback.

Start order: Jaeger (OTLP in, query API out) → `kelemetry serve` (exporting OTLP to it) → etcd →
kube-apiserver (audit webhook → the collector at /audit/tracetest, audit log file too) →
kube-controller-manager, kube-scheduler, kwok with one fake node. Logs and the audit log stay in
the run folder (test-artifacts/e2e/ in the repository, or $KELEMETRY_E2E_DIR).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests import jaegerv2, promtext
from tests.e2e.fleet import FLEET_SERVERS, Fleet
from tests.e2e.servers import (
    ADMIN_TOKEN,
    CLUSTER,
    REPO,
    Binaries,
    HarnessError,
    Server,
    audit_webhook_kubeconfig,
    build,
    collector_tls,
    free_port,
    http_ok,
    kubeconfig,
    tls_flags,
    wait_until,
)

COLLECTOR_TOKEN = "collector-token"
RUN_DIR = Path(os.environ.get("KELEMETRY_E2E_DIR", REPO / "test-artifacts" / "e2e"))
SERVERS: dict[str, Server] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that restart the shared apiserver or compact its etcd run last: every watch of the
    session's collectors relists after them, and the relist gaps they record (rightly) show on any
    view of that time, which the exact span counts of the other modules' checks would trip on."""
    items.sort(key=lambda item: item.get_closest_marker("disturbs_cluster") is not None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call" and report.failed:
        # The servers' own words are what explain an e2e failure; pytest prints these sections.
        # A fleet test gets the fleet's servers (and collector), not the single cluster's.
        servers = FLEET_SERVERS if "fleet" in item.fixturenames else SERVERS
        for name, server in servers.items():
            report.sections.append((f"{name} log, last lines ({server.log_path})", server.tail(30)))


@pytest.fixture(scope="session")
def binaries() -> Binaries:
    return build()


class Jaeger:
    def __init__(self, binaries: Binaries, run: Path) -> None:
        self.otlp_grpc = free_port()
        self.otlp_http = free_port()
        self.query = free_port()
        query_grpc = free_port()
        config = jaegerv2.config(
            name="mem",
            backend=jaegerv2.MEMORY,
            query=self.query,
            query_grpc=query_grpc,
            otlp_grpc=self.otlp_grpc,
            otlp_http=self.otlp_http,
        )
        config_path = run / "jaeger.yaml"
        config_path.write_text(yaml.safe_dump(config))
        self.server = Server("jaeger", [binaries.jaeger, "--config", config_path], run / "jaeger.log")
        SERVERS["jaeger"] = self.server

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.query}"

    def start(self) -> None:
        self.server.start()
        wait_until(
            "Jaeger query API", lambda: self.server.check_alive() or http_ok(f"{self.api}/api/services")
        )

    def stop(self) -> None:
        self.server.stop()


class Collector:
    """The real `kelemetry serve` process under test."""

    def __init__(self, binaries: Binaries, run: Path, otlp_endpoint: str, kubeconfig: Path) -> None:
        self.port = free_port()
        # Served over https, as the README asks of a real deployment: the apiserver checks it with the CA.
        self.certs = collector_tls(run / "kelemetry-pki")
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
            kubeconfig,
            "--otlp-endpoint",
            otlp_endpoint,
            "--cluster",
            CLUSTER,
            *tls_flags(self.certs),
        ]
        self.server = Server("kelemetry", argv, run / "kelemetry.log")
        SERVERS["kelemetry"] = self.server

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server.start()
        wait_until("kelemetry serve", lambda: self.server.check_alive() or http_ok(f"{self.url}/healthz"), 30)

    def kill9(self) -> None:
        self.server.kill9()

    def metrics(self) -> dict[str, float]:
        return promtext.samples(httpx.get(f"{self.url}/metrics", timeout=5).text)


class ControlPlane:
    def __init__(self, binaries: Binaries, run: Path, collector: Collector, port: int) -> None:
        self.binaries = binaries
        self.run = run
        self.audit_log = run / "audit.log"
        if self.audit_log.exists():
            self.audit_log.unlink()
        self.port = port
        self.server_url = f"https://127.0.0.1:{self.port}"
        etcd_client, etcd_peer = free_port(), free_port()
        shutil.rmtree(run / "etcd", ignore_errors=True)
        pki = run / "pki"
        shutil.rmtree(pki, ignore_errors=True)
        pki.mkdir(parents=True)
        sa_key = pki / "sa.key"
        subprocess.run(["openssl", "genrsa", "-out", str(sa_key), "2048"], check=True, capture_output=True)
        tokens = run / "tokens.csv"
        tokens.write_text(
            f'{ADMIN_TOKEN},admin,uid-admin,"system:masters"\n'
            "kcm-token,system:kube-controller-manager,uid-kcm\n"
            "sched-token,system:kube-scheduler,uid-sched\n"
            'kwok-token,kwok,uid-kwok,"system:masters"\n'
            f'{COLLECTOR_TOKEN},kelemetry,uid-kelemetry,"system:masters"\n'
        )
        # The same example files the README points users to, with this run's collector address.
        policy = REPO / "samples" / "apiserver" / "audit-policy.yaml"
        webhook_path = audit_webhook_kubeconfig(
            run / "audit-webhook.kubeconfig", f"{collector.url}/audit/{CLUSTER}", collector.certs
        )

        self.admin = kubeconfig(run / "admin.kubeconfig", self.server_url, ADMIN_TOKEN)
        kcm = kubeconfig(run / "kcm.kubeconfig", self.server_url, "kcm-token")
        sched = kubeconfig(run / "sched.kubeconfig", self.server_url, "sched-token")
        kwok = kubeconfig(run / "kwok.kubeconfig", self.server_url, "kwok-token")
        b = binaries
        self.servers = [
            Server(
                "etcd",
                [
                    b.etcd,
                    "--name",
                    "e2e",
                    "--data-dir",
                    run / "etcd",
                    "--listen-client-urls",
                    f"http://127.0.0.1:{etcd_client}",
                    "--advertise-client-urls",
                    f"http://127.0.0.1:{etcd_client}",
                    "--listen-peer-urls",
                    f"http://127.0.0.1:{etcd_peer}",
                    "--initial-advertise-peer-urls",
                    f"http://127.0.0.1:{etcd_peer}",
                    "--initial-cluster",
                    f"e2e=http://127.0.0.1:{etcd_peer}",
                ],
                run / "etcd.log",
            ),
            Server(
                "kube-apiserver",
                [
                    b.apiserver,
                    f"--etcd-servers=http://127.0.0.1:{etcd_client}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={self.port}",
                    f"--cert-dir={pki}",
                    "--service-cluster-ip-range=10.0.0.0/24",
                    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                    f"--service-account-key-file={sa_key}",
                    f"--service-account-signing-key-file={sa_key}",
                    f"--token-auth-file={tokens}",
                    "--authorization-mode=RBAC",
                    "--allow-privileged=true",
                    f"--audit-policy-file={policy}",
                    f"--audit-webhook-config-file={webhook_path}",
                    "--audit-webhook-batch-max-wait=1s",
                    "--audit-webhook-initial-backoff=1s",
                    "--audit-webhook-batch-throttle-enable=false",
                    f"--audit-log-path={self.audit_log}",
                    "--profiling=false",
                    "--v=1",
                ],
                run / "kube-apiserver.log",
            ),
        ]
        self.controllers = [
            Server(
                "kube-controller-manager",
                [
                    b.controller_manager,
                    f"--kubeconfig={kcm}",
                    "--leader-elect=false",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={free_port()}",
                    f"--service-account-private-key-file={sa_key}",
                    f"--root-ca-file={pki / 'apiserver.crt'}",
                    "--use-service-account-credentials=true",
                    "--controllers=*",
                ],
                run / "kube-controller-manager.log",
            ),
            Server(
                "kube-scheduler",
                [
                    b.scheduler,
                    f"--kubeconfig={sched}",
                    "--leader-elect=false",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={free_port()}",
                ],
                run / "kube-scheduler.log",
            ),
            Server(
                "kwok",
                [
                    b.kwok,
                    f"--kubeconfig={kwok}",
                    "--manage-all-nodes=true",
                    "--node-lease-duration-seconds=40",
                    "--cidr=10.0.0.1/24",
                ],
                run / "kwok.log",
            ),
        ]
        for server in [*self.servers, *self.controllers]:
            SERVERS[server.name] = server

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None) -> str:
        result = subprocess.run(
            [str(self.binaries.kubectl), f"--kubeconfig={self.admin}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise HarnessError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def start(self) -> None:
        etcd, apiserver = self.servers
        etcd.start()
        apiserver.start()
        wait_until(
            "kube-apiserver /readyz",
            lambda: apiserver.check_alive() or http_ok(f"{self.server_url}/readyz", verify=False),
            120,
        )
        for server in self.controllers:
            server.start()
        self.kubectl("apply", "-f", "-", stdin=_NODE)
        wait_until(
            "the fake node to be Ready",
            lambda: (
                "True"
                in self.kubectl(
                    "get",
                    "node",
                    "kwok-node-0",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                    check=False,
                )
            ),
            60,
        )
        wait_until(
            "the default service account",
            lambda: self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False),
            60,
        )

    def restart_apiserver(self, policy: Path | None = None) -> None:
        """Restart kube-apiserver, optionally with another audit policy file."""
        apiserver = self.servers[1]
        apiserver.stop()
        chosen = policy or REPO / "samples" / "apiserver" / "audit-policy.yaml"
        apiserver.argv = [
            f"--audit-policy-file={chosen}" if str(a).startswith("--audit-policy-file=") else a
            for a in apiserver.argv
        ]
        apiserver.start()
        wait_until(
            "kube-apiserver /readyz after a restart",
            lambda: apiserver.check_alive() or http_ok(f"{self.server_url}/readyz", verify=False),
            120,
        )

    def stop(self) -> None:
        for server in reversed([*self.servers, *self.controllers]):
            server.stop()


_NODE = """
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-0
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels:
    {kubernetes.io/hostname: kwok-node-0, kubernetes.io/os: linux, kubernetes.io/arch: amd64, type: kwok}
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
"""


@pytest.fixture(scope="session")
def run_dir() -> Path:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    return RUN_DIR


@pytest.fixture(scope="session")
def jaeger(binaries: Binaries, run_dir: Path) -> Iterator[Jaeger]:
    server = Jaeger(binaries, run_dir)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def apiserver_port(run_dir: Path) -> int:
    """Chosen before anything starts: the collector's kubeconfig must name it before the apiserver runs."""
    port = free_port()
    kubeconfig(run_dir / "collector.kubeconfig", f"https://127.0.0.1:{port}", COLLECTOR_TOKEN)
    return port


@pytest.fixture(scope="session")
def collector(binaries: Binaries, run_dir: Path, jaeger: Jaeger, apiserver_port: int) -> Iterator[Collector]:
    server = Collector(
        binaries, run_dir, f"grpc://127.0.0.1:{jaeger.otlp_grpc}", run_dir / "collector.kubeconfig"
    )
    server.start()
    yield server
    server.server.stop()


@pytest.fixture(scope="session")
def cluster(
    binaries: Binaries, run_dir: Path, collector: Collector, apiserver_port: int
) -> Iterator[ControlPlane]:
    plane = ControlPlane(binaries, run_dir, collector, apiserver_port)
    started = time.monotonic()
    try:
        plane.start()
    except Exception:
        plane.stop()
        raise
    print(f"e2e: control plane ready in {time.monotonic() - started:.0f}s", file=sys.stderr)
    yield plane
    plane.stop()


@pytest.fixture(scope="session")
def fleet(binaries: Binaries, run_dir: Path) -> Iterator[Fleet]:
    """A KubeAdmiral fleet (host, member-1, member-2) and a collector connected to all three
    (tests/e2e/fleet.py); started only for the tests that ask for it."""
    plane = Fleet(binaries, run_dir / "fleet")
    started = time.monotonic()
    try:
        plane.start()
    except Exception:
        plane.stop()
        raise
    print(f"e2e: fleet ready in {time.monotonic() - started:.0f}s", file=sys.stderr)
    yield plane
    plane.stop()
