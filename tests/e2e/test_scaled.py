"""Scaled mode end to end: NATS JetStream between webhook and worker replicas, Jaeger as the store.

Everything is a real process on loopback: nats-server with JetStream, a Jaeger v2 of this module
(badger storage on disk, so a restarted Jaeger keeps what it had), two webhook replicas behind a
TCP round-robin balancer (written here: a thread that passes each connection to the next replica
that accepts one), three worker replicas with short leases and snapshots, `kelemetry frontend` on
that Jaeger, and a control plane of this module whose apiserver's audit webhook points at the
balancer (the session's cluster is never disturbed).

The apiserver also writes the audit LOG backend with the same policy: the ground truth. What the
scaled pipeline must deliver is what the embedded pipeline keeps of that log, found by
`kelemetry replay` of the log into an embedded store. Each scenario checks, through Jaeger's own
API, that every such audit ID of the scenario's stretch of the log is in Jaeger exactly once and
that no trace holds a span id twice, and, through our frontend on Jaeger, that its Deployment's
tree is the one `kelemetry dump` prints from the embedded replay (same span ids, names, parents).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import yaml

from kelemetry.model.events import TraceSource
from kelemetry.model.tags import AUDIT_ID
from kelemetry.queue import layout
from kelemetry.queue.jetstream import JetStream
from kelemetry.store.sqlite import StoreReader
from tests import jaegerv2, promtext
from tests.certs import Certificates
from tests.e2e.conftest import SERVERS, ControlPlane
from tests.e2e.servers import (
    Binaries,
    HarnessError,
    Server,
    audit_webhook_kubeconfig,
    collector_tls,
    free_port,
    http_ok,
    tls_flags,
    wait_until,
)
from tests.e2e.test_deployment import lifecycle, rollout
from tests.natsserver import NatsServer

pytestmark = pytest.mark.e2e

SCALED_CLUSTER = "scaledtest"
PARTITIONS = 16
WORKERS = ("worker-1", "worker-2", "worker-3")
WEBHOOKS = ("webhook-1", "webhook-2")
TREE_MODE = "01000000"
"""tree [full tree]: every request a span of its own under its object, the whole hierarchy."""


# -- the load balancer in front of the webhook replicas


class Balancer:
    """TCP round robin over the webhook replicas: each new connection goes to the next replica, and
    to the one after when a replica refuses it (killed). TLS passes through untouched, as through a
    cloud load balancer or a Service: the replicas share one certificate."""

    def __init__(self, upstreams: list[int]) -> None:
        self.upstreams = upstreams
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._next = 0
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="balancer", daemon=True)
        self._thread.start()

    def _connect(self) -> socket.socket | None:
        with self._lock:
            start = self._next
            self._next = (self._next + 1) % len(self.upstreams)
        for step in range(len(self.upstreams)):
            port = self.upstreams[(start + step) % len(self.upstreams)]
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=2)
            except OSError:
                continue
            upstream.settimeout(None)
            return upstream
        return None

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = self._connect()
            if upstream is None:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        # Either side gone (a killed replica resets): close both, so the apiserver sees the
        # connection end and retries its batch on a new one.
        for sock in (source, target):
            with self._lock:
                self._open.discard(sock)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def stop(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            left = list(self._open)
        for sock in left:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


# -- Jaeger with badger storage


class BadgerJaeger:
    """Jaeger v2 with badger storage in a folder of this run: stopped and started, it keeps its spans."""

    def __init__(self, binaries: Binaries, run: Path) -> None:
        self.otlp_grpc = free_port()
        self.query = free_port()
        data = run / "jaeger-badger"
        config = jaegerv2.config(
            name="badger",
            backend=jaegerv2.badger(data),
            query=self.query,
            query_grpc=free_port(),
            otlp_grpc=self.otlp_grpc,
            otlp_http=free_port(),
        )
        path = run / "jaeger.yaml"
        path.write_text(yaml.safe_dump(config))
        self.server = Server("scaled jaeger", [binaries.jaeger, "--config", path], run / "jaeger.log")

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.query}"

    def start(self) -> None:
        self.server.start()
        wait_until(
            "Jaeger (badger) query API",
            lambda: self.server.check_alive() or http_ok(f"{self.api}/api/services"),
            60,
        )

    def stop(self) -> None:
        self.server.stop()


# -- the whole scaled deployment


@dataclass
class Scaled:
    binaries: Binaries
    run: Path
    plane: ControlPlane
    nats: NatsServer
    jaeger: BadgerJaeger
    balancer: Balancer
    webhooks: dict[str, Server]
    webhook_ports: dict[str, int]
    workers: dict[str, Server]
    frontend_url: str
    checks: int = 0
    audit_ids_checked: dict[str, int] = field(default_factory=dict)

    def log_offset(self) -> int:
        """Where the apiserver's audit log ends now: a scenario's requests are logged after it."""
        return self.plane.audit_log.stat().st_size if self.plane.audit_log.exists() else 0

    def start_worker(self, name: str) -> None:
        server = self.workers[name]
        server.start()
        wait_until(f"{name} to start", lambda: server.check_alive() or _listening(server), 30)

    def start_webhook(self, name: str) -> None:
        server = self.webhooks[name]
        server.start()
        url = f"https://127.0.0.1:{self.webhook_ports[name]}/healthz"
        wait_until(f"{name} to answer", lambda: server.check_alive() or http_ok(url), 30)

    def published(self, name: str) -> float:
        """Audit events the webhook replica ``name`` has published to JetStream (its /metrics)."""
        url = f"https://127.0.0.1:{self.webhook_ports[name]}/metrics"
        return promtext.samples(httpx.get(url, timeout=5).text).get(
            "kelemetry_queue_published_events_total", 0.0
        )

    def replay(self, label: str) -> tuple[Path, list[bytes]]:
        """The audit log as it is now, replayed into a fresh embedded store; the store and the lines."""
        self.checks += 1
        folder = self.run / f"expected-{self.checks}-{label}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        text = self.plane.audit_log.read_bytes()
        # The log backend may be half-way through a line: leave that one for the next look.
        whole = text[: text.rfind(b"\n") + 1]
        log = folder / "audit.log"
        log.write_bytes(whole)
        store = folder / "kelemetry.db"
        subprocess.run(
            [
                str(self.binaries.kelemetry),
                "replay",
                str(log),
                "--cluster",
                SCALED_CLUSTER,
                "--store",
                str(store),
                "--quiet",
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
        return store, whole.splitlines()


def _listening(server: Server) -> bool:
    """A worker's listen address (its health and metrics) accepts connections."""
    argv = [str(a) for a in server.argv]
    host, _, port = argv[argv.index("--listen") + 1].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def _webhook(
    binaries: Binaries, run: Path, name: str, nats: NatsServer, port: int, certs: Certificates
) -> Server:
    return Server(
        f"scaled {name}",
        [
            binaries.kelemetry,
            "serve",
            "--queue",
            nats.url,
            "--role",
            "webhook",
            "--partitions",
            str(PARTITIONS),
            "--listen",
            f"127.0.0.1:{port}",
            "--cluster",
            SCALED_CLUSTER,
            *tls_flags(certs),
        ],
        run / f"{name}.log",
    )


