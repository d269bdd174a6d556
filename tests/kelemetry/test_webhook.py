"""The audit webhook and the `serve` app (kelemetry.receivers.webhook, kelemetry.app) over HTTP.

Covers: a valid EventList (or a lone Event) to /audit/<cluster> and /audit answered 200 with the
event count and traced under that cluster; every kind of bad input answered with its 4xx and a JSON
reason, counted in /metrics, and never partly written (not JSON, not UTF-8, wrong kind or
apiVersion, items not a list, one bad item among good ones, a field of the wrong JSON type, empty
body, bad cluster name, a body over the limit declared by Content-Length or streamed without one);
an event whose body cannot be used (a 5,000-digit number, a list for a name) stored without it,
also beside a Secret that must be scrubbed; the bearer token; 429 with
Retry-After once the backlog is full; /healthz, /metrics and /; the collector's retention pass (by
arrival, counted in /metrics); durability: a batch accepted while the worker is stopped is processed
exactly once by the next collector on the same store, the same body twice in the inbox and a retried
POST leave one copy of each span. Last, the real
`kelemetry serve` process: a batch posted with httpx reaches the store, and after SIGKILL in the
middle of a stream of batches a restart on the same store holds every acknowledged audit ID once.
"""

from __future__ import annotations

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
import pytest

from kelemetry.app import Collector, create_app
from kelemetry.model import tags
from kelemetry.model.events import TraceSource
from kelemetry.settings import ServeSettings, StoreSettings, WebhookSettings
from kelemetry.store.inbox import Inbox
from kelemetry.store.sqlite import StoreReader
from tests import promtext
from tests.factories import audit_event, event_list, hierarchy_events, write_arrived

with warnings.catch_warnings():
    # starlette 1.10 warns on importing its test client when httpx (the project's dev dependency)
    # is installed instead of httpx2; the warning is about the environment, not the code under test.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

KELEMETRY = str(Path(sys.executable).with_name("kelemetry"))
WAIT = 10.0
# kube-apiserver's webhook sends JSON and says so; the webhook refuses anything else (415).
JSON_BODY = {"Content-Type": "application/json"}


def body_of(events: list[dict[str, Any]], **overrides: Any) -> bytes:
    return json.dumps({**event_list(events), **overrides}).encode()


def pod_events(prefix: str, count: int) -> list[dict[str, Any]]:
    return [
        audit_event(name=f"{prefix}-{i}", uid=f"uid-{prefix}-{i}", audit_id=f"{prefix}-{i}")
        for i in range(count)
    ]


def settings_for(store_path: Path, **webhook: Any) -> ServeSettings:
    return ServeSettings(store=StoreSettings(path=str(store_path)), webhook=WebhookSettings(**webhook))


@contextmanager
def serving(store_path: Path, **webhook: Any) -> Iterator[tuple[Collector, TestClient]]:
    """A collector behind the app; the client's context runs the lifespan that starts and stops it."""
    collector = Collector(settings_for(store_path, **webhook))
    with TestClient(create_app(collector), headers=JSON_BODY) as client:
        yield collector, client


def audit_ids(store_path: Path) -> Counter[str]:
    reader = StoreReader(store_path)
    try:
        return Counter(
            str(span.tags[tags.AUDIT_ID]) for span in reader.all_spans() if span.source is TraceSource.AUDIT
        )
    finally:
        reader.close()


def metrics_of_text(text: str) -> dict[str, float]:
    return promtext.samples(text)


