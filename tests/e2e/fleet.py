"""A real KubeAdmiral fleet for the end-to-end tests: a federation host and two member clusters.

What runs (all on loopback, one etcd with one key prefix per apiserver):

- ``host``: kube-apiserver (the federation control plane, with KubeAdmiral's CRDs and the
  FederatedTypeConfigs for namespaces and deployments.apps taken from the KubeAdmiral module in
  the Go module cache), a kube-controller-manager running only the ``namespace`` and
  ``garbagecollector`` controllers and no scheduler, as KubeAdmiral's own local setup does (the
  host must not run Deployments itself), and ``kubeadmiral-controller-manager``;
- ``member-1``, ``member-2``: kube-apiserver, kube-controller-manager, kube-scheduler and kwok with
  one fake node each, joined to the host as FederatedClusters of the same names.

Every apiserver sends its audit events to the one collector under test at ``/audit/<name>`` and
also writes its own audit log file. Logs stay in ``<run>/fleet/`` (``<run>/fleet/<cluster>/`` per
cluster) and their tails are printed when a test that uses the fleet fails.

Joining follows KubeAdmiral's docs/cluster-joining.md: a Secret named after the cluster in
``kube-admiral-system`` and a ``FederatedCluster`` with ``useServiceAccount: true``. The docs put a
client certificate and key in the Secret; these apiservers authenticate with static tokens, so the
Secret carries a token under ``bootstrap-token-data``, the key KubeAdmiral's client builder reads
for exactly that case. With it KubeAdmiral creates its own ServiceAccount ``kubeadmiral-member`` in
each member and uses that account's token from then on.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.certs import Certificates
from tests.e2e.servers import (
    REPO,
    Binaries,
    HarnessError,
    Server,
    audit_webhook_kubeconfig,
    collector_tls,
    free_port,
    http_ok,
    kubeadmiral_source,
    kubeconfig,
    tls_flags,
    wait_until,
)

HOST = "host"
MEMBERS = ("member-1", "member-2")
FLEET_SYSTEM_NAMESPACE = "kube-admiral-system"
# Only the types the scenarios federate: every FederatedTypeConfig makes KubeAdmiral watch its type
# in the host and in every member, which costs CPU on this 2-core machine for nothing.
FEDERATED_TYPES = ("namespaces", "deployments.apps")
# Tokens of the static token file every apiserver of the fleet reads.
ADMIN_TOKEN = "admin-token"
COLLECTOR_TOKEN = "collector-token"
KUBEADMIRAL_TOKEN = "kubeadmiral-token"

# The servers of the fleet by name, for the failure report in conftest (a test that uses the fleet
# gets these tails, not the single-cluster ones).
FLEET_SERVERS: dict[str, Server] = {}

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


def _register(server: Server) -> Server:
    FLEET_SERVERS[server.name] = server
    return server


class KubeCluster:
    """One Kubernetes control plane of the fleet: the host or a member."""

    def __init__(
        self,
        name: str,
        binaries: Binaries,
        run: Path,
        etcd_url: str,
        collector_url: str,
        certs: Certificates,
        *,
        host: bool,
        node_cidr: str = "10.0.0.1/24",
    ) -> None:
        self.name = name
        self.binaries = binaries
        self.is_host = host
        self.dir = run / name
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.port = free_port()
        self.server_url = f"https://127.0.0.1:{self.port}"
        self.audit_log = self.dir / "audit.log"
        pki = self.dir / "pki"
        pki.mkdir()
        self.ca_file = pki / "apiserver.crt"
        sa_key = pki / "sa.key"
        subprocess.run(["openssl", "genrsa", "-out", str(sa_key), "2048"], check=True, capture_output=True)
        tokens = self.dir / "tokens.csv"
        tokens.write_text(
            f'{ADMIN_TOKEN},admin,uid-admin,"system:masters"\n'
            "kcm-token,system:kube-controller-manager,uid-kcm\n"
            "sched-token,system:kube-scheduler,uid-sched\n"
            'kwok-token,kwok,uid-kwok,"system:masters"\n'
            f'{COLLECTOR_TOKEN},kelemetry,uid-kelemetry,"system:masters"\n'
            # In the host: the identity kubeadmiral-controller-manager runs as (KubeAdmiral's own
            # manifests bind it to a ClusterRole allowing everything). In a member: the bootstrap
            # credential of the join Secret, used until KubeAdmiral has its own ServiceAccount.
            f'{KUBEADMIRAL_TOKEN},kubeadmiral,uid-kubeadmiral,"system:masters"\n'
        )
        # The example files the README points users to; only the collector's address changes.
        policy = REPO / "samples" / "apiserver" / "audit-policy.yaml"
        webhook_path = audit_webhook_kubeconfig(
            self.dir / "audit-webhook.kubeconfig", f"{collector_url}/audit/{name}", certs
        )

        self.admin = kubeconfig(self.dir / "admin.kubeconfig", self.server_url, ADMIN_TOKEN)
        self.collector_kubeconfig = kubeconfig(
            self.dir / "collector.kubeconfig", self.server_url, COLLECTOR_TOKEN
        )
        kcm = kubeconfig(self.dir / "kcm.kubeconfig", self.server_url, "kcm-token")
        b = binaries
        apiserver_argv: list[str | Path] = [
            b.apiserver,
            f"--etcd-servers={etcd_url}",
            # One etcd serves the whole fleet; each apiserver keeps to its own prefix.
            f"--etcd-prefix=/fleet/{name}",
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
        ]
        if host:
            # As KubeAdmiral's control-plane manifests: the host runs no ServiceAccount or PVC
            # controllers, so the admission plugins that wait for them are off.
            apiserver_argv.append("--disable-admission-plugins=StorageObjectInUseProtection,ServiceAccount")
        self.apiserver = _register(
            Server(f"{name}/kube-apiserver", apiserver_argv, self.dir / "kube-apiserver.log")
        )
        self.controllers = [
            _register(
                Server(
                    f"{name}/kube-controller-manager",
                    [
                        b.controller_manager,
                        f"--kubeconfig={kcm}",
                        "--leader-elect=false",
                        "--bind-address=127.0.0.1",
                        f"--secure-port={free_port()}",
                        f"--service-account-private-key-file={sa_key}",
                        f"--root-ca-file={self.ca_file}",
                        "--use-service-account-credentials=true",
                        # The host's objects are templates for the members: only namespace
                        # deletion and garbage collection run there (KubeAdmiral's dev-up does so).
                        "--controllers=namespace,garbagecollector" if host else "--controllers=*",
                    ],
                    self.dir / "kube-controller-manager.log",
                )
            )
        ]
        if not host:
            sched = kubeconfig(self.dir / "sched.kubeconfig", self.server_url, "sched-token")
            kwok = kubeconfig(self.dir / "kwok.kubeconfig", self.server_url, "kwok-token")
            self.controllers += [
                _register(
                    Server(
                        f"{name}/kube-scheduler",
                        [
                            b.scheduler,
                            f"--kubeconfig={sched}",
                            "--leader-elect=false",
                            "--bind-address=127.0.0.1",
                            f"--secure-port={free_port()}",
                        ],
                        self.dir / "kube-scheduler.log",
                    )
                ),
                _register(
                    Server(
                        f"{name}/kwok",
                        [
                            b.kwok,
                            f"--kubeconfig={kwok}",
                            "--manage-all-nodes=true",
                            "--node-lease-duration-seconds=40",
                            f"--cidr={node_cidr}",
                        ],
                        self.dir / "kwok.log",
                    )
                ),
            ]

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
            raise HarnessError(f"kubectl ({self.name}) {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def get(self, *args: str) -> dict[str, Any]:
        """`kubectl get ARGS -o json`, parsed."""
        found: dict[str, Any] = json.loads(self.kubectl("get", *args, "-o", "json"))
        return found

    def apply(self, *manifests: Mapping[str, Any]) -> None:
        self.kubectl(
            "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests})
        )

    def ready(self) -> bool:
        self.apiserver.check_alive()
        return http_ok(f"{self.server_url}/readyz", verify=False)

    def wait_service_account(self, namespace: str, timeout: float = 60) -> None:
        """Pods created before their namespace's default ServiceAccount exists are refused, and the
        controllers' retries would add FailedCreate noise to the traces under test."""
        wait_until(
            f"serviceaccount default in {self.name}/{namespace}",
            lambda: self.kubectl("get", "serviceaccount", "default", "-n", namespace, check=False),
            timeout,
            0.5,
        )

    def stop(self) -> None:
        for server in reversed([self.apiserver, *self.controllers]):
            server.stop()