def _worker(binaries: Binaries, run: Path, name: str, nats: NatsServer, jaeger: BadgerJaeger) -> Server:
    state = run / "state" / name
    state.mkdir(parents=True, exist_ok=True)
    return Server(
        f"scaled {name}",
        [
            binaries.kelemetry,
            "serve",
            "--queue",
            nats.url,
            "--role",
            "worker",
            "--partitions",
            str(PARTITIONS),
            "--worker-id",
            name,
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--otlp-endpoint",
            f"grpc://127.0.0.1:{jaeger.otlp_grpc}",
            "--state-dir",
            state,
            "--lease",
            "3s",
            "--snapshot-every",
            "5s",
        ],
        run / f"{name}.log",
    )


@pytest.fixture(scope="module")
def scaled(binaries: Binaries, run_dir: Path) -> Iterator[Scaled]:
    run = run_dir / "scaled"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    started = time.monotonic()
    before = dict(SERVERS)
    stoppable: list[Any] = []
    try:
        nats = NatsServer(run / "nats").start()
        stoppable.append(nats)
        jaeger = BadgerJaeger(binaries, run)
        jaeger.start()
        stoppable.append(jaeger)
        certs = collector_tls(run / "pki-webhook")
        ports = {name: free_port() for name in WEBHOOKS}
        webhooks = {name: _webhook(binaries, run, name, nats, ports[name], certs) for name in WEBHOOKS}
        workers = {name: _worker(binaries, run, name, nats, jaeger) for name in WORKERS}
        balancer = Balancer([ports[name] for name in WEBHOOKS])
        stoppable.append(balancer)
        frontend_port = free_port()
        frontend = Server(
            "scaled frontend",
            [
                binaries.kelemetry,
                "frontend",
                "--listen",
                f"127.0.0.1:{frontend_port}",
                "--jaeger-url",
                jaeger.api,
                "--views",
                run / "views.db",
            ],
            run / "frontend.log",
        )
        # The apiserver only needs the address and CA of its audit webhook: the balancer's.
        address = SimpleNamespace(url=f"https://127.0.0.1:{balancer.port}", certs=certs)
        plane = ControlPlane(binaries, run, address, free_port())  # type: ignore[arg-type]
        # Posting to /audit/<this module's cluster>, not the session's name the sample file carries.
        audit_webhook_kubeconfig(
            run / "audit-webhook.kubeconfig", f"{address.url}/audit/{SCALED_CLUSTER}", certs
        )
        SERVERS.clear()
        SERVERS.update(before)
        scaled = Scaled(
            binaries,
            run,
            plane,
            nats,
            jaeger,
            balancer,
            webhooks,
            ports,
            workers,
            f"http://127.0.0.1:{frontend_port}",
        )
        for server in [*webhooks.values(), *workers.values(), frontend, jaeger.server]:
            SERVERS[server.name] = server
        for server in [*plane.servers, *plane.controllers]:
            SERVERS[f"scaled {server.name}"] = server
        stoppable.extend([*webhooks.values(), *workers.values(), frontend, plane])
        for name in WEBHOOKS:
            scaled.start_webhook(name)
        for name in WORKERS:
            scaled.start_worker(name)
        frontend.start()
        wait_until(
            "kelemetry frontend",
            lambda: frontend.check_alive() or http_ok(f"{scaled.frontend_url}/healthz"),
            30,
        )
        plane.start()
        print(f"e2e: scaled mode ready in {time.monotonic() - started:.0f}s", flush=True)
        yield scaled
        print(f"e2e: scaled mode audit IDs checked per scenario: {scaled.audit_ids_checked}", flush=True)
    finally:
        for thing in reversed(stoppable):
            thing.stop()
        for name in [n for n in SERVERS if n.startswith("scaled ")]:
            del SERVERS[name]


