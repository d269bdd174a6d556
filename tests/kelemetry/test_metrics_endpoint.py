"""/metrics of `kelemetry serve` and `kelemetry frontend`, read with the Prometheus client's own parser:
the request metrics a webhook batch and our recorded Deployment lifecycle produce (requests by
verb and user, the latency histogram, the ``other`` user past the bound), the collector's own
state, the query latency per route template, and the token in front of it all.
The registry alone is test_metrics.py; the label rules in detail are receivers/test_requests.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from warnings import catch_warnings, filterwarnings

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from frontend import query
from frontend.access import AccessPolicy
from kelemetry import cli, metrics
from kelemetry import pipeline as pipelines
from kelemetry.app import Collector, build_app, create_app
from kelemetry.kube.kinds import KindResolver
from kelemetry.receivers.auditfiles import FileStats, read_audit_file
from kelemetry.receivers.requests import RequestMetrics
from kelemetry.settings import (
    OtlpSettings,
    RequestMetricsSettings,
    ServeSettings,
    StoreSettings,
    TraceSettings,
    WebhookSettings,
)
from kelemetry.store.sqlite import SpanStore
from tests import promtext
from tests.factories import audit_event, event_list
from tests.kelemetry.test_webhook import free_port

with catch_warnings():
    filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "metrics-token-1234"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
JSON_BODY = {"Content-Type": "application/json"}
REQUESTS = "kelemetry_audit_requests_total"
DURATION = "kelemetry_audit_request_duration_seconds"


def requests_key(**labels: str) -> str:
    return REQUESTS + "{" + ",".join(f'{key}="{labels[key]}"' for key in sorted(labels)) + "}"


@contextmanager
def serving(tmp_path: Path, max_users: int = 20) -> Iterator[tuple[Collector, TestClient]]:
    settings = ServeSettings(
        store=StoreSettings(path=str(tmp_path / "k.db")),
        webhook=WebhookSettings(token=TOKEN),
        request_metrics=RequestMetricsSettings(max_users=max_users),
    )
    collector = Collector(settings)
    app = create_app(collector, query.for_store(str(tmp_path / "k.db")))
    with TestClient(app, headers=JSON_BODY) as client:
        yield collector, client


def scrape(client: TestClient) -> str:
    response = client.get("/metrics", headers=BEARER)
    assert response.status_code == 200
    assert response.headers["content-type"] == metrics.CONTENT_TYPE
    return response.text


def post(client: TestClient, events: list[dict[str, Any]], cluster: str = "c1") -> None:
    response = client.post(f"/audit/{cluster}", content=orjson.dumps(event_list(events)), headers=BEARER)
    assert response.status_code == 200, response.text


def test_a_webhook_batch_counts_requests_by_verb_and_user_with_the_other_user_past_the_bound(
    tmp_path: Path,
) -> None:
    events = [
        audit_event(verb="create", user="alice", name="a", uid="u-a"),
        audit_event(verb="get", user="alice", code=200, with_bodies=False),
        audit_event(verb="get", user="alice", code=200, with_bodies=False, stage="RequestReceived"),
        audit_event(verb="list", user="bob", code=200, with_bodies=False),
        # Past the bound of two users: both are 'other'.
        audit_event(verb="get", user="carol", code=404, with_bodies=False),
        audit_event(verb="delete", user="dave", code=200, name="a", uid="u-a"),
    ]
    with serving(tmp_path, max_users=2) as (collector, client):
        post(client, events)
        assert collector.ingestor.wait_idle(5)
        text = scrape(client)

    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert families["kelemetry_audit_requests"].type == "counter"
    assert families[DURATION].type == "histogram"
    values = promtext.samples(text)
    base = {"cluster": "c1", "group": "", "resource": "pods"}
    assert values[requests_key(**base, verb="create", code="201", user="alice")] == 1
    assert values[requests_key(**base, verb="get", code="200", user="alice")] == 1  # counted once
    assert values[requests_key(**base, verb="list", code="200", user="bob")] == 1
    assert values[requests_key(**base, verb="get", code="404", user="other")] == 1
    assert values[requests_key(**base, verb="delete", code="200", user="other")] == 1
    assert sum(v for k, v in values.items() if k.startswith(REQUESTS)) == 5
    assert not any('user="carol"' in k or 'user="dave"' in k for k in values)
    # The factory's requests take 10 ms: each lands in le="0.01" and above, none below.
    get = 'cluster="c1",le="{}",resource="pods",verb="get"'
    assert values[f"{DURATION}_bucket{{{get.format('0.005')}}}"] == 0
    assert values[f"{DURATION}_bucket{{{get.format('0.01')}}}"] == 2
    assert values[f"{DURATION}_bucket{{{get.format('+Inf')}}}"] == 2
    assert values[f'{DURATION}_count{{cluster="c1",resource="pods",verb="get"}}'] == 2
    # The collector's own counters, in the same scrape.
    assert values['kelemetry_webhook_responses_total{code="200"}'] == 1
    assert values["kelemetry_ingest_events_received_total"] == 6
    assert values["kelemetry_ingest_received_bytes_total"] > 0
    assert values["kelemetry_ingest_backlog_batches"] == 0
    assert values["kelemetry_inbox_oldest_age_seconds"] == 0
    assert values['kelemetry_store_size_bytes{file="spans"}'] > 0
    assert values['kelemetry_http_request_duration_seconds_count{route="/audit/{cluster}"}'] == 1


def test_refusals_are_counted_by_status_code(tmp_path: Path) -> None:
    with serving(tmp_path) as (_collector, client):
        assert (
            client.post("/audit/c1", content=b"{}", headers={"Authorization": "Bearer wrong"}).status_code
            == 401
        )
        assert client.post("/audit/c1", content=b"nope", headers=BEARER).status_code == 400
        values = promtext.samples(scrape(client))

    assert values['kelemetry_webhook_responses_total{code="401"}'] == 1
    assert values['kelemetry_webhook_responses_total{code="400"}'] == 1
    assert values["kelemetry_webhook_unauthorized_total"] == 1


def test_metrics_need_the_token(tmp_path: Path) -> None:
    with serving(tmp_path) as (_collector, client):
        refused = client.get("/metrics")
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        allowed = client.get("/metrics", headers=BEARER)

    assert refused.status_code == 401
    assert wrong.status_code == 401
    assert "kelemetry_" not in refused.text + wrong.text
    assert allowed.status_code == 200


def test_query_latency_is_kept_per_route_template_not_per_path(tmp_path: Path) -> None:
    with serving(tmp_path) as (_collector, client):
        for trace in ("0123", "4567", "89ab"):
            client.get(f"/api/traces/{trace}", headers=BEARER)
        client.get("/api/services", headers=BEARER)
        client.get("/no/such/page", headers=BEARER)
        client.get("/api/services")  # refused by the guard before any route: unmatched
        values = promtext.samples(scrape(client))

    http = "kelemetry_http_request_duration_seconds_count"
    assert values[f'{http}{{route="/api/traces/{{trace_id}}"}}'] == 3
    assert values[f'{http}{{route="/api/services"}}'] == 1
    assert values[f'{http}{{route="unmatched"}}'] == 2
    assert not any("0123" in key for key in values)


def test_the_frontend_process_serves_its_own_metrics_behind_its_token(tmp_path: Path) -> None:
    store = tmp_path / "k.db"
    SpanStore(store).close()
    app = build_app(query=query.for_store(str(store)), policy=AccessPolicy(token=TOKEN))
    with TestClient(app) as client:
        client.get("/api/services", headers=BEARER)
        refused = client.get("/metrics")
        text = scrape(client)

    assert refused.status_code == 401
    values = promtext.samples(text)
    assert values['kelemetry_http_request_duration_seconds_count{route="/api/services"}'] == 1
    assert not any(key.startswith(("kelemetry_audit_", "kelemetry_ingest_")) for key in values)


def test_the_recorded_deployment_lifecycle_counts_who_asked_for_what(tmp_path: Path) -> None:
    """Our recorded sample (admin: create, kubectl scale twice, an image patch, delete), replayed
    through the pipeline `replay` and `serve --replay` build: the request metrics say who did what."""
    registry = metrics.Registry()
    store = SpanStore(tmp_path / "k.db")
    pipeline = pipelines.build(store, TraceSettings(), KindResolver(), requests=RequestMetrics(registry))
    for batch in read_audit_file(str(ROOT / "samples/deployment/audit.log"), FileStats()):
        pipeline.process_audit(batch, "tracetest")
    store.close()

    values = promtext.samples(registry.render().decode())

    apps = {"cluster": "tracetest", "group": "apps", "user": "admin"}
    assert values[requests_key(**apps, resource="deployments", verb="create", code="201")] == 1
    assert values[requests_key(**apps, resource="deployments/scale", verb="patch", code="200")] == 2
    assert values[requests_key(**apps, resource="deployments", verb="patch", code="200")] == 1
    assert values[requests_key(**apps, resource="deployments", verb="delete", code="200")] == 1
    controller = "system:serviceaccount:kube-system:deployment-controller"
    assert (
        values[
            requests_key(
                **{**apps, "user": controller}, resource="deployments/status", verb="update", code="409"
            )
        ]
        == 6
    )
    # Reads are counted too (the traces leave them out): kubectl's gets of the Deployment.
    assert values[requests_key(**apps, resource="deployments", verb="get", code="200")] == 11
    assert sum(v for k, v in values.items() if k.startswith(REQUESTS)) == 192
    assert sum(v for k, v in values.items() if k.startswith(f"{DURATION}_count")) == 192


def test_export_metrics_show_the_spans_waiting_for_an_endpoint_that_is_down(tmp_path: Path) -> None:
    closed_port = free_port()  # nothing listens there: every export attempt fails
    settings = ServeSettings(
        store=StoreSettings(path=str(tmp_path / "k.db")),
        webhook=WebhookSettings(token=TOKEN),
        otlp=OtlpSettings(endpoint=f"http://127.0.0.1:{closed_port}", poll_interval_seconds=0.05),
    )
    collector = Collector(settings)
    with TestClient(create_app(collector), headers=JSON_BODY) as client:
        post(client, [audit_event(verb="create")])
        assert collector.ingestor.wait_idle(5)
        deadline = time.monotonic() + 20
        while collector.follower is not None and collector.follower.failures == 0:
            assert time.monotonic() < deadline, "no export attempt failed"
            time.sleep(0.05)
        values = promtext.samples(scrape(client))

    assert values["kelemetry_otlp_export_failures_total"] >= 1
    assert values["kelemetry_otlp_exported_spans_total"] == 0
    assert values["kelemetry_otlp_export_cursor"] == 0
    # The Pod's object span and its request span wait on disk.
    assert values["kelemetry_otlp_export_lag_spans"] == values["kelemetry_store_write_sequence"] == 2


def test_a_negative_bound_is_a_one_line_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["serve", "--store", str(tmp_path / "k.db"), "--request-metrics-users", "-1"]

    assert cli.main(argv) == cli.EXIT_USAGE

    assert capsys.readouterr().err == "kelemetry: error: --request-metrics-users must be 0 or more, not -1\n"
    assert not (tmp_path / "k.db").exists()