def metrics_of(client: TestClient) -> dict[str, float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return metrics_of_text(response.text)


def assert_refused(response: httpx.Response, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert list(response.json()) == ["error", "errors"]
    assert reason in response.json()["error"]
    assert response.json()["errors"] == [{"code": status, "msg": response.json()["error"]}]


# ---------------------------------------------------------------------------------------------
# Accepted batches


def test_a_valid_batch_is_answered_with_its_count_and_traced_under_the_cluster_of_the_path(
    tmp_path: Path,
) -> None:
    store = tmp_path / "k.db"
    with serving(store) as (collector, client):
        response = client.post("/audit/prod-eu.1", content=body_of(hierarchy_events()))

        assert response.status_code == 200
        assert response.json() == {"accepted": 3}
        assert collector.ingestor.wait_idle(5)
        spans = collector.store.all_spans()
        assert metrics_of(client)["kelemetry_webhook_accepted_total"] == 1

    assert audit_ids(store) == Counter({"dep": 1, "rs": 1, "pod": 1})
    assert {span.key.cluster for span in spans} == {"prod-eu.1"}
    assert len({span.trace_id for span in spans}) == 1, "the Deployment's tree is one trace"
    assert Counter(span.source for span in spans) == Counter({TraceSource.OBJECT: 3, TraceSource.AUDIT: 3})


def test_audit_without_a_cluster_uses_the_default_cluster(tmp_path: Path) -> None:
    store = tmp_path / "k.db"
    events = pod_events("web", 2)
    with serving(store, default_cluster="home") as (collector, client):
        response = client.post("/audit", content=body_of(events))
        assert response.json() == {"accepted": 2}
        assert collector.ingestor.wait_idle(5)

    reader = StoreReader(store)
    assert {span.key.cluster for span in reader.all_spans()} == {"home"}
    reader.close()
    assert audit_ids(store) == Counter(["web-0", "web-1"])


def test_a_lone_event_and_an_empty_event_list_are_accepted(tmp_path: Path) -> None:
    store = tmp_path / "k.db"
    with serving(store) as (collector, client):
        lone = client.post("/audit/c1", content=json.dumps(audit_event(audit_id="alone")).encode())
        empty = client.post("/audit/c1", content=body_of([]))
        assert collector.ingestor.wait_idle(5)

    assert (lone.status_code, lone.json()) == (200, {"accepted": 1})
    assert (empty.status_code, empty.json()) == (200, {"accepted": 0})
    assert audit_ids(store) == Counter(["alone"])


# ---------------------------------------------------------------------------------------------
# Refused input: the right status, a JSON reason, a counter, and nothing written


GOOD = audit_event(audit_id="good-before")
GOOD_AFTER = audit_event(name="web-9", uid="uid-web-9", audit_id="good-after")


@pytest.mark.parametrize(
    ("content", "status", "reason", "counter"),
    [
        (b'{"kind": "EventList", "items": [', 400, "not valid JSON", "malformed"),
        (
            b'{"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [], "x": "\xff"}',
            400,
            "not valid UTF-8",
            "malformed",
        ),
        (b"", 400, "empty body", "malformed"),
        (body_of([GOOD], kind="PodList"), 422, "PodList", "wrong_kind"),
        (body_of([GOOD], apiVersion="v1"), 422, "apiVersion 'v1'", "wrong_kind"),
        (body_of([], items={"0": GOOD}), 422, "items: Expected array | null, got object", "wrong_kind"),
        (body_of([GOOD, {"kind": "Pod", "apiVersion": "v1"}, GOOD_AFTER]), 422, "items[1]", "wrong_kind"),
        (body_of([GOOD, {**GOOD_AFTER, "auditID": ""}]), 422, "items[1] has no auditID", "wrong_kind"),
        (json.dumps([GOOD]).encode(), 422, "body: Expected object, got array", "wrong_kind"),
        # A field of the wrong JSON type is refused at the edge, with its path.
        (
            body_of([GOOD, {**GOOD_AFTER, "user": "alice"}]),
            422,
            "items[1].user: Expected object | null, got str",
            "wrong_kind",
        ),
        (
            body_of([GOOD, {**GOOD_AFTER, "userAgent": ["x"]}]),
            422,
            "items[1].userAgent: Expected str",
            "wrong_kind",
        ),
        (
            body_of([GOOD, {**GOOD_AFTER, "objectRef": {**GOOD_AFTER["objectRef"], "name": None}}]),
            422,
            "items[1].objectRef.name: Expected str, got null",
            "wrong_kind",
        ),
        (
            body_of([GOOD, {**GOOD_AFTER, "auditID": 5}]),
            422,
            "items[1].auditID: Expected str, got int",
            "wrong_kind",
        ),
    ],
    ids=[
        "not-json",
        "not-utf8",
        "empty",
        "wrong-kind",
        "wrong-api-version",
        "items-not-a-list",
        "one-bad-item-among-good",
        "item-without-audit-id",
        "array",
        "user-a-string",
        "user-agent-a-list",
        "object-ref-name-null",
        "audit-id-a-number",
    ],
)
def test_bad_input_is_refused_with_a_reason_counted_and_nothing_of_it_written(
    tmp_path: Path, content: bytes, status: int, reason: str, counter: str
) -> None:
    store = tmp_path / "k.db"
    with serving(store) as (collector, client):
        response = client.post("/audit/c1", content=content)

        assert_refused(response, status, reason)
        assert collector.inbox.count() == 0
        assert collector.ingestor.wait_idle(5)
        metrics = metrics_of(client)
        assert metrics[f"kelemetry_webhook_{counter}_total"] == 1
        assert "kelemetry_webhook_accepted_total" not in metrics

    assert audit_ids(store) == Counter(), "no half write: the good items of a refused batch are not kept"


def _with_huge_number(event: dict[str, Any]) -> bytes:
    """``event`` as JSON whose response body also holds a 5,000-digit number (valid JSON, no float)."""
    text = json.dumps(event)
    marked = text.replace('"responseObject": {', '"responseObject": {"n": ' + "7" * 5000 + ", ", 1)
    assert marked != text
    return marked.encode()


def _odd_name(event: dict[str, Any]) -> bytes:
    """``event`` as JSON whose response body names the object with a list."""
    event["responseObject"]["metadata"]["name"] = [event["responseObject"]["metadata"]["name"]]
    return json.dumps(event).encode()


@pytest.mark.parametrize(
    "odd",
    [
        pytest.param(_with_huge_number, id="number-beyond-any-float"),
        pytest.param(_odd_name, id="name-a-list"),
    ],
)
def test_an_event_with_an_odd_body_is_stored_without_it_and_the_next_batch_is_fine(
    tmp_path: Path, odd: Callable[[dict[str, Any]], bytes]
) -> None:
    # Bodies are judged when read: what cannot be used is treated as absent, the event is kept.
    store = tmp_path / "k.db"
    event = audit_event(verb="update", code=200, name="web-0", uid="uid-web-0", audit_id="odd")
    body = b'{"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [' + odd(event) + b"]}"
    with serving(store) as (collector, client):
        first = client.post("/audit/c1", content=body)
        assert collector.ingestor.wait_idle(5)
        then = client.post("/audit/c1", content=body_of(pod_events("next", 2)))
        assert collector.ingestor.wait_idle(5)
        metrics = metrics_of(client)
        spans = collector.store.all_spans()

    assert (first.status_code, first.json()) == (200, {"accepted": 1})
    assert (then.status_code, then.json()) == (200, {"accepted": 2})
    assert audit_ids(store) == Counter(["odd", "next-0", "next-1"])
    assert metrics.get("kelemetry_ingest_batches_failed_total", 0) == 0
    assert metrics.get("kelemetry_ingest_events_failed_total", 0) == 0
    assert metrics["kelemetry_ingest_events_kept_total"] == 3
    (odd_span,) = [span for span in spans if span.tags.get(tags.AUDIT_ID) == "odd"]
    assert odd_span.key.name == "web-0", "named by its objectRef"


def test_a_secret_beside_a_body_with_a_huge_number_is_accepted_and_scrubbed(tmp_path: Path) -> None:
    # The edge accepts the huge number (a body is not checked); scrubbing the Secret in the same batch
    # must not then fail on it.
    store = tmp_path / "k.db"
    huge = audit_event(verb="update", code=200, name="web-0", uid="uid-web-0", audit_id="huge")
    secret = audit_event(
        verb="update", code=200, resource="secrets", kind="Secret", name="db", audit_id="secret"
    )
    secret["responseObject"]["data"] = {"password": "c2VjcmV0LXZhbHVl"}
    body = (
        b'{"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": ['
        + _with_huge_number(huge)
        + b", "
        + json.dumps(secret).encode()
        + b"]}"
    )
    with serving(store) as (collector, client):
        response = client.post("/audit/c1", content=body)
        assert collector.ingestor.wait_idle(5)

    assert (response.status_code, response.json()) == (200, {"accepted": 2})
    assert audit_ids(store) == Counter(["huge", "secret"])
    for path in tmp_path.glob("k.db*"):
        assert b"c2VjcmV0LXZhbHVl" not in path.read_bytes(), path.name


@pytest.mark.parametrize(
    "path",
    [
        "/audit/bad%20name",
        "/audit/-leading-dash",
        "/audit/trailing-dot.",
        "/audit/under_score_",
        "/audit/" + "a" * 64,
        "/audit/%C3%BCmlaut",
        "/audit/semi;colon",
        "/audit/trailing-newline%0A",
    ],
)
def test_an_invalid_cluster_name_in_the_path_is_refused(tmp_path: Path, path: str) -> None:
    with serving(tmp_path / "k.db") as (collector, client):
        response = client.post(path, content=body_of(pod_events("web", 1)))

        assert_refused(response, 400, "invalid cluster name")
        assert metrics_of(client)["kelemetry_webhook_bad_cluster_total"] == 1
        assert collector.inbox.count() == 0


def test_the_longest_valid_cluster_name_is_accepted(tmp_path: Path) -> None:
    name = "a" + "b-._" * 15 + "c"  # 62 characters of every allowed kind
    longest = "z" * 63
    with serving(tmp_path / "k.db") as (collector, client):
        assert client.post(f"/audit/{name}", content=body_of(pod_events("x", 1))).status_code == 200
        assert client.post(f"/audit/{longest}", content=body_of(pod_events("y", 1))).status_code == 200
        assert collector.ingestor.wait_idle(5)
        clusters = {span.key.cluster for span in collector.store.all_spans()}
    assert clusters == {name, longest}


def test_a_body_over_the_limit_with_an_honest_content_length_is_refused_413(tmp_path: Path) -> None:
    events = pod_events("big", 4)
    body = body_of(events)
    with serving(tmp_path / "k.db", max_body_bytes=len(body) - 1) as (collector, client):
        response = client.post("/audit/c1", content=body)

        assert response.request.headers["content-length"] == str(len(body))
        assert_refused(response, 413, f"body of {len(body)} bytes is over the {len(body) - 1}-byte limit")
        assert metrics_of(client)["kelemetry_webhook_too_large_total"] == 1
        assert collector.inbox.count() == 0
    assert audit_ids(tmp_path / "k.db") == Counter()


def test_a_body_exactly_at_the_limit_is_accepted(tmp_path: Path) -> None:
    body = body_of(pod_events("fits", 4))
    with serving(tmp_path / "k.db", max_body_bytes=len(body)) as (collector, client):
        assert client.post("/audit/c1", content=body).json() == {"accepted": 4}
        assert collector.ingestor.wait_idle(5)
    assert sum(audit_ids(tmp_path / "k.db").values()) == 4


def _chunks(body: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_a_streamed_body_without_content_length_over_the_limit_is_refused_413(tmp_path: Path) -> None:
    body = body_of(pod_events("stream", 20))
    limit = len(body) // 2
    with serving(tmp_path / "k.db", max_body_bytes=limit) as (collector, client):
        response = client.post("/audit/c1", content=_chunks(body, 256))

        assert "content-length" not in response.request.headers
        assert response.request.headers["transfer-encoding"] == "chunked"
        assert_refused(response, 413, f"over the {limit}-byte limit")
        assert metrics_of(client)["kelemetry_webhook_too_large_total"] == 1
        assert collector.inbox.count() == 0
    assert audit_ids(tmp_path / "k.db") == Counter()


def test_a_streamed_body_within_the_limit_is_accepted(tmp_path: Path) -> None:
    events = pod_events("stream", 20)
    body = body_of(events)
    with serving(tmp_path / "k.db", max_body_bytes=len(body)) as (collector, client):
        response = client.post("/audit/c1", content=_chunks(body, 256))
        assert "content-length" not in response.request.headers
        assert response.json() == {"accepted": 20}
        assert collector.ingestor.wait_idle(5)
    assert audit_ids(tmp_path / "k.db") == Counter(e["auditID"] for e in events)


def test_the_bearer_token_is_required_when_configured(tmp_path: Path) -> None:
    body = body_of(pod_events("authz", 1))
    with serving(tmp_path / "k.db", token="s3cret") as (collector, client):
        missing = client.post("/audit/c1", content=body)
        wrong = client.post("/audit/c1", content=body, headers={"Authorization": "Bearer s3cre"})
        no_scheme = client.post("/audit", content=body, headers={"Authorization": "s3cret"})
        longer = client.post("/audit/c1", content=body, headers={"Authorization": "Bearer s3cret2"})
        assert collector.inbox.count() == 0
        right = client.post("/audit/c1", content=body, headers={"Authorization": "Bearer s3cret"})
        assert collector.ingestor.wait_idle(5)
        client.headers["Authorization"] = "Bearer s3cret"  # /metrics needs the token too
        metrics = metrics_of(client)
        del client.headers["Authorization"]
        health = client.get("/healthz")

    for refused in (missing, wrong, no_scheme, longer):
        assert_refused(refused, 401, "bearer token")
    assert "s3cret" not in missing.text + wrong.text
    assert (right.status_code, right.json()) == (200, {"accepted": 1})
    assert metrics["kelemetry_webhook_unauthorized_total"] == 4
    assert metrics["kelemetry_webhook_accepted_total"] == 1
    assert health.status_code == 200, "health checks need no token"
    assert audit_ids(tmp_path / "k.db") == Counter(["authz-0"])


def test_a_full_backlog_is_answered_429_with_retry_after(tmp_path: Path) -> None:
    store = tmp_path / "k.db"
    first, second = pod_events("first", 2), pod_events("second", 2)
    with serving(store, max_backlog_bytes=len(body_of(first)) + 10) as (collector, client):
        # With the worker stopped nothing leaves the backlog, so the second batch cannot fit.
        collector.ingestor.stop()
        accepted = client.post("/audit/c1", content=body_of(first))
        throttled = client.post("/audit/c1", content=body_of(second))
        metrics = metrics_of(client)
        assert collector.inbox.count() == 1

    assert (accepted.status_code, accepted.json()) == (200, {"accepted": 2})
    assert_refused(throttled, 429, "backlog")
    assert throttled.headers["retry-after"] == "1"
    assert metrics["kelemetry_webhook_throttled_total"] == 1
    assert metrics["kelemetry_ingest_batches_throttled_total"] == 1
    assert metrics["kelemetry_ingest_backlog_bytes"] == len(body_of(first))


# ---------------------------------------------------------------------------------------------
# Health, metrics, index


def test_healthz_metrics_and_index(tmp_path: Path) -> None:
    store = tmp_path / "k.db"
    with serving(store, default_cluster="home") as (collector, client):
        client.post("/audit/c1", content=body_of(hierarchy_events()))
        client.post("/audit/c1", content=b"nope")
        assert collector.ingestor.wait_idle(5)
        health = client.get("/healthz")
        metrics = client.get("/metrics")
        index = client.get("/api/kelemetry/status")

    assert (health.status_code, health.json()) == (200, {"status": "ok"})

    # Prometheus' text exposition format, read back by the client library's own parser.
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    values = metrics_of_text(metrics.text)
    assert values["kelemetry_webhook_accepted_total"] == 1
    assert values["kelemetry_webhook_malformed_total"] == 1
    assert values["kelemetry_ingest_batches_accepted_total"] == 1
    assert values["kelemetry_ingest_batches_rejected_total"] == 1
    assert values["kelemetry_ingest_events_received_total"] == 3
    assert values["kelemetry_ingest_spans_written_total"] == 6
    assert values['kelemetry_audit_events_total{outcome="kept"}'] == 3
    assert values["kelemetry_ingest_backlog_bytes"] == 0
    assert values["kelemetry_owner_graph_objects"] == 3

    document = index.json()
    assert document["service"] == "kelemetry"
    assert "default cluster: home" in document["webhook"]
    assert document["store"] == str(store)
    assert document["counts"] == {"spans_object": 3, "spans_audit": 3, "objects": 3}


def test_the_collectors_retention_pass_counts_from_arrival_and_shows_in_metrics(tmp_path: Path) -> None:
    store = tmp_path / "k.db"
    now = time.time_ns() // 1000
    write_arrived(store, "gone", now - 8 * 86_400_000_000, traces=2)
    write_arrived(store, "kept", now - 6 * 86_400_000_000, traces=1)
    with serving(store) as (collector, client):
        report = collector.apply_retention()  # the default 7d, by the wall clock
        assert report.lines() == [
            "cluster gone: 2 traces, 4 spans, 1 object removed",
            "total: 2 traces, 4 spans, 1 object removed",
        ]
        assert collector.apply_retention().lines() == ["nothing to remove"]
        metrics = metrics_of(client)
    assert metrics["kelemetry_retention_removed_traces_total"] == 2
    assert metrics["kelemetry_retention_removed_spans_total"] == 4
    assert metrics["kelemetry_retention_removed_objects_total"] == 1
    reader = StoreReader(store)
    try:
        assert {span.key.cluster for span in reader.all_spans()} == {"kept"}
    finally:
        reader.close()


# ---------------------------------------------------------------------------------------------
# Durability


def test_a_batch_accepted_while_the_worker_is_stopped_is_processed_once_by_the_next_collector(
    tmp_path: Path,
) -> None:
    store = tmp_path / "k.db"
    events = hierarchy_events()
    with serving(store) as (collector, client):
        collector.ingestor.stop()
        assert client.post("/audit/c1", content=body_of(events)).status_code == 200
        assert not collector.ingestor.wait_idle(0.05)
    # The collector stopped with the batch unprocessed; it is on disk, not in the store.
    inbox = Inbox(tmp_path / "k.db.inbox")
    assert inbox.count() == 1
    inbox.close()
    assert audit_ids(store) == Counter()

    with serving(store) as (collector, _client):
        assert collector.ingestor.wait_idle(5)
        assert collector.inbox.count() == 0
        spans = collector.store.all_spans()

    assert audit_ids(store) == Counter({"dep": 1, "rs": 1, "pod": 1})
    assert len(spans) == len({span.span_id for span in spans}) == 6


def test_the_same_body_twice_in_the_inbox_leaves_one_copy_of_each_span(tmp_path: Path) -> None:
    store = tmp_path / "k.db"
    body = body_of(hierarchy_events())
    inbox = Inbox(tmp_path / "k.db.inbox")
    inbox.put("c1", body, 1)
    inbox.put("c1", body, 2)
    inbox.close()

    with serving(store) as (collector, _client):
        assert collector.ingestor.wait_idle(5)
        assert collector.inbox.count() == 0
        spans = collector.store.all_spans()

    assert audit_ids(store) == Counter({"dep": 1, "rs": 1, "pod": 1})
    assert len(spans) == len({span.span_id for span in spans}) == 6


def test_a_retried_post_of_the_same_batch_leaves_one_copy_of_each_span(tmp_path: Path) -> None:
    store = tmp_path / "k.db"
    body = body_of(hierarchy_events())
    with serving(store) as (collector, client):
        assert client.post("/audit/c1", content=body).status_code == 200
        assert collector.ingestor.wait_idle(5)
        digest = collector.store.digest_rows()
        assert client.post("/audit/c1", content=body).status_code == 200
        assert collector.ingestor.wait_idle(5)
        assert collector.store.digest_rows() == digest


# ---------------------------------------------------------------------------------------------
# The real `kelemetry serve` process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServeProcess:
    def __init__(self, store: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {k: v for k, v in os.environ.items() if k != "KELEMETRY_TOKEN"}
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [KELEMETRY, "serve", "--listen", f"127.0.0.1:{self.port}", "--store", str(store)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"kelemetry serve exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        pytest.fail(f"kelemetry serve did not become healthy in {timeout}s:\n{self.log.read_text()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


# Big enough batches that the worker usually lags behind the answers, so the killed process most
# often leaves acknowledged batches in the inbox for the restart to recover (timing, so not asserted).
PER_BATCH = 40


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[Path], ServeProcess]]:
    """Starts `kelemetry serve` processes; every one is killed at teardown, whatever happened."""
    started: list[ServeProcess] = []

    def start(store: Path) -> ServeProcess:
        server = ServeProcess(store, tmp_path / f"serve-{len(started)}.log")
        started.append(server)
        server.wait_ready()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.kill()


def wait_for_audit_ids(store: Path, expected: set[str], timeout: float = 15.0) -> Counter[str]:
    """Polls the store of another process until it holds every expected audit ID."""
    deadline = time.monotonic() + timeout
    while True:
        found = audit_ids(store)
        if expected <= set(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_the_serve_command_traces_a_posted_batch(
    tmp_path: Path, serve: Callable[[Path], ServeProcess]
) -> None:
    store = tmp_path / "k.db"
    server = serve(store)
    events = hierarchy_events()

    response = httpx.post(f"{server.url}/audit/live", content=body_of(events), headers=JSON_BODY, timeout=10)

    assert (response.status_code, response.json()) == (200, {"accepted": 3})
    found = wait_for_audit_ids(store, {"dep", "rs", "pod"})
    assert found == Counter({"dep": 1, "rs": 1, "pod": 1})
    reader = StoreReader(store)
    spans = reader.all_spans()
    reader.close()
    assert {span.key.cluster for span in spans} == {"live"}
    assert len({span.trace_id for span in spans}) == 1


def test_every_acknowledged_batch_survives_sigkill_mid_stream_exactly_once(
    tmp_path: Path, serve: Callable[[Path], ServeProcess]
) -> None:
    store = tmp_path / "k.db"
    server = serve(store)
    batches = [
        [
            audit_event(name=f"pod-{n}-{i}", uid=f"uid-{n}-{i}", audit_id=f"kill-{n:02d}-{i}")
            for i in range(PER_BATCH)
        ]
        for n in range(30)
    ]
    acknowledged: list[str] = []
    halfway, killed = threading.Event(), threading.Event()
    outcomes: list[str] = []

    def post_all() -> None:
        with httpx.Client(base_url=server.url, headers=JSON_BODY, timeout=10) as client:
            for n, events in enumerate(batches):
                if n == 10:
                    halfway.set()
                if n == 15:
                    # Batches 10-14 race the kill; the rest are certainly posted after it.
                    killed.wait(WAIT)
                try:
                    response = client.post("/audit/crash", content=body_of(events))
                except httpx.TransportError as exc:
                    outcomes.append(f"transport error: {type(exc).__name__}")
                    continue
                outcomes.append(str(response.status_code))
                if response.status_code == 200:
                    acknowledged.extend(event["auditID"] for event in events)

    poster = threading.Thread(target=post_all, name="poster")
    poster.start()
    try:
        assert halfway.wait(WAIT)
        server.kill()
    finally:
        killed.set()
        poster.join(WAIT * 3)
    assert not poster.is_alive()

    assert len(outcomes) == 30
    assert 10 * PER_BATCH <= len(acknowledged) <= 15 * PER_BATCH, outcomes
    assert all(outcome == "200" or outcome.startswith("transport error") for outcome in outcomes), outcomes
    assert all(outcome != "200" for outcome in outcomes[15:])

    serve(store)
    found = wait_for_audit_ids(store, set(acknowledged))
    missing = set(acknowledged) - set(found)
    assert not missing, f"acknowledged but lost: {sorted(missing)}"
    assert all(found[audit_id] == 1 for audit_id in acknowledged)
    assert max(found.values()) == 1