# -- what Jaeger and our frontend hold


def jaeger_audit_traces(jaeger: BadgerJaeger, since_us: int) -> list[dict[str, Any]]:
    """Every trace with an audit span since ``since_us``, through Jaeger's own query API."""
    response = httpx.get(
        f"{jaeger.api}/api/traces",
        params={
            "service": TraceSource.AUDIT.value,
            "start": since_us,
            "end": time.time_ns() // 1000 + 60_000_000,
            "limit": 5000,
        },
        timeout=60,
    )
    response.raise_for_status()
    data: list[dict[str, Any]] = response.json()["data"] or []
    return data


def audit_id_of(span: dict[str, Any]) -> str | None:
    for tag in span["tags"]:
        if tag["key"] == AUDIT_ID:
            return str(tag["value"])
    return None


def traces_of(traces: list[dict[str, Any]], audit_id: str) -> list[str]:
    return [t["traceID"] for t in traces for s in t["spans"] if audit_id_of(s) == audit_id]


def scenario_audit_ids(lines: list[bytes], offset_lines: int) -> set[str]:
    return {json.loads(line)["auditID"] for line in lines[offset_lines:] if line.strip()}


def kept_audit_ids(store: Path) -> set[str]:
    reader = StoreReader(store)
    try:
        return {str(s.tags[AUDIT_ID]) for s in reader.all_spans() if s.source is TraceSource.AUDIT}
    finally:
        reader.close()


