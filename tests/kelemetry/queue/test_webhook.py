"""The webhook role of scaled mode against a real nats-server: what lands in the audit stream, and
what the apiserver is answered."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from kelemetry import metrics
from kelemetry.diff.redact import with_rules
from kelemetry.queue import layout
from kelemetry.queue.jetstream import JetStream, Message
from kelemetry.queue.publisher import partition_of_event
from kelemetry.queue.webhook import WebhookReplica, create_app
from kelemetry.receivers.auditwire import decode_batch, decode_line
from kelemetry.settings import WebhookSettings
from tests import promtext
from tests.factories import audit_event, event_list
from tests.natsserver import NatsServer

with warnings.catch_warnings():
    # starlette warns on importing its test client when httpx is installed instead of httpx2.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[3]
DEPLOYMENT = ROOT / "samples" / "deployment" / "audit.log"
CAUSES = ROOT / "samples" / "causes" / "audit.log"
SECRET = ROOT / "samples" / "secret" / "audit.log"
CANARIES = ("kelemetry-canary-4f1d2e", "kelemetry-canary-second-9b7c")
KELEMETRY = str(Path(sys.executable).with_name("kelemetry"))
JSON_BODY = {"Content-Type": "application/json"}
PARTITIONS = 8


def wait_until(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except (httpx.HTTPError, OSError):
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def sample_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def body_of(events: list[dict[str, Any]]) -> bytes:
    return json.dumps(event_list(events)).encode()


def batches(events: list[dict[str, Any]], size: int) -> list[bytes]:
    return [body_of(events[i : i + size]) for i in range(0, len(events), size)]


@contextmanager
def replica(
    server: NatsServer, *, max_stream_bytes: int | None = None, redact: tuple[str, ...] = (), **webhook: Any
) -> Iterator[tuple[WebhookReplica, TestClient]]:
    queue = layout.QueueSettings(url=server.url, partitions=PARTITIONS)
    if max_stream_bytes is not None:
        queue = layout.QueueSettings(url=server.url, partitions=PARTITIONS, max_stream_bytes=max_stream_bytes)
    settings = WebhookSettings(default_cluster="fallback", min_free_bytes=0, **webhook)
    made = WebhookReplica(queue, settings, with_rules(redact), metrics.Registry())
    with TestClient(create_app(made), headers=JSON_BODY) as client:
        wait_until("the replica to be ready", lambda: client.get("/readyz").status_code == 200)
        yield made, client


def stream_messages(server: NatsServer) -> dict[int, list[Message]]:
    """Every message of the audit stream by partition, in stream order."""

    async def read() -> dict[int, list[Message]]:
        stream = await JetStream.connect(
            layout.QueueSettings(url=server.url, partitions=PARTITIONS), "reader"
        )
        found: dict[int, list[Message]] = {}
        try:
            for partition in range(PARTITIONS):
                if not await stream.last_seq(partition):
                    continue
                reader = await stream.reader(partition, 1)
                try:
                    while batch := await reader.fetch(256, timeout=0.5):
                        found.setdefault(partition, []).extend(batch)
                finally:
                    await reader.close()
        finally:
            await stream.close()
        return found

    return asyncio.run(read())


def events_of(messages: list[Message]) -> list[tuple[str, str]]:
    return [(e.auditID, e.stage) for m in messages for e in decode_batch(m.data)]


def metrics_of(client: TestClient) -> dict[str, float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return promtext.samples(response.text)


def assert_refused(response: httpx.Response, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    assert list(response.json()) == ["error", "errors"]
    assert reason in response.json()["error"], response.json()
    assert response.json()["errors"] == [{"code": status, "msg": response.json()["error"]}]


# -----------------------------------------------------------------------------------------------
# What lands in the stream


def mixed_events() -> list[dict[str, Any]]:
    """The recorded samples (namespace default, and four namespaces of causes), Nodes (cluster-scoped),
    and events without an objectRef, interleaved."""
    nodes = [
        audit_event(resource="nodes", namespace="", name=f"node-{i % 5}", verb="patch", audit_id=f"node-{i}")
        for i in range(20)
    ]
    bare = []
    for i in range(3):
        event = audit_event(audit_id=f"bare-{i}", verb="get")
        del event["objectRef"]
        bare.append(event)
    extra = nodes + bare
    recorded = sample_events(DEPLOYMENT) + sample_events(CAUSES)
    step = len(recorded) // len(extra)
    mixed: list[dict[str, Any]] = []
    for i, event in enumerate(recorded):
        mixed.append(event)
        if i % step == 0 and extra:
            mixed.append(extra.pop())
    return mixed + extra


def test_the_samples_land_in_their_partitions_in_order_every_event_once(nats_server: NatsServer) -> None:
    events = mixed_events()
    with replica(nats_server) as (_, client):
        for body in batches(events, 100):
            response = client.post("/audit/tracetest", content=body)
            assert response.status_code == 200, response.text
        values = metrics_of(client)
    found = stream_messages(nats_server)
    assert len(found) >= 4  # namespaces and Nodes spread over the partitions
    expected: dict[int, list[tuple[str, str]]] = {}
    for event in events:
        decoded = decode_line(json.dumps(event).encode(), "sample")[0]
        expected.setdefault(partition_of_event(decoded, PARTITIONS), []).append(
            (decoded.auditID, decoded.stage)
        )
    assert {p: events_of(messages) for p, messages in found.items()} == expected
    for messages in found.values():
        for message in messages:
            assert message.headers[layout.HEADER_CLUSTER] == "tracetest"
            assert 0 < int(message.headers[layout.HEADER_RECEIVED]) <= time.time_ns() // 1000
            assert len(message.headers["Nats-Msg-Id"]) == 64
    published = sum(len(m) for m in found.values())
    assert values["kelemetry_queue_published_events_total"] == len(events)
    assert values['kelemetry_queue_published_messages_total{duplicate="false"}'] == published
    assert values['kelemetry_webhook_responses_total{code="200"}'] == len(batches(events, 100))
    assert values['kelemetry_queue_publish_seconds_count{outcome="ok"}'] == len(batches(events, 100))
    assert values["kelemetry_queue_connected"] == 1


def test_audit_without_a_cluster_publishes_under_the_default_cluster(nats_server: NatsServer) -> None:
    with replica(nats_server) as (_, client):
        response = client.post("/audit", content=body_of([audit_event(audit_id="a-1")]))
        assert response.status_code == 200
        assert response.json() == {"accepted": 1}
        # An empty EventList is acknowledged and publishes nothing.
        assert client.post("/audit", content=body_of([])).json() == {"accepted": 0}
    (messages,) = stream_messages(nats_server).values()
    assert [m.headers[layout.HEADER_CLUSTER] for m in messages] == ["fallback"]


def test_a_reposted_batch_is_a_duplicate_jetstream_drops(nats_server: NatsServer) -> None:
    body = batches(sample_events(DEPLOYMENT), 100)[0]
    with replica(nats_server) as (_, client):
        assert client.post("/audit/tracetest", content=body).status_code == 200
        first = sum(len(m) for m in stream_messages(nats_server).values())
        # The apiserver re-sends after a lost 200: answered 200 again, stored once.
        assert client.post("/audit/tracetest", content=body).status_code == 200
        assert sum(len(m) for m in stream_messages(nats_server).values()) == first
        values = metrics_of(client)
        assert values['kelemetry_queue_published_messages_total{duplicate="true"}'] == first
        # The same events from another cluster are not the same messages.
        assert client.post("/audit/other", content=body).status_code == 200
    assert sum(len(m) for m in stream_messages(nats_server).values()) == 2 * first


def test_a_secrets_values_never_reach_nats(nats_server: NatsServer) -> None:
    raw = SECRET.read_bytes()
    needles = [c.encode() for c in CANARIES] + [base64.b64encode(c.encode()) for c in CANARIES]
    assert any(needle in raw for needle in needles)  # the sample does hold them
    with replica(nats_server) as (_, client):
        response = client.post("/audit/tracetest", content=body_of(sample_events(SECRET)))
        assert response.status_code == 200
    found = stream_messages(nats_server)
    published = b"".join(m.data + json.dumps(m.headers).encode() for ms in found.values() for m in ms)
    assert sum(len(events_of(ms)) for ms in found.values()) == len(sample_events(SECRET))
    for needle in needles:
        assert needle not in published


def test_redact_rules_apply_before_nats(nats_server: NatsServer) -> None:
    config = {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"name": "cm"},
        "data": {"k": "hidden-7c1e"},
    }
    event = audit_event(resource="configmaps", kind="ConfigMap", audit_id="cm-1", request_object=config)
    with replica(nats_server, redact=("configmaps:data",)) as (_, client):
        assert client.post("/audit/c", content=body_of([event])).status_code == 200
    (messages,) = stream_messages(nats_server).values()
    assert [audit_id for audit_id, _ in events_of(messages)] == ["cm-1"]
    assert b"hidden-7c1e" not in messages[0].data


def test_a_partition_over_the_message_limit_is_cut_into_chunks_in_order(nats_server: NatsServer) -> None:
    blob = "x" * (1024 * 1024)
    events = [
        audit_event(
            name=f"big-{i}", uid=f"u-{i}", audit_id=f"big-{i}", request_object={"kind": "Pod", "note": blob}
        )
        for i in range(12)
    ]
    with replica(nats_server, max_body_bytes=64 * 1024 * 1024) as (_, client):
        assert client.post("/audit/c", content=body_of(events)).status_code == 200
    (messages,) = stream_messages(nats_server).values()
    assert len(messages) == 2  # 12 MB of one namespace under an 8 MB max_payload
    assert all(len(m.data) <= 8 * 1024 * 1024 - 4096 for m in messages)
    assert [audit_id for audit_id, _ in events_of(messages)] == [f"big-{i}" for i in range(12)]


# -----------------------------------------------------------------------------------------------
# Refusals: the embedded webhook's answers, and the queue's


def test_bad_input_is_refused_with_the_reason_and_nothing_published(nats_server: NatsServer) -> None:
    with replica(nats_server, max_body_bytes=1024, token="s3cret") as (_, client):
        good = body_of([audit_event(audit_id="a-1")])
        assert_refused(client.post("/audit/c", content=good), 401, "bearer token")
        auth = {"Authorization": "Bearer s3cret"}
        assert_refused(client.post("/audit/c", content=b"x" * 2048, headers=auth), 413, "1024-byte limit")
        assert_refused(client.post("/audit/c", content=b"{not json", headers=auth), 400, "")
        wrong = json.dumps({"kind": "Pod", "apiVersion": "v1"}).encode()
        assert_refused(client.post("/audit/c", content=wrong, headers=auth), 422, "apiVersion")
        future = body_of([audit_event(audit_id="f", received="2999-01-01T00:00:00Z")])
        assert_refused(client.post("/audit/c", content=future, headers=auth), 422, "--max-clock-skew")
        assert_refused(client.post("/audit/c%0A", content=good, headers=auth), 400, "invalid cluster name")
        assert client.get("/metrics").status_code == 401  # the token guards /metrics too
        values = metrics_of_with(client, auth)
        assert values['kelemetry_webhook_responses_total{code="401"}'] == 1
        assert values['kelemetry_webhook_responses_total{code="422"}'] == 2
    assert stream_messages(nats_server) == {}


def metrics_of_with(client: TestClient, headers: dict[str, str]) -> dict[str, float]:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200
    return promtext.samples(response.text)


def test_an_event_over_the_message_limit_is_refused_by_its_audit_id(nats_server: NatsServer) -> None:
    huge = audit_event(audit_id="too-big", request_object={"kind": "Pod", "note": "x" * (9 * 1024 * 1024)})
    with replica(nats_server) as (_, client):
        body = body_of([audit_event(audit_id="fine"), huge])
        assert_refused(client.post("/audit/c", content=body), 413, "event 'too-big' is")
    assert stream_messages(nats_server) == {}


def test_a_full_stream_is_answered_429_with_retry_after(nats_server: NatsServer) -> None:
    events = sample_events(DEPLOYMENT)
    with replica(nats_server, max_stream_bytes=64 * 1024) as (_, client):
        answers = [client.post("/audit/tracetest", content=body) for body in batches(events, 20)]
        codes = [a.status_code for a in answers]
        assert codes[0] == 200 and 429 in codes, codes
        full = answers[codes.index(429)]
        assert_refused(full, 429, "the audit stream is full")
        assert full.headers["Retry-After"] == "1"
        values = metrics_of(client)
        assert values['kelemetry_webhook_responses_total{code="429"}'] == codes.count(429)
        assert values['kelemetry_queue_publish_seconds_count{outcome="full"}'] == codes.count(429)


def test_nats_away_is_503_with_the_reason_and_back_is_200(nats_server: NatsServer) -> None:
    body = body_of([audit_event(audit_id="a-1")])
    with replica(nats_server) as (_, client):
        assert client.post("/audit/c", content=body).status_code == 200
        nats_server.stop()
        wait_until("the loss to be seen", lambda: client.get("/readyz").status_code == 503)
        assert "NATS" in client.get("/readyz").json()["reasons"][0]
        refused = client.post("/audit/c", content=body_of([audit_event(audit_id="a-2")]))
        assert_refused(refused, 503, "NATS")
        assert refused.headers["Retry-After"] == "1"
        assert metrics_of(client)["kelemetry_queue_connected"] == 0
        nats_server.start()
        wait_until("the replica to reconnect", lambda: client.get("/readyz").status_code == 200)
        assert client.post("/audit/c", content=body_of([audit_event(audit_id="a-2")])).status_code == 200
    ids = [audit_id for ms in stream_messages(nats_server).values() for audit_id, _ in events_of(ms)]
    assert ids == ["a-1", "a-2"]


def test_bytes_in_flight_past_the_backlog_are_answered_429_at_once(nats_server: NatsServer) -> None:
    assert nats_server.process is not None
    first = body_of([audit_event(audit_id="slow")])
    with replica(nats_server, max_backlog_bytes=len(first) + 10) as (made, client):
        os.kill(nats_server.process.pid, signal.SIGSTOP)  # the server takes the batch and does not answer
        answers: list[int] = []
        try:
            slow = threading.Thread(
                target=lambda: answers.append(client.post("/audit/c", content=first).status_code)
            )
            slow.start()
            wait_until("the first batch to be in flight", lambda: made.inflight_bytes)
            started = time.monotonic()
            second = client.post("/audit/c", content=body_of([audit_event(audit_id="next")]))
            assert time.monotonic() - started < 1.0  # refused at once, not blocked behind the first
            assert_refused(second, 429, "--max-backlog")
            assert second.headers["Retry-After"] == "1"
        finally:
            os.kill(nats_server.process.pid, signal.SIGCONT)
        slow.join(20)
        assert answers == [200]
    ids = [audit_id for ms in stream_messages(nats_server).values() for audit_id, _ in events_of(ms)]
    assert ids == ["slow"]


# -----------------------------------------------------------------------------------------------
# The command


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_role_webhook_starts_before_nats_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats")  # not started yet: the replica must wait for it
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            KELEMETRY,
            "serve",
            "--queue",
            server.url,
            "--role",
            "webhook",
            "--listen",
            f"127.0.0.1:{port}",
            "--partitions",
            str(PARTITIONS),
            "--cluster",
            "tracetest",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        not_ready = wait_until("the replica to listen", lambda: httpx.get(f"{base}/readyz"))
        assert not_ready.status_code == 503
        assert server.url in not_ready.json()["reasons"][0]
        assert httpx.get(f"{base}/healthz").status_code == 200
        refused = httpx.post(f"{base}/audit", content=body_of([audit_event()]), headers=JSON_BODY)
        assert refused.status_code == 503
        server.start()
        wait_until("the replica to connect", lambda: httpx.get(f"{base}/readyz").status_code == 200)
        events = sample_events(DEPLOYMENT)
        for body in batches(events, 100):
            response = httpx.post(f"{base}/audit", content=body, headers=JSON_BODY)
            assert response.status_code == 200, response.text
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
        # uvicorn ends by raising the signal again once shut down (as `serve` does): drained first.
        assert process.returncode in (0, -signal.SIGTERM), stderr
        assert b"NATS connection closed" in stderr
        assert b"webhook replica listening on" in stderr
        assert server.url.encode() in stderr and b"Traceback" not in stderr
        found = stream_messages(server)
        assert Counter(m.headers[layout.HEADER_CLUSTER] for ms in found.values() for m in ms) == {
            "tracetest": sum(len(ms) for ms in found.values())
        }
        assert sum(len(events_of(ms)) for ms in found.values()) == len(events)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        server.stop()


def test_serve_role_webhook_refuses_bad_flags_in_one_line() -> None:
    result = subprocess.run(
        [KELEMETRY, "serve", "--queue", "http://x:1", "--role", "webhook"], capture_output=True, timeout=60
    )
    assert result.returncode != 0
    assert result.stderr.decode().strip().count("\n") == 0
    assert "not a NATS address" in result.stderr.decode()
