"""Replays of the recorded real-cluster samples under samples/ (no cluster needed), and `make run`'s
way of serving one."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from frontend.types import ObjectQuery
from kelemetry import cli
from kelemetry.model.events import TraceSource
from kelemetry.store.sqlite import StoreReader
from tests.conftest import REPO_ROOT
from tests.lookups import assemble

DEPLOYMENT = REPO_ROOT / "samples" / "deployment" / "audit.log"
KELEMETRY = str(Path(sys.executable).with_name("kelemetry"))


def test_deployment_sample_replays_into_the_full_hierarchy(tmp_path: Path) -> None:
    store = tmp_path / "k.db"
    assert (
        cli.main(["replay", "--quiet", "--cluster", "tracetest", "--store", str(store), str(DEPLOYMENT)]) == 0
    )
    reader = StoreReader(store)
    trace = assemble(
        reader, ObjectQuery(cluster="tracetest", resource="deployments", namespace="default", name="demo")
    )
    reader.close()
    root = trace.root
    assert root.span.key.display == "deployments.apps/demo"
    replicasets = [c for c in root.children if c.span.source is TraceSource.OBJECT]
    assert len(replicasets) == 2
    assert all(c.span.key.resource == "replicasets" for c in replicasets)
    pods = [p for rs in replicasets for p in rs.children if p.span.source is TraceSource.OBJECT]
    assert len(pods) >= 4
    verbs = {
        (c.span.tags["audit.user"], c.span.tags["audit.verb"])
        for c in root.children
        if c.span.source is TraceSource.AUDIT
    }
    assert ("admin", "create") in verbs and ("admin", "delete") in verbs
    for pod in pods:
        users = {c.span.tags["audit.user"] for c in pod.children}
        assert "system:serviceaccount:kube-system:replicaset-controller" in users
        assert "system:kube-scheduler" in users


def test_make_run_serves_both_samples(tmp_path: Path) -> None:
    """`make run` as a newcomer types it (the venv is already installed here): the one-cluster sample
    and the KubeAdmiral fleet, each cluster under its own name."""
    import os
    import signal
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = ["make", "-s", "run", f"LISTEN=127.0.0.1:{port}", f"STORE={tmp_path / 'k.db'}"]
    server = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # make's child is the server: stop the whole group
    )
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/api/kelemetry/status", timeout=2).json()
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert status is not None, "make run did not answer"
        assert status["counts"]["spans_audit"] > 50
        clusters = httpx.get(f"http://127.0.0.1:{port}/api/kelemetry/clusters", timeout=5).json()["data"]
        assert sorted(clusters) == ["host", "member-1", "member-2", "tracetest"]
        params = {"cluster": "member-2", "resource": "deployments", "name": "fleet-demo"}
        hits = httpx.get(f"http://127.0.0.1:{port}/api/kelemetry/lookup", params=params, timeout=5).json()
        assert [hit["object"]["cluster"] for hit in hits["data"]] == ["member-2"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        _out, err = server.communicate(timeout=30)
    assert f"listening on http://127.0.0.1:{port}" in err
    assert err.count("replayed ") == 1, err  # one replay of all ten files


def test_deployment_sample_shows_diffs_and_a_delete_snapshot(tmp_path: Path) -> None:
    store = tmp_path / "k.db"
    argv = ["replay", "--quiet", "--cluster", "tracetest", "--store", str(store), str(DEPLOYMENT)]
    assert cli.main(argv) == 0
    reader = StoreReader(store)
    before = reader.digest_rows()
    trace = assemble(
        reader, ObjectQuery(cluster="tracetest", resource="deployments", namespace="default", name="demo")
    )
    reader.close()
    logs = [(log.kind, log.message, node.span) for node in trace.walk() for log in node.span.logs]
    diffs = [message for kind, message, _span in logs if kind == "diff"]
    assert any("status.observedGeneration 1 -> 2" in diff.split("\n") for diff in diffs)
    assert any("spec.replicas 2 -> 4" in diff.split("\n") for diff in diffs)
    snapshots = [
        json.loads(message)
        for kind, message, span in logs
        if kind == "snapshot" and span.key.resource == "deployments"
    ]
    assert [s["metadata"]["name"] for s in snapshots] == ["demo"]
    everything = json.dumps([message for _kind, message, _span in logs])
    assert "managedFields" not in everything
    # Diffs are derived from the input alone, so a second replay changes nothing.
    assert cli.main(argv) == 0
    reader = StoreReader(store)
    assert reader.digest_rows() == before
    reader.close()


SECRET = REPO_ROOT / "samples" / "secret" / "audit.log"
CANARIES = ("kelemetry-canary-4f1d2e", "kelemetry-canary-second-9b7c")


def test_secret_sample_replays_without_its_canary(tmp_path: Path, capsys) -> None:
    import base64

    raw = SECRET.read_text()
    needles = [*CANARIES, *(base64.b64encode(c.encode()).decode() for c in CANARIES)]
    # The recording really holds both values (as typed, or base64 in `data`).
    assert all(c in raw or base64.b64encode(c.encode()).decode() in raw for c in CANARIES)
    store = tmp_path / "k.db"
    assert cli.main(["replay", "--cluster", "tracetest", "--store", str(store), str(SECRET)]) == 0
    reader = StoreReader(store)
    objects = list(reader.objects())
    reader.close()
    outputs = [capsys.readouterr().err]
    for row in objects:
        for fmt in ("tree", "json", "jsonl"):
            argv = [
                "dump",
                "--store",
                str(store),
                "--cluster",
                "tracetest",
                "--resource",
                row.key.resource,
                "--namespace",
                row.key.namespace,
                "--name",
                row.key.name,
                "--format",
                fmt,
            ]
            if cli.main(argv) == 0:
                outputs.append(capsys.readouterr().out)
    outputs.extend(path.read_bytes().decode(errors="replace") for path in tmp_path.glob("k.db*"))
    assert any("data.password <redacted> -> <redacted>" in text for text in outputs)
    for text in outputs:
        for needle in needles:
            assert needle not in text


def test_deployment_sample_with_its_events_in_the_dump(tmp_path: Path, capsys) -> None:
    store = str(tmp_path / "k.db")
    events = DEPLOYMENT.with_name("events.jsonl")
    argv = ["replay", "--quiet", "--cluster", "tracetest", "--store", store, str(DEPLOYMENT), str(events)]
    assert cli.main(argv) == 0
    capsys.readouterr()
    dump = ["dump", "--store", store, "--cluster", "tracetest", "--resource", "deployments", "--name", "demo"]
    assert cli.main(dump) == 0
    tree = capsys.readouterr().out
    assert "Event ScalingReplicaSet (Normal) from deployment-controller" in tree
    assert "Event SuccessfulCreate (Normal) from replicaset-controller" in tree
    assert "Event Scheduled (Normal)" in tree
    assert "status.observedGeneration 1 -> 2" in tree