def lines_before(scaled: Scaled, offset: int) -> int:
    return scaled.plane.audit_log.read_bytes()[:offset].count(b"\n")


def check_exactly_once(scaled: Scaled, label: str, offset: int, since_us: int) -> int:
    """Every audit ID the embedded pipeline keeps of the log after ``offset`` is in Jaeger exactly
    once, and no trace Jaeger returns holds a span id twice. Returns how many IDs were checked."""
    first_line = lines_before(scaled, offset)
    store, lines = scaled.replay(label)
    expected = kept_audit_ids(store) & scenario_audit_ids(lines, first_line)
    assert len(expected) > 20, f"the scenario made only {len(expected)} audit spans"
    search_from = since_us - 120_000_000

    def counted() -> tuple[Counter[str], list[dict[str, Any]]]:
        traces = jaeger_audit_traces(scaled.jaeger, search_from)
        counts: Counter[str] = Counter()
        for trace in {t["traceID"]: t for t in traces}.values():
            for span in trace["spans"]:
                audit_id = audit_id_of(span)
                if audit_id is not None:
                    counts[audit_id] += 1
        return counts, traces

    def arrived() -> tuple[Counter[str], list[dict[str, Any]]] | None:
        counts, traces = counted()
        return (counts, traces) if expected <= set(counts) else None

    try:
        counts, traces = wait_until(f"the {label} scenario's audit IDs in Jaeger", arrived, 120, 2.0)
    except HarnessError:
        counts, _ = counted()
        missing = sorted(expected - set(counts))
        raise AssertionError(
            f"{len(missing)} of {len(expected)} acknowledged audit IDs never reached Jaeger: {missing[:10]}"
        ) from None
    for trace in traces:
        twice = [s for s, n in Counter(s["spanID"] for s in trace["spans"]).items() if n > 1]
        assert not twice, f"trace {trace['traceID']} holds span ids twice: {twice[:10]}"
    duplicated = {i: traces_of(traces, i) for i in expected if counts[i] != 1}
    # Seen so far only as one span id under two trace ids: exported in a Pod's own trace before its
    # ReplicaSet's create (in a batch the apiserver retried later) linked it to the Deployment,
    # then exported again when the pipeline moved it; Jaeger keeps both copies.
    assert not duplicated, f"audit IDs in Jaeger more than once (id: its trace ids): {duplicated}"
    # Nothing the embedded pipeline drops shows up either (the filter is the same).
    dropped = scenario_audit_ids(lines, first_line) - kept_audit_ids(store)
    assert not dropped & set(counts)
    scaled.audit_ids_checked[label] = len(expected)
    return len(expected)


def frontend_tree(url: str, namespace: str, name: str) -> dict[str, Any] | None:
    """The Deployment's tree as our frontend on Jaeger shows it, or None while it is not found."""
    response = httpx.get(
        f"{url}/api/kelemetry/lookup",
        params={
            "cluster": SCALED_CLUSTER,
            "group": "apps",
            "resource": "deployments",
            "namespace": namespace,
            "name": name,
            "mode": TREE_MODE,
        },
        timeout=30,
    )
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    found = response.json()["data"]
    if not found:
        return None
    view = httpx.get(f"{url}/api/traces/{found[0]['viewId']}", timeout=30)
    assert view.status_code == 200, view.text
    trace: dict[str, Any] = view.json()["data"][0]
    return trace


