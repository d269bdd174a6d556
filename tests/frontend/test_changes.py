"""Browsing what changed: frontend.changes (rows, cursors, lines), GET /api/kelemetry/changes, the
/changes page, `kelemetry changes`, and Jaeger's search that names no object.

On the recorded Deployment sample (cluster ``tracetest``, user ``admin`` created the Deployment
``demo``, scaled it to 4, changed its image, scaled it to 2 and deleted it): the API lists admin's
five requests newest first with their diffs and the CLI's ``--format json`` prints the same rows;
pages joined by their cursors are the whole list; the histogram counts every request, Event and
error of the sample; each row's link leads to the object's trace; every bad parameter is a 400
with its reason on the API and a one-line error on the CLI. Over a Jaeger backend the list is a 501
that says it needs the embedded store, while the object-less search lists the same recent objects
as over the store.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from frontend import api, changes, query
from frontend.backend import StoreBackend
from frontend.jaegerstore import JaegerBackend
from frontend.query import QueryService
from frontend.types import Suggestion
from frontend.views import ViewStore
from jaeger.client import JaegerClient
from kelemetry import cli, errors
from kelemetry.model import tags
from kelemetry.model.events import Log, TraceSource
from kelemetry.model.objects import ObjectKey
from kelemetry.model.spans import SpanRecord
from kelemetry.store.sqlite import SpanStore, StoreReader
from tests.factories import audit_event, new_pipeline, reuse_stream
from tests.jaeger.fakejaeger import FakeJaeger, jaeger_traces, serving

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

CLUSTER = "tracetest"
DEMO_UID = "3eddc752-c366-47dd-853f-8173422d7ebd"
# What admin did to the Deployment, newest first: (verb, subresource, code, diff lines).
ADMIN = [
    ("delete", None, 200, None),
    ("patch", "scale", 200, ["metadata.generation 3 -> 4", "spec.replicas 4 -> 2"]),
    (
        "patch",
        None,
        200,
        [
            "metadata.generation 2 -> 3",
            'spec.template.spec.containers[name=nginx].image "nginx:1.27" -> "nginx:1.28"',
        ],
    ),
    ("patch", "scale", 200, ["metadata.generation 1 -> 2", "spec.replicas 2 -> 4"]),
    ("create", None, 201, None),
]
RANGE = {"start": "2026-11-23T07:00:00Z", "end": "2026-11-23T08:00:00Z"}
LONG_AGO_US = 50 * 365 * 86_400 * 1_000_000


@pytest.fixture(scope="module")
def service(sample_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueryService]:
    opened = QueryService(
        StoreBackend(StoreReader(sample_store)), ViewStore(tmp_path_factory.mktemp("views") / "views.db")
    )
    yield opened
    opened.close()


def client_of(service: QueryService) -> TestClient:
    app = FastAPI()
    api.install(app, service)
    return TestClient(app, raise_server_exceptions=False, follow_redirects=False)


@pytest.fixture(scope="module")
def client(service: QueryService) -> TestClient:
    return client_of(service)


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, (response.status_code, response.text)
    return response.json()


def refused(response: httpx.Response, status: int, message: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert message in body["error"], body
    assert body["errors"][0]["msg"] == body["error"]


def every_page(client: TestClient, params: dict[str, str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    for _ in range(200):
        page = ok(
            client.get("/api/kelemetry/changes", params={**params, **({"cursor": cursor} if cursor else {})})
        )
        rows.extend(page["data"])
        cursor = page["next"]
        if cursor is None:
            return rows
    raise AssertionError("the pages never ended")


# -- rows (frontend.changes)


def record(
    source: TraceSource, span_tags: dict[str, Any], logs: tuple[Log, ...] = (), error: bool = False
) -> SpanRecord:
    key = ObjectKey.make("c1", "apps", "deployments", "prod", "api")
    return SpanRecord(
        trace_id=1,
        span_id=0xABC,
        parent_id=2,
        source=source,
        name="n",
        start_us=1_714_557_600_123_000,
        end_us=1_714_557_600_200_000,
        key=key,
        object_id=3,
        window=0,
        uid="u-1",
        kind="Deployment",
        version="v1",
        tags=span_tags,
        logs=logs,
        error=error,
    )


def test_a_request_row_has_its_object_user_verb_code_and_the_first_diff_lines() -> None:
    diff = "\n".join(f"spec.field{i} {i} -> {i + 1}" for i in range(5))
    span = record(
        TraceSource.AUDIT,
        {
            tags.AUDIT_USER: "alice",
            tags.AUDIT_VERB: "patch",
            tags.AUDIT_SUBRESOURCE: "scale",
            tags.AUDIT_CODE: 200,
        },
        (Log("diff", diff),),
    )
    row = changes.row_of(span)
    assert row["timestamp"] == "2024-05-01T10:00:00.123Z"
    assert row["object"] == {
        "cluster": "c1",
        "group": "apps",
        "resource": "deployments",
        "namespace": "prod",
        "name": "api",
        "uid": "u-1",
        "kind": "Deployment",
    }
    assert (row["source"], row["user"], row["verb"], row["subresource"], row["code"], row["result"]) == (
        "audit",
        "alice",
        "patch",
        "scale",
        200,
        "200",
    )
    assert row["diff"] == {
        "lines": ["spec.field0 0 -> 1", "spec.field1 1 -> 2", "spec.field2 2 -> 3"],
        "count": 5,
    }
    assert row["spanId"] == "0000000000000abc"
    assert row["link"] == (
        "/redirect?cluster=c1&group=apps&resource=deployments&namespace=prod&name=api&ts=1714557600123000&uid=u-1"
    )
    line = changes.line_of(row)
    assert line == (
        "2024-05-01T10:00:00.123Z  c1  deployments.apps prod/api  alice  patch/scale  200  "
        "spec.field0 0 -> 1 (+4 more)"
    )


def test_an_event_row_has_its_type_reason_and_message_and_a_failed_request_its_error() -> None:
    event = changes.row_of(
        record(
            TraceSource.EVENT,
            {tags.EVENT_TYPE: "Warning", tags.EVENT_REASON: "BackOff"},
            (Log("message", "Back-off restarting failed container"),),
            error=True,
        )
    )
    assert (event["user"], event["verb"], event["code"], event["result"], event["error"]) == (
        None,
        None,
        None,
        "Warning BackOff",
        True,
    )
    assert event["message"] == "Back-off restarting failed container"
    assert "Warning BackOff  Back-off restarting failed container" in changes.line_of(event)
    failed = changes.row_of(
        record(
            TraceSource.AUDIT,
            {tags.AUDIT_USER: "bob", tags.AUDIT_VERB: "update", tags.AUDIT_CODE: 409},
            (Log("error", "Conflict: the object has been modified"),),
            error=True,
        )
    )
    assert (failed["result"], failed["message"], failed["diff"]) == (
        "409",
        "Conflict: the object has been modified",
        None,
    )


def test_a_watched_change_row_has_its_verb_and_no_user() -> None:
    row = changes.row_of(
        record(TraceSource.CHANGE, {tags.CHANGE_VERB: "update"}, (Log("diff", "spec.x 1 -> 2"),))
    )
    assert (row["source"], row["user"], row["verb"], row["result"]) == ("change", None, "update", "watched")
    assert "(watched)  update  watched  spec.x 1 -> 2" in changes.line_of(row)


def test_a_long_detail_is_cut_on_the_text_line_only() -> None:
    message = "x" * 500
    row = changes.row_of(record(TraceSource.EVENT, {tags.EVENT_TYPE: "Normal"}, (Log("message", message),)))
    assert row["message"] == message
    assert changes.line_of(row).endswith("x…")
    assert len(changes.line_of(row).split("  ")[-1]) == changes.DETAIL_CHARS


@pytest.mark.parametrize(
    "text", ["", "abc", "12-34", "-0000000000000abc", "12_0000000000000abc", "x-0000000000000abc"]
)
def test_a_cursor_that_was_not_handed_out_is_refused(text: str) -> None:
    with pytest.raises(errors.InputError, match="pass the 'next' value"):
        changes.Cursor.parse(text)


def test_a_cursor_round_trips_ids_above_2_63() -> None:
    cursor = changes.Cursor(1_795_418_613_319_759, 2**64 - 1)
    assert changes.Cursor.parse(cursor.encode()) == cursor


@pytest.mark.parametrize("typed", ["deploy", "Deployment", "deployments.apps", "deployments.v1.apps"])
def test_changes_take_a_resource_as_kubectl_does(client: TestClient, typed: str) -> None:
    plural = ok(
        client.get("/api/kelemetry/changes", params={"resource": "deployments", "histogram": "false"})
    )
    rows = ok(client.get("/api/kelemetry/changes", params={"resource": typed, "histogram": "false"}))
    assert plural["data"] and rows["data"] == plural["data"]
    assert {row["object"]["resource"] for row in rows["data"]} == {"deployments"}


def test_histogram_buckets_are_a_minute_or_whole_minutes_within_the_cap() -> None:
    minute = changes.MINUTE_US
    assert changes.bucket_us_for(0, 15 * minute) == minute
    assert changes.bucket_us_for(None, None) == minute
    day = changes.bucket_us_for(0, 1440 * minute)
    assert day == 2 * minute
    assert 1440 * minute / day <= changes.MAX_BUCKETS


# -- the API


def test_admin_requests_are_listed_newest_first_with_their_diffs(client: TestClient) -> None:
    body = ok(client.get("/api/kelemetry/changes", params={"cluster": CLUSTER, "user": "admin"}))
    rows = body["data"]
    assert [(r["verb"], r["subresource"], r["code"], r["diff"] and r["diff"]["lines"]) for r in rows] == ADMIN
    assert {(r["object"]["resource"], r["object"]["name"], r["object"]["uid"]) for r in rows} == {
        ("deployments", "demo", DEMO_UID)
    }
    assert [r["time"] for r in rows] == sorted((r["time"] for r in rows), reverse=True)
    assert body["next"] is None
    assert sum(b["requests"] for b in body["histogram"]) == 5


def test_the_cli_json_prints_the_rows_the_api_answers(
    client: TestClient, sample_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api_rows = ok(client.get("/api/kelemetry/changes", params={"cluster": CLUSTER, "user": "admin"}))["data"]
    capsys.readouterr()
    assert cli.main(["changes", "--store", str(sample_store), "--cluster", CLUSTER, "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [row for row in printed["data"] if row["user"] == "admin"] == api_rows
    assert len(printed["data"]) == 130 + 33 and printed["next"] is None
    assert cli.main(["changes", "--store", str(sample_store), "--user", "admin", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"data": api_rows, "next": None}


def test_pages_joined_by_their_cursors_are_the_whole_list(client: TestClient) -> None:
    whole = ok(client.get("/api/kelemetry/changes", params={"limit": "1000", "histogram": "false"}))
    assert whole["next"] is None and "histogram" not in whole
    assert len(whole["data"]) == 130 + 33
    paged = every_page(client, {"limit": "7", "histogram": "false"})
    assert paged == whole["data"]


def test_the_histogram_counts_every_request_event_and_error_per_minute(client: TestClient) -> None:
    body = ok(client.get("/api/kelemetry/changes", params={"cluster": CLUSTER, **RANGE, "limit": "1"}))
    assert body["bucket"] == changes.MINUTE_US
    buckets = body["histogram"]
    assert all(b["start"] % changes.MINUTE_US == 0 for b in buckets)
    totals = {name: sum(b[name] for b in buckets) for name in ("requests", "events", "changes", "errors")}
    # The sample's 20 failed answers are all routine (controllers' 409s, kwok's repeated deletes):
    # listed as benign, counted as requests, not as errors, as the trace view draws them.
    assert totals == {"requests": 130, "events": 33, "changes": 0, "errors": 0}
    every = ok(client.get("/api/kelemetry/changes", params={"limit": "1000", "histogram": "false"}))["data"]
    benign = [row for row in every if row["outcome"] == "benign"]
    assert len(benign) == 20 and not any(row["error"] for row in benign)
    assert {row["code"] for row in benign} == {404, 409} and all(
        row["result"].endswith(" benign") for row in benign
    )
    errors_only = ok(client.get("/api/kelemetry/changes", params={"errors": "true", "limit": "100"}))
    assert errors_only["data"] == [] and sum(b["errors"] for b in errors_only["histogram"]) == 0


def at_second(second: int) -> str:
    return f"2024-05-01T10:00:{second:02d}.000000Z"


def test_a_real_failure_stays_an_error_beside_a_benign_one(tmp_path: Path) -> None:
    path = tmp_path / "failures.db"
    store = SpanStore(path)
    stream = [
        audit_event(verb="create", name="web-0", received=at_second(0), completed=at_second(0)),
        audit_event(
            verb="update",
            name="web-0",
            code=409,
            user="system:serviceaccount:kube-system:job-controller",
            received=at_second(1),
            completed=at_second(1),
            audit_id="conflict",
        ),
        audit_event(
            verb="update",
            name="web-0",
            code=403,
            received=at_second(2),
            completed=at_second(2),
            audit_id="forbidden",
        ),
    ]
    assert new_pipeline(store).process_audit(stream, "c1").failed == 0
    store.close()
    service = query.for_store(path, tmp_path / "views.db")
    try:
        rows = ok(client_of(service).get("/api/kelemetry/changes", params={"errors": "true"}))
    finally:
        service.close()
    assert [(row["code"], row["error"], row["outcome"]) for row in rows["data"]] == [(403, True, None)]
    assert (
        sum(b["errors"] for b in rows["histogram"]) == 1
        and sum(b["requests"] for b in rows["histogram"]) == 1
    )


@pytest.mark.parametrize(
    ("params", "count"),
    [
        ({"resource": "deployments.apps"}, 43),
        ({"resource": "deployments", "group": "apps", "verb": "patch"}, 3),
        ({"namespace": "kube-system"}, 0),
        ({"cluster": "elsewhere"}, 0),
        ({"start": "2026-11-23T07:23:33Z"}, None),
        ({"end": "2026-11-23T07:00:00Z"}, 0),
    ],
)
def test_filters_narrow_the_list(client: TestClient, params: dict[str, str], count: int | None) -> None:
    rows = ok(client.get("/api/kelemetry/changes", params={**params, "limit": "1000"}))["data"]
    if count is not None:
        assert len(rows) == count
    for row in rows:
        for name in ("cluster", "namespace", "group"):
            if name in params:
                assert row["object"][name] == params[name]
        if "resource" in params:
            assert (row["object"]["resource"], row["object"]["group"]) == ("deployments", "apps")
        if "verb" in params:
            assert row["verb"] == params["verb"]
        if "start" in params:
            assert row["timestamp"] >= "2026-11-23T07:23:33"
    if "start" in params:
        assert 0 < len(rows) < 163


def test_a_row_link_opens_the_objects_trace_at_that_moment(client: TestClient) -> None:
    rows = ok(client.get("/api/kelemetry/changes", params={"user": "admin", "verb": "create"}))["data"]
    (row,) = rows
    response = client.get(row["link"])
    assert response.status_code == 302, response.text
    view_id = response.headers["location"].removeprefix("/trace/")
    info = ok(client.get(f"/api/kelemetry/views/{view_id}"))
    assert info["object"]["name"] == "demo" and info["object"]["resource"] == "deployments"
    assert info["start"] <= row["time"] <= info["end"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"errors": "maybe"}, "invalid errors 'maybe': use true or false"),
        ({"histogram": "2"}, "invalid histogram '2': use true or false"),
        ({"cursor": "page-2"}, "invalid cursor 'page-2'"),
        ({"limit": "0"}, "limit must be between 1 and 1000, not 0"),
        ({"limit": "lots"}, "invalid limit 'lots': expected an integer"),
        ({"start": "yesterday"}, "invalid start 'yesterday'"),
        ({"end": "2026-13-01T00:00:00Z"}, "invalid end"),
        ({"start": "2026-11-24T00:00:00Z", "end": "2026-11-23T00:00:00Z"}, "start is after end"),
    ],
)
def test_bad_parameters_are_refused_with_the_reason(
    client: TestClient, params: dict[str, str], message: str
) -> None:
    refused(client.get("/api/kelemetry/changes", params=params), 400, message)


def test_epoch_microseconds_and_rfc3339_name_the_same_range(client: TestClient) -> None:
    by_text = ok(client.get("/api/kelemetry/changes", params=RANGE))
    by_number = ok(
        client.get("/api/kelemetry/changes", params={"start": "1795417200000000", "end": "1795420800000000"})
    )
    assert by_text == by_number and by_text["data"]


def test_the_changes_page_is_the_web_ui(client: TestClient) -> None:
    response = client.get("/changes")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]


def test_over_jaeger_the_list_is_refused_as_needing_the_embedded_store(tmp_path: Path) -> None:
    backend = JaegerBackend(JaegerClient("http://127.0.0.1:9"))
    jaeger_client = client_of(QueryService(backend, ViewStore(None)))
    refused(jaeger_client.get("/api/kelemetry/changes"), 501, "browsing changes needs the embedded store")


# -- the CLI


def test_the_cli_text_is_one_readable_line_per_change(
    sample_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "changes",
        "--store",
        str(sample_store),
        "--cluster",
        CLUSTER,
        "--user",
        "admin",
        "--verb",
        "patch",
    ]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "2026-11-23T07:23:32.658Z  tracetest  deployments.apps default/demo  admin  patch/scale  200  "
        "metadata.generation 3 -> 4 (+1 more)",
        "2026-11-23T07:23:31.431Z  tracetest  deployments.apps default/demo  admin  patch  200  "
        "metadata.generation 2 -> 3 (+1 more)",
        "2026-11-23T07:23:31.278Z  tracetest  deployments.apps default/demo  admin  patch/scale  200  "
        "metadata.generation 1 -> 2 (+1 more)",
    ]


def test_the_cli_pages_with_the_cursor_it_prints(
    sample_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["changes", "--store", str(sample_store), "--user", "admin", "--limit", "3"]
    assert cli.main(base) == 0
    first = capsys.readouterr()
    assert len(first.out.splitlines()) == 3
    cursor = first.err.strip().rsplit(" ", 1)[-1]
    assert first.err.startswith("kelemetry: more: add --cursor ")
    assert cli.main([*base, "--cursor", cursor]) == 0
    second = capsys.readouterr()
    assert len(second.out.splitlines()) == 2 and second.err == ""
    assert "  create  201" in second.out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--since", "15m", "--start", "2026-11-23T07:00:00Z"],
            "use either --since or --start/--end, not both",
        ),
        (["--start", "tomorrowish"], "invalid time 'tomorrowish'"),
        (["--cursor", "nope"], "invalid cursor 'nope'"),
        (["--limit", "0"], "limit must be between 1 and 1000, not 0"),
        (["--start", "2026-11-24T00:00:00Z", "--end", "2026-11-23T00:00:00Z"], "start is after end"),
    ],
)
def test_cli_refusals_are_one_line(
    sample_store: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert cli.main(["changes", "--store", str(sample_store), *extra]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("kelemetry: error: ") and message in err and err.count("\n") == 1


def test_the_cli_says_when_nothing_matched(sample_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["changes", "--store", str(sample_store), "--user", "nobody"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "nothing matched" in captured.err


# -- Jaeger's search that names no object


def test_a_search_without_an_object_lists_recently_active_objects_newest_first(client: TestClient) -> None:
    params = {"service": "tracing", "start": "1795417200000000", "end": "1795420800000000", "limit": "3"}
    traces = ok(client.get("/api/traces", params=params))["data"]
    roots = [next(s for s in t["spans"] if not s["references"]) for t in traces]
    names = [{tag["key"]: tag["value"] for tag in root["tags"]}["name"] for root in roots]
    assert names == ["demo-5544f8b48c-bq8vc", "demo-5544f8b48c-pdqd2", "demo-85dd8d7bd8"]
    assert all(t["traceID"].startswith("ff20000000") for t in traces)
    # Each is a view that opens again by its id.
    again = ok(client.get(f"/api/traces/{traces[0]['traceID']}"))["data"]
    assert again[0]["traceID"] == traces[0]["traceID"]


def test_an_objectless_search_keeps_the_cluster_resource_and_namespace_it_was_given(
    client: TestClient,
) -> None:
    base = {"service": "tracing", "start": "1795417200000000", "end": "1795420800000000"}
    found = ok(client.get("/api/traces", params={**base, "tags": '{"resource": "replicasets"}'}))["data"]
    assert len(found) == 2
    for trace in found:
        root = next(s for s in trace["spans"] if not s["references"])
        assert {tag["key"]: tag["value"] for tag in root["tags"]}["resource"] == "replicasets"
    assert ok(client.get("/api/traces", params={**base, "operation": "elsewhere"}))["data"] == []
    assert ok(client.get("/api/traces", params={**base, "end": "1795417300000000"}))["data"] == []


def test_jaeger_and_the_store_list_the_same_recent_objects(sample_store: Path) -> None:
    reader = StoreReader(sample_store)
    try:
        records = [r for _seq, r in reader.spans_after(0, 1_000_000)]
        store_rows = StoreBackend(reader).recent(Suggestion(cluster=CLUSTER, limit=6), None, None)
    finally:
        reader.close()
    with serving(FakeJaeger(traces=jaeger_traces(records))) as fake:
        backend = JaegerBackend(JaegerClient(fake.url), lookback_us=LONG_AGO_US)
        jaeger_rows = backend.recent(Suggestion(cluster=CLUSTER, limit=6), None, None)
    assert [r.key for r in jaeger_rows] == [r.key for r in store_rows]
    assert len(store_rows) == 6


def test_a_search_whose_service_is_a_cluster_lists_that_clusters_objects(client: TestClient) -> None:
    base = {"start": "1795417200000000", "end": "1795420800000000", "limit": "2"}
    by_cluster = ok(client.get("/api/traces", params={**base, "service": CLUSTER}))["data"]
    by_mode = ok(
        client.get("/api/traces", params={**base, "service": "tracing [full tree]", "operation": CLUSTER})
    )["data"]
    assert [t["traceID"] for t in by_cluster] == [t["traceID"] for t in by_mode] and len(by_cluster) == 2
    refused(
        client.get("/api/traces", params={**base, "service": "nowhere"}),
        400,
        "invalid display mode 'nowhere'",
    )


def test_a_row_of_a_reused_name_opens_the_object_it_happened_to(tmp_path: Path) -> None:
    path = tmp_path / "reuse.db"
    store = SpanStore(path)
    assert new_pipeline(store).process_audit(reuse_stream(), "c1").failed == 0
    store.close()
    service = query.for_store(path, tmp_path / "views.db")
    try:
        reuse = client_of(service)
        rows = ok(
            reuse.get("/api/kelemetry/changes", params={"resource": "deployments.apps", "verb": "create"})
        )
        # The two Deployments named reuse, 30 seconds apart: each row opens its own.
        assert [row["object"]["uid"] for row in rows["data"]] == ["d-2", "d-1"]
        for row in rows["data"]:
            response = reuse.get(row["link"])
            assert response.status_code == 302, response.text
            view_id = response.headers["location"].removeprefix("/trace/")
            assert ok(reuse.get(f"/api/kelemetry/views/{view_id}"))["object"]["uid"] == row["object"]["uid"]
    finally:
        service.close()