class Fleet:
    """The host, the members, etcd and kubeadmiral-controller-manager; `start` brings them up and
    joins the members."""

    def __init__(self, binaries: Binaries, run: Path) -> None:
        self.binaries = binaries
        self.run = run
        run.mkdir(parents=True, exist_ok=True)
        # Chosen first: every apiserver's audit webhook names the collector's address, and the
        # collector's kubeconfigs name every apiserver's.
        collector_port = free_port()
        collector_url = f"https://127.0.0.1:{collector_port}"
        certs = collector_tls(run / "kelemetry-pki")
        etcd_client, etcd_peer = free_port(), free_port()
        shutil.rmtree(run / "etcd", ignore_errors=True)
        etcd_url = f"http://127.0.0.1:{etcd_client}"
        self.etcd = _register(
            Server(
                "etcd",
                [
                    binaries.etcd,
                    "--name",
                    "fleet",
                    "--data-dir",
                    run / "etcd",
                    "--listen-client-urls",
                    etcd_url,
                    "--advertise-client-urls",
                    etcd_url,
                    "--listen-peer-urls",
                    f"http://127.0.0.1:{etcd_peer}",
                    "--initial-advertise-peer-urls",
                    f"http://127.0.0.1:{etcd_peer}",
                    "--initial-cluster",
                    f"fleet=http://127.0.0.1:{etcd_peer}",
                ],
                run / "etcd.log",
            )
        )
        self.host = KubeCluster(HOST, binaries, run, etcd_url, collector_url, certs, host=True)
        self.members = {
            name: KubeCluster(
                name, binaries, run, etcd_url, collector_url, certs, host=False, node_cidr=f"10.{i}.0.1/24"
            )
            for i, name in enumerate(MEMBERS, start=1)
        }
        admiral_kubeconfig = kubeconfig(
            run / HOST / "kubeadmiral.kubeconfig", self.host.server_url, KUBEADMIRAL_TOKEN
        )
        self.kubeadmiral = _register(
            Server(
                "kubeadmiral-controller-manager",
                [
                    binaries.kubeadmiral,
                    f"--kubeconfig={admiral_kubeconfig}",
                    "--enable-leader-elect=false",
                    # Its health server and Prometheus endpoint default to fixed ports (11257, 9090).
                    f"--port={free_port()}",
                    "--prometheus-addr=127.0.0.1",
                    f"--prometheus-port={free_port()}",
                    "--worker-count=2",
                    # The multi-cluster Services controllers list discovery.k8s.io/v1beta1
                    # EndpointSlices, which Kubernetes 1.25 removed; nothing here uses them.
                    "--controllers=*,-serviceexport,-serviceimport",
                    "--cluster-join-timeout=3m",
                    "--klog-v=2",
                ],
                run / "kubeadmiral-controller-manager.log",
            )
        )
        self.collector = FleetCollector(binaries, run, collector_port, self.collector_kubeconfigs, certs)

    @property
    def clusters(self) -> dict[str, KubeCluster]:
        return {HOST: self.host, **self.members}

    @property
    def collector_kubeconfigs(self) -> dict[str, Path]:
        """Cluster name -> a kubeconfig for the collector (the names its audit webhooks post to)."""
        return {name: cluster.collector_kubeconfig for name, cluster in self.clusters.items()}

    def start(self) -> None:
        started = time.monotonic()
        # Before the apiservers: a batch the webhook cannot deliver is retried a few times, then lost.
        self.collector.start()
        self.etcd.start()
        for cluster in self.clusters.values():
            cluster.apiserver.start()
        for cluster in self.clusters.values():
            wait_until(f"{cluster.name} kube-apiserver /readyz", cluster.ready, 180)
        self._lap("apiservers ready", started)
        for cluster in self.clusters.values():
            for server in cluster.controllers:
                server.start()
        self._install_kubeadmiral()
        for member in self.members.values():
            member.kubectl("apply", "-f", "-", stdin=_NODE)
        for member in self.members.values():
            wait_until(
                f"the fake node of {member.name} to be Ready",
                lambda m=member: (
                    m.kubectl(
                        "get",
                        "node",
                        "kwok-node-0",
                        "-o",
                        "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                        check=False,
                    )
                    == "True"
                ),
                60,
            )
        self._lap("members have Ready nodes", started)
        self.kubeadmiral.start()
        for name, member in self.members.items():
            self._join(name, member)
        for name in self.members:
            wait_until(
                f"FederatedCluster {name} to be Joined and Ready",
                lambda n=name: self.cluster_state(n) == ("True", "True"),
                180,
                1.0,
            )
        self._lap("members joined", started)

    def _lap(self, what: str, started: float) -> None:
        print(f"e2e fleet: {what} after {time.monotonic() - started:.0f}s", file=sys.stderr)

    def _install_kubeadmiral(self) -> None:
        """KubeAdmiral's CRDs and host samples, read from its module as its dev-up script uses them."""
        source = kubeadmiral_source()
        crds = source / "config" / "crds" / "bases" / "core_kubeadmiral_io"
        # `create`, as KubeAdmiral's scripts do: client-side apply would store each large CRD again
        # in an annotation.
        self.host.kubectl("create", "-f", str(crds))
        self.host.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        sample = source / "config" / "sample" / "host"
        self.host.kubectl("create", "-f", str(sample / "00-namespace.yaml"))
        types = [
            doc
            for doc in yaml.safe_load_all((sample / "01-ftc.yaml").read_text())
            if doc and doc["metadata"]["name"] in FEDERATED_TYPES
        ]
        missing = set(FEDERATED_TYPES) - {t["metadata"]["name"] for t in types}
        if missing:
            raise HarnessError(f"KubeAdmiral's 01-ftc.yaml has no FederatedTypeConfig {sorted(missing)}")
        self.host.apply(*types)

    def _join(self, name: str, member: KubeCluster) -> None:
        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode()

        self.host.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": FLEET_SYSTEM_NAMESPACE},
                "type": "Opaque",
                "data": {
                    "certificate-authority-data": b64(member.ca_file.read_bytes()),
                    "bootstrap-token-data": b64(KUBEADMIRAL_TOKEN.encode()),
                },
            },
            {
                "apiVersion": "core.kubeadmiral.io/v1alpha1",
                "kind": "FederatedCluster",
                "metadata": {"name": name},
                "spec": {
                    "apiEndpoint": member.server_url,
                    "secretRef": {"name": name},
                    "useServiceAccount": True,
                },
            },
        )

    def cluster_state(self, name: str) -> tuple[str, str]:
        """(Joined, Ready) condition statuses of a FederatedCluster."""
        out = self.host.kubectl(
            "get",
            "federatedcluster",
            name,
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Joined')].status}/"
            "{.status.conditions[?(@.type=='Ready')].status}",
            check=False,
        )
        joined, _, ready = out.partition("/")
        return joined, ready

    def stop(self) -> None:
        self.kubeadmiral.stop()
        for cluster in self.clusters.values():
            cluster.stop()
        self.etcd.stop()
        self.collector.stop()


class FleetCollector:
    """`kelemetry serve` connected to every cluster of the fleet, one `--kubeconfig NAME=PATH` each."""

    def __init__(
        self, binaries: Binaries, run: Path, port: int, kubeconfigs: Mapping[str, Path], certs: Certificates
    ) -> None:
        self.port = port
        self.store = run / "kelemetry.db"
        for stale in run.glob("kelemetry.db*"):
            stale.unlink()
        argv: list[str | Path] = [
            binaries.kelemetry,
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--store",
            self.store,
            *tls_flags(certs),
        ]
        for name, path in kubeconfigs.items():
            argv += ["--kubeconfig", f"{name}={path}"]
        self.server = _register(Server("kelemetry", argv, run / "kelemetry.log"))

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server.start()
        wait_until("kelemetry serve", lambda: self.server.check_alive() or http_ok(f"{self.url}/healthz"), 30)

    def stop(self) -> None:
        self.server.stop()