def embedded_tree(scaled: Scaled, store: Path, namespace: str, name: str) -> dict[str, Any]:
    """The same Deployment's tree from the embedded replay, as `kelemetry dump` prints it."""
    result = subprocess.run(
        [
            str(scaled.binaries.kelemetry),
            "dump",
            "--store",
            str(store),
            "--cluster",
            SCALED_CLUSTER,
            "--resource",
            "deployments.apps",
            "--namespace",
            namespace,
            "--name",
            name,
            "--format",
            "json",
            "--mode",
            "tree",
            "--scope",
            "full",
            "--depth",
            "3",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    trace: dict[str, Any] = json.loads(result.stdout)["data"][0]
    return trace


Shape = set[tuple[str, str, str, str | None]]


def shape(trace: dict[str, Any]) -> Shape:
    """Span id, name, parent and audit ID of every span: what "the same tree" means here."""
    found: Shape = set()
    for span in trace["spans"]:
        parents = [r["spanID"] for r in span["references"] if r["refType"] == "CHILD_OF"]
        found.add((span["spanID"], span["operationName"], ",".join(parents), audit_id_of(span)))
    return found


def check_same_tree(scaled: Scaled, namespace: str, name: str) -> Shape:
    """Our frontend on Jaeger shows the Deployment's tree exactly as the embedded replay makes it."""
    settle(scaled.plane, namespace)
    seen: list[Shape] = []
    wanted: Shape = set()
    # A request logged after the replay (a late garbage collection) is only in Jaeger's tree:
    # one more replay before calling it a difference.
    for _ in range(2):
        store, _lines = scaled.replay(f"tree-{namespace}")
        wanted = shape(embedded_tree(scaled, store, namespace, name))

        def same(wanted: Shape = wanted) -> bool:
            tree = frontend_tree(scaled.frontend_url, namespace, name)
            if tree is None:
                return False
            ids = Counter(s["spanID"] for s in tree["spans"])
            assert all(n == 1 for n in ids.values()), (
                f"our frontend shows span ids twice: {ids.most_common(3)}"
            )
            seen[:] = [shape(tree)]
            return seen[0] == wanted

        try:
            wait_until(f"the tree of {namespace}/{name} through our frontend on Jaeger", same, 60, 2.0)
            return wanted
        except HarnessError:
            pass
    got = seen[0] if seen else set()
    raise AssertionError(
        f"the frontend on Jaeger differs from the embedded replay: {len(got - wanted)} spans only in "
        f"Jaeger {sorted(got - wanted)[:5]}, {len(wanted - got)} only embedded {sorted(wanted - got)[:5]}"
    )


def settle(plane: ControlPlane, namespace: str) -> None:
    """The Deployment's delete has cascaded (its ReplicaSets and Pods are gone) and the apiserver's
    last webhook batch (1 s at most) has gone out."""
    wait_until(
        f"the objects of {namespace} to be garbage collected",
        lambda: plane.kubectl("get", "replicasets,pods", "-n", namespace, "-o", "name").strip() == "",
        60,
        0.5,
    )
    time.sleep(3)


def create_namespace(plane: ControlPlane, namespace: str) -> None:
    plane.kubectl("create", "namespace", namespace)
    wait_until(
        "the namespace's default service account",
        lambda: plane.kubectl("get", "sa", "default", "-n", namespace, check=False),
        60,
    )


def roll(plane: ControlPlane, namespace: str, name: str, image: str, replicas: int) -> None:
    plane.kubectl("set", "image", f"deployment/{name}", "-n", namespace, f"nginx={image}")
    rollout(plane, namespace, name, replicas)


def now_us() -> int:
    return time.time_ns() // 1000


# -- leases, read from JetStream as the workers write them


def lease_owners(scaled: Scaled) -> dict[int, str]:
    """Partition → the worker its lease names (the value is the worker's id)."""

    async def read() -> dict[int, str]:
        settings = layout.QueueSettings(url=scaled.nats.url, partitions=PARTITIONS, lease_seconds=3.0)
        stream = await JetStream.connect(settings, "e2e-test")
        try:
            owners = {}
            for partition in range(PARTITIONS):
                entry = await stream.get(layout.LEASES_BUCKET, layout.lease_key(partition))
                if entry is None:
                    continue
                owners[partition] = entry.value.decode(errors="replace")
            return owners
        finally:
            await stream.close()

    return asyncio.run(read())


# -- the scenarios


def test_deployment_lifecycle_gives_the_embedded_tree(scaled: Scaled) -> None:
    namespace, name = "scaled-tree", "demo"
    offset, since = scaled.log_offset(), now_us()
    lifecycle(scaled.plane, namespace, name)
    tree = check_same_tree(scaled, namespace, name)
    names = {operation for _, operation, _, _ in tree}
    assert f"{namespace}/{name}" in names
    assert len({n for n in names if re.fullmatch(rf"{namespace}/{name}-[a-z0-9]+", n)}) == 2
    assert len({n for n in names if re.fullmatch(rf"{namespace}/{name}-[a-z0-9]+-[a-z0-9]+", n)}) >= 4
    assert check_exactly_once(scaled, "lifecycle", offset, since) > 20


def test_a_worker_killed_mid_rollout_loses_and_repeats_nothing(scaled: Scaled) -> None:
    namespace, name = "scaled-worker", "roll"
    offset, since = scaled.log_offset(), now_us()
    create_namespace(scaled.plane, namespace)
    scaled.plane.kubectl("create", "deployment", name, "-n", namespace, "--image=nginx:1.27", "--replicas=3")
    rollout(scaled.plane, namespace, name, 3)
    partition = layout.partition_of(namespace, "deployments", name, PARTITIONS)
    owner = wait_until(f"an owner of partition {partition}", lambda: lease_owners(scaled).get(partition), 30)
    scaled.plane.kubectl("set", "image", f"deployment/{name}", "-n", namespace, "nginx=nginx:1.28")
    time.sleep(1)
    scaled.workers[owner].kill9()
    rollout(scaled.plane, namespace, name, 3)
    scaled.plane.kubectl("scale", "deployment", name, "-n", namespace, "--replicas=1")
    rollout(scaled.plane, namespace, name, 1)
    scaled.plane.kubectl("delete", "deployment", name, "-n", namespace, "--wait=true")

    def taken_over() -> bool:
        owners = lease_owners(scaled)
        return len(owners) == PARTITIONS and owner not in owners.values()

    wait_until(f"the partitions of the killed {owner} to be taken over", taken_over, 30, 0.5)
    check_same_tree(scaled, namespace, name)
    check_exactly_once(scaled, "worker-kill", offset, since)
    scaled.start_worker(owner)


def test_a_webhook_replica_killed_mid_rollout_loses_and_repeats_nothing(scaled: Scaled) -> None:
    namespace, name = "scaled-webhook", "roll"
    offset, since = scaled.log_offset(), now_us()
    create_namespace(scaled.plane, namespace)
    scaled.plane.kubectl("create", "deployment", name, "-n", namespace, "--image=nginx:1.27", "--replicas=3")
    rollout(scaled.plane, namespace, name, 3)
    before = {replica: scaled.published(replica) for replica in WEBHOOKS}
    scaled.plane.kubectl("set", "image", f"deployment/{name}", "-n", namespace, "nginx=nginx:1.28")
    time.sleep(1.5)
    # The replica the apiserver's keep-alive connection is on now: killing the idle one tests nothing.
    victim = max(WEBHOOKS, key=lambda replica: (scaled.published(replica) - before[replica], replica))
    (survivor,) = [replica for replica in WEBHOOKS if replica != victim]
    assert scaled.published(victim) > before[victim], "no batch went through either replica"
    survivor_before = scaled.published(survivor)
    scaled.webhooks[victim].kill9()
    try:
        rollout(scaled.plane, namespace, name, 3)
        scaled.plane.kubectl("scale", "deployment", name, "-n", namespace, "--replicas=1")
        rollout(scaled.plane, namespace, name, 1)
        scaled.plane.kubectl("delete", "deployment", name, "-n", namespace, "--wait=true")
        check_same_tree(scaled, namespace, name)
        check_exactly_once(scaled, "webhook-kill", offset, since)
        # The apiserver's retries and later batches went through the other replica.
        assert scaled.published(survivor) > survivor_before
    finally:
        scaled.start_webhook(victim)


def published_total(scaled: Scaled) -> float:
    return sum(scaled.published(name) for name in scaled.webhooks)


def wait_acknowledged(scaled: Scaled, offset: int, published_at_offset: float) -> None:
    """Until the webhook replicas have published as many events as the apiserver logged after
    ``offset`` (both backends get every event)."""
    logged = scaled.plane.audit_log.read_bytes()[offset:].count(b"\n")
    wait_until(
        f"the webhooks to acknowledge the {logged} events the apiserver logged",
        lambda: published_total(scaled) - published_at_offset >= logged,
        60,
    )


def test_a_nats_server_restart_mid_rollout_loses_and_repeats_nothing(scaled: Scaled) -> None:
    namespace, name = "scaled-nats", "roll"
    offset, since, published = scaled.log_offset(), now_us(), published_total(scaled)
    create_namespace(scaled.plane, namespace)
    scaled.plane.kubectl("create", "deployment", name, "-n", namespace, "--image=nginx:1.27", "--replicas=3")
    rollout(scaled.plane, namespace, name, 3)
    # The Deployment's create must be acknowledged before NATS goes: a scale patch (no uid) traced
    # before its object's create is a pipeline bug of both modes this scenario is not about (the
    # closing note of stop 20 has it), and the apiserver's retry can bring the create after it.
    wait_acknowledged(scaled, offset, published)
    scaled.plane.kubectl("set", "image", f"deployment/{name}", "-n", namespace, "nginx=nginx:1.28")
    scaled.nats.stop()
    try:
        time.sleep(5)
    finally:
        scaled.nats.start()
    rollout(scaled.plane, namespace, name, 3)
    scaled.plane.kubectl("scale", "deployment", name, "-n", namespace, "--replicas=1")
    rollout(scaled.plane, namespace, name, 1)
    scaled.plane.kubectl("delete", "deployment", name, "-n", namespace, "--wait=true")
    check_same_tree(scaled, namespace, name)
    check_exactly_once(scaled, "nats-restart", offset, since)
    for server in [*scaled.webhooks.values(), *scaled.workers.values()]:
        server.check_alive()


def test_spans_made_while_jaeger_is_down_arrive_after(scaled: Scaled) -> None:
    namespace, name = "scaled-jaeger", "roll"
    offset, since = scaled.log_offset(), now_us()
    create_namespace(scaled.plane, namespace)
    scaled.jaeger.stop()
    try:
        scaled.plane.kubectl(
            "create", "deployment", name, "-n", namespace, "--image=nginx:1.27", "--replicas=3"
        )
        rollout(scaled.plane, namespace, name, 3)
        roll(scaled.plane, namespace, name, "nginx:1.28", 3)
        scaled.plane.kubectl("scale", "deployment", name, "-n", namespace, "--replicas=1")
        rollout(scaled.plane, namespace, name, 1)
        # Long enough for the workers' exports to fail and wait, not only to be slow.
        time.sleep(5)
    finally:
        scaled.jaeger.start()
    scaled.plane.kubectl("delete", "deployment", name, "-n", namespace, "--wait=true")
    check_same_tree(scaled, namespace, name)
    check_exactly_once(scaled, "jaeger-down", offset, since)
    # Badger kept what Jaeger had before it stopped: the first scenario's tree is still whole.
    check_same_tree(scaled, "scaled-tree", "demo")
