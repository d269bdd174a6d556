"""The query side over HTTP (frontend.api), on the recorded Deployment sample.

The app is a bare FastAPI with ``frontend.api.install`` over a QueryService on the store that
``kelemetry replay`` makes of samples/deployment (audit log and Events, cluster ``tracetest``).

Covers every route: Jaeger's query API (/api/services, /api/services/{s}/operations,
/api/operations, /api/traces, /api/traces/{id}), /redirect, our lookup API
(/api/kelemetry/{modes,clusters,resources,objects,lookup,views/{id}}) and the UI pages; every bad
parameter answered 400 with an ``error`` that says what is wrong; 404s for unknown objects and
views and for no activity in range; and Go Kelemetry's own e2e expectations ("deployment" in
``tracing [full tree]``, "ancestors" in ``tracing [ancestors]``) on the trace that /redirect leads to
once hex digits 3–10 of its id are edited.
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

from frontend import api, modes
from frontend.backend import StoreBackend
from frontend.query import QueryService
from frontend.views import ViewStore
from kelemetry.store.sqlite import SpanStore, StoreReader
from tests.factories import audit_event, new_pipeline
from tests.jaegerjson import children_of, fields, root_of, tags

with warnings.catch_warnings():
    # starlette 1.10 warns on importing its test client when httpx (the project's dev dependency)
    # is installed instead of httpx2; the warning is about the environment, not the code under test.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

CLUSTER = "tracetest"
DEMO = {
    "cluster": CLUSTER,
    "group": "apps",
    "resource": "deployments",
    "namespace": "default",
    "name": "demo",
}
DEMO_TAGS = json.dumps({"resource": "deployments", "name": "demo"})
FIRST_RS = "demo-85dd8d7bd8"
SECOND_RS = "demo-5544f8b48c"
DEMO_UID = "3eddc752-c366-47dd-853f-8173422d7ebd"
# The sample was recorded on 2026-11-23 between 07:23:30 and 07:23:34 UTC.
TS = "2026-11-23T07:25:00Z"
TS_US = 1_795_418_700_000_000
HOUR_US = 3_600_000_000
BEFORE = "2020-01-01T00:00:00Z"
UNKNOWN_VIEW = "ff20000000e1e3e70000000000001234"


@pytest.fixture(scope="module")
def client(sample_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    views = ViewStore(tmp_path_factory.mktemp("views") / "views.db")
    service = QueryService(StoreBackend(StoreReader(sample_store)), views)
    app = FastAPI()
    api.install(app, service)
    # Server errors come back as 500 responses, so a test can say which input caused one.
    yield TestClient(app, raise_server_exceptions=False, follow_redirects=False)
    service.close()


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def refused(response: httpx.Response, status: int, message: str) -> str:
    """The JSON refusal: ``error`` (ours) and ``errors`` (what Jaeger UI shows); returns the error."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    error = body["error"]
    assert body == {"data": [], "error": error, "errors": [{"code": status, "msg": error}]}
    assert message in error, error
    assert "\n" not in error and "Traceback" not in error
    return str(error)


def redirect(client: TestClient, **params: str) -> str:
    """The trace id /redirect sends the browser to."""
    response = client.get("/redirect", params={**params, "ts": params.get("ts", TS)})
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith("/trace/"), location
    return location.removeprefix("/trace/")


def with_mode(trace_id: str, mode: str) -> str:
    """What the original's e2e harness does: keep ``ff``, put the mode in hex digits 3–10."""
    return f"ff{mode}{trace_id[10:]}"


def fetch(client: TestClient, trace_id: str, **params: str) -> dict[str, Any]:
    body = ok(client.get(f"/api/traces/{trace_id}", params=params))
    assert (body["total"], body["limit"], body["offset"], body["errors"]) == (1, 0, 0, None)
    (trace,) = body["data"]
    assert trace["traceID"] == trace_id.lower()
    assert all(span["traceID"] == trace["traceID"] for span in trace["spans"])
    result: dict[str, Any] = trace
    return result


def search(client: TestClient, **params: str | list[str]) -> list[dict[str, Any]]:
    body = ok(client.get("/api/traces", params=params))
    assert body["total"] == len(body["data"]) and body["errors"] is None
    found: list[dict[str, Any]] = body["data"]
    return found


# -- Jaeger's service and operation lists


# Jaeger UI's service list, in its order: the default (the full tree, in tracing) first, then by mode
# (tracing, grouped, tree, timeline) and scope (the object, the full tree, ancestors, owned objects);
# ids as in Go Kelemetry.
MODE_LIST = [
    ("21000000", "tracing [full tree]"),
    ("20000000", "tracing"),
    ("22000000", "tracing [ancestors]"),
    ("24000000", "tracing [owned objects]"),
    ("30000000", "grouped"),
    ("31000000", "grouped [full tree]"),
    ("32000000", "grouped [ancestors]"),
    ("34000000", "grouped [owned objects]"),
    ("00000000", "tree"),
    ("01000000", "tree [full tree]"),
    ("02000000", "tree [ancestors]"),
    ("04000000", "tree [owned objects]"),
    ("10000000", "timeline"),
    ("11000000", "timeline [full tree]"),
    ("12000000", "timeline [ancestors]"),
    ("14000000", "timeline [owned objects]"),
]


def test_services_are_the_display_modes_default_first(client: TestClient) -> None:
    body = ok(client.get("/api/services"))
    assert body["data"] == [name for _id, name in MODE_LIST]
    assert (body["total"], body["errors"]) == (16, None)


@pytest.mark.parametrize("service", ["tracing", "tracing [full tree]", "* grouped [ancestors]"])
def test_operations_of_a_service_are_the_clusters(client: TestClient, service: str) -> None:
    assert ok(client.get(f"/api/services/{service}/operations"))["data"] == [CLUSTER]
    assert ok(client.get("/api/operations", params={"service": service}))["data"] == [
        {"name": CLUSTER, "spanKind": ""}
    ]


def test_operations_without_a_service_are_the_clusters(client: TestClient) -> None:
    body = ok(client.get("/api/operations"))
    assert body["data"] == [{"name": CLUSTER, "spanKind": ""}] and body["total"] == 1


def test_operations_of_an_unknown_service_are_refused(client: TestClient) -> None:
    refused(client.get("/api/services/bogus/operations"), 400, "invalid display mode 'bogus'")
    refused(client.get("/api/operations", params={"service": "tracing [x]"}), 400, "invalid display mode")


# -- /api/traces: search


def test_a_search_by_tags_finds_the_object_in_the_requested_mode(client: TestClient) -> None:
    (trace,) = search(client, service="tracing [full tree]", tags=DEMO_TAGS)
    assert trace["traceID"].startswith("ff21000000e1e3e7") and len(trace["traceID"]) == 32
    root = root_of(trace)
    assert tags(root)["name"] == "demo" and tags(root)["resource"] == "deployments"
    assert len(children_of(trace, root["spanID"])) == 2
    # The trace id found is a view: it opens again, the same.
    assert fetch(client, trace["traceID"]) == trace


def test_search_parameters_in_every_accepted_form(client: TestClient) -> None:
    by_json = search(client, service="tracing [full tree]", tags=DEMO_TAGS)
    assert [t["traceID"][:10] for t in by_json] == ["ff21000000"]
    # Without a service: the default mode, the full tree.
    no_service = search(client, tags=DEMO_TAGS)
    assert no_service == by_json
    alone = search(client, service="tracing", tags=DEMO_TAGS)
    assert [t["traceID"][:10] for t in alone] == ["ff20000000"]
    full_key = json.dumps(dict(DEMO))
    assert search(client, tags=full_key) == by_json
    assert search(client, operation=CLUSTER, tags=DEMO_TAGS) == by_json
    in_range = search(client, tags=DEMO_TAGS, start=str(TS_US - HOUR_US), end=str(TS_US + HOUR_US))
    assert len(in_range) == 1 and in_range[0]["traceID"] != by_json[0]["traceID"]
    rfc3339 = search(client, tags=DEMO_TAGS, start="2026-11-23T06:25:00Z", end="2026-11-23T08:25:00+00:00")
    assert rfc3339 == in_range
    assert len(search(client, tags=DEMO_TAGS, end=str(TS_US), lookback="2h")) == 1
    assert len(search(client, tags=DEMO_TAGS, lookback="custom")) == 1
    assert len(search(client, tags=DEMO_TAGS, limit="0")) == 1


def test_a_search_for_an_object_that_is_not_there_is_a_404_with_the_reason(client: TestClient) -> None:
    """As /redirect and the lookup API answer: a script tells "no such object" from "quiet"."""
    nope = json.dumps({"resource": "deployments", "name": "nope"})
    refused(client.get("/api/traces", params={"tags": nope}), 404, "no object deployments/nope")
    refused(
        client.get("/api/traces", params={"operation": "another-cluster", "tags": DEMO_TAGS}),
        404,
        "deployments/demo (cluster another-cluster) is known; did you mean deployments.apps/demo in "
        "namespace default (cluster tracetest)?",
    )
    refused(
        client.get("/api/traces", params={"tags": DEMO_TAGS, "start": BEFORE, "end": "2020-01-02T00:00:00Z"}),
        404,
        "has no activity in the requested time range; it was last active at 2026-11-23T07:23:33Z",
    )
    kube_system = json.dumps({**json.loads(DEMO_TAGS), "namespace": "kube-system"})
    refused(client.get("/api/traces", params={"tags": kube_system}), 404, "did you mean deployments.apps/")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "yesterday"}, "invalid start 'yesterday': use RFC 3339 (2024-05-01T10:00:00Z) or a time"),
        ({"end": "2024-13-01T00:00:00Z"}, "invalid end '2024-13-01T00:00:00Z'"),
        ({"start": "2024-05-01T10:00:00"}, "RFC 3339 needs a time zone"),
        ({"start": "-5"}, "invalid start '-5'"),
        ({"start": str(TS_US + HOUR_US), "end": str(TS_US)}, "start is after end"),
        (
            {"lookback": "5 parsecs"},
            "invalid lookback '5 parsecs': use a duration, e.g. 30m, 2h, 1h30m, 7d, or seconds",
        ),
        ({"lookback": "1y"}, "invalid lookback '1y'"),
        ({"tags": "{not json"}, 'tags must be a JSON object, e.g. {"resource":"pods","name":"web-1"}'),
        ({"tags": "[1, 2]"}, "tags must be a JSON object of strings"),
        ({"tags": '{"resource": "deployments", "name": 1}'}, "tags must be a JSON object of strings"),
        ({"tags": '{"resource": "deployments", "name": "demo", "user": "admin"}'}, "unsupported tag(s) user"),
        ({"tags": '{"name": "demo"}'}, 'tags must include "resource" and "name"'),
        ({"limit": "many"}, "invalid limit 'many': expected an integer"),
        ({"limit": "5000"}, "limit must be between 0 and 1000, not 5000"),
        ({"limit": "-1"}, "limit must be between 0 and 1000, not -1"),
        ({"service": "fancy"}, "invalid display mode 'fancy'"),
        ({"service": "tracing [full tree] (depth 0)"}, "depth must be between 1 and 255, not 0"),
    ],
)
def test_bad_search_parameters_are_refused_with_the_reason(
    client: TestClient, params: dict[str, str], message: str
) -> None:
    query = {"tags": DEMO_TAGS, **params}
    refused(client.get("/api/traces", params=query), 400, message)


def test_tag_pairs_are_read_from_the_query_string(client: TestClient) -> None:
    """Jaeger's other form of search tags: repeated ``tag=key:value`` query parameters."""
    by_json = search(client, service="* tracing [full tree]", tags=DEMO_TAGS)
    by_pairs = search(client, service="* tracing [full tree]", tag=["resource:deployments", "name:demo"])
    assert by_pairs == by_json
    mixed = search(client, tags=json.dumps({"resource": "deployments"}), tag="name:demo")
    assert mixed == by_json
    refused(
        client.get("/api/traces", params={"tag": "resource"}), 400, "invalid tag 'resource': use key:value"
    )
    refused(client.get("/api/traces", params={"tag": ":demo"}), 400, "invalid tag ':demo': use key:value")


def test_unsupported_tags_name_every_one_and_the_supported_keys(client: TestClient) -> None:
    query = json.dumps({"resource": "pods", "name": "x", "user": "a", "auditId": "b"})
    error = refused(
        client.get("/api/traces", params={"tags": query}), 400, "unsupported tag(s) auditId, user"
    )
    assert error.endswith("search by cluster, group, name, namespace, resource, uid")


# -- /redirect and the trace it leads to


def test_redirect_leads_to_the_default_mode_view_of_the_object(client: TestClient) -> None:
    trace_id = redirect(client, **DEMO)
    # The default mode: the object with its owners and what it owns (Go Kelemetry's 21000000).
    assert trace_id.startswith("ff21000000e1e3e7") and len(trace_id) == 32
    int(trace_id, 16)
    # The same object and moment: the same view.
    assert redirect(client, **DEMO) == trace_id
    full = fetch(client, trace_id)
    root = root_of(full)
    assert tags(root)["name"] == "demo" and len(full["spans"]) == 1 + 2 + 8
    assert len(children_of(full, root["spanID"])) == 2
    alone = fetch(client, with_mode(trace_id, "20000000"))
    (span,) = alone["spans"]
    assert tags(span)["name"] == "demo" and span["references"] == []
    assert any(str(fields(log).get("audit", "")).endswith(" delete") for log in span["logs"])


def test_redirect_group_and_namespace_are_optional(client: TestClient) -> None:
    plain = redirect(client, cluster=CLUSTER, resource="deployments", name="demo")
    assert plain[:10] == "ff21000000"
    fetched = fetch(client, plain)
    assert tags(root_of(fetched))["uid"] == DEMO_UID
    assert redirect(client, **DEMO, ts=str(TS_US)) == redirect(client, **DEMO)


def test_the_original_deployment_expectations_hold_in_tracing_full_tree(client: TestClient) -> None:
    """Go Kelemetry's e2e/deployment/validate.jq, on the trace /redirect leads to in 21000000."""
    trace = fetch(client, with_mode(redirect(client, **DEMO), "21000000"))

    root = root_of(trace)
    root_tags = tags(root)
    assert root_tags["resource"] == "deployments" and root_tags["name"] == "demo"
    logs = [fields(log) for log in root["logs"]]
    deletes = [log for log in logs if str(log.get("audit", "")).endswith(" delete")]
    assert deletes, "no delete log on the root"
    for log in deletes:
        assert json.loads(log["snapshot"])["metadata"]["name"] == "demo"
    assert any(str(log.get("audit", "")).endswith("update status") for log in logs)
    diffs = [str(log["diff"]) for log in logs if "diff" in log]
    assert any("status.observedGeneration 1 -> 2" in diff for diff in diffs)
    every_diff = [str(fields(log).get("diff", "")) for span in trace["spans"] for log in span["logs"]]
    assert not any("metadata.managedFields" in diff for diff in every_diff)
    children = children_of(trace, root["spanID"])
    assert len(children) == 2
    assert sorted(tags(child)["name"] for child in children) == sorted([FIRST_RS, SECOND_RS])
    assert all(tags(child)["resource"] == "replicasets" for child in children)


def test_the_original_ancestors_expectations_hold_in_tracing_ancestors(client: TestClient) -> None:
    """Go Kelemetry's e2e/ancestors/validate.jq: the ReplicaSet under its Deployment, alone."""
    rs = {**DEMO, "resource": "replicasets", "name": FIRST_RS}
    trace = fetch(client, with_mode(redirect(client, **rs), "22000000"))
    root = root_of(trace)
    assert tags(root)["resource"] == "deployments" and tags(root)["name"] == "demo"
    (child,) = children_of(trace, root["spanID"])
    assert tags(child)["name"] == FIRST_RS
    assert children_of(trace, child["spanID"]) == []

    # Depth digits: one level of owners above a Pod is its ReplicaSet.
    pod = next(
        row["name"]
        for row in ok(client.get("/api/kelemetry/objects", params={"resource": "pods", "q": FIRST_RS}))[
            "data"
        ]
    )
    one_up = fetch(
        client,
        with_mode(redirect(client, **{**DEMO, "resource": "pods", "group": "", "name": pod}), "22010000"),
    )
    top = root_of(one_up)
    assert tags(top)["name"] == FIRST_RS
    assert [tags(s)["name"] for s in children_of(one_up, top["spanID"])] == [pod]


def test_tree_full_tree_shows_requests_and_events_as_spans(client: TestClient) -> None:
    trace = fetch(client, with_mode(redirect(client, **DEMO), "01000000"))
    root = root_of(trace)
    sources = {tags(s).get("kelemetry.trace_source") for s in children_of(trace, root["spanID"])}
    assert sources == {"object", "audit", "event"}
    processes = {p["serviceName"] for p in trace["processes"].values()}
    assert {"tracetest deployments", "replicasets", "pods", "audit", "event"} == processes


def test_every_mode_of_a_view_opens(client: TestClient) -> None:
    trace_id = redirect(client, **DEMO)
    sizes = {}
    for mode in modes.ALL:
        trace = fetch(client, with_mode(trace_id, mode.id))
        root_of(trace)
        sizes[mode.id] = len(trace["spans"])
    assert sizes["20000000"] == 1
    assert sizes["21000000"] == sizes["24000000"] == 1 + 2 + 8
    assert sizes["22000000"] == 1
    assert sizes["31000000"] > sizes["21000000"]
    assert sizes["01000000"] > sizes["31000000"]


def test_a_view_opens_over_another_range(client: TestClient) -> None:
    trace_id = with_mode(redirect(client, **DEMO), "20000000")
    narrow = fetch(client, trace_id, start="2026-11-23T07:23:31Z", end="2026-11-23T07:23:32Z")
    whole = fetch(client, trace_id)
    (root,) = narrow["spans"]
    timestamps = [log["timestamp"] for log in root["logs"]]
    # Everything in the range: one-off Events are points now, so none starts before it.
    assert timestamps and all(1_795_418_611_000_000 <= t <= 1_795_418_612_000_000 for t in timestamps)
    assert len(root["logs"]) < len(whole["spans"][0]["logs"])
    refused(
        client.get(f"/api/traces/{trace_id}", params={"start": BEFORE, "end": BEFORE}), 404, "no activity"
    )
    refused(client.get(f"/api/traces/{trace_id}", params={"start": "soon"}), 400, "invalid start 'soon'")
    refused(client.get(f"/api/traces/{trace_id}", params={"end": "later"}), 400, "invalid end 'later'")


def test_a_view_refuses_an_inverted_range(client: TestClient) -> None:
    """As a search and a lookup do: a range that ends before it starts is a bad parameter."""
    trace_id = redirect(client, **DEMO)
    inverted = {"start": "2026-11-23T08:00:00Z", "end": "2026-11-23T07:00:00Z"}
    refused(client.get(f"/api/traces/{trace_id}", params=inverted), 400, "start is after end")


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({}, 400, "missing query parameter(s): cluster, resource, name, ts"),
        (
            {"cluster": CLUSTER, "resource": "deployments", "name": "demo"},
            400,
            "missing query parameter(s): ts",
        ),
        ({"cluster": CLUSTER, "name": "demo", "ts": TS}, 400, "missing query parameter(s): resource"),
        ({"resource": "deployments", "name": "demo", "ts": TS}, 400, "missing query parameter(s): cluster"),
        ({**DEMO, "name": "", "ts": TS}, 400, "missing query parameter(s): name"),
        ({**DEMO, "ts": "now"}, 400, "invalid ts 'now'"),
        ({**DEMO, "ts": "2026-11-23T07:25:00"}, 400, "RFC 3339 needs a time zone"),
        ({**DEMO, "ts": BEFORE}, 404, "no activity in the requested time range"),
        ({**DEMO, "name": "nope", "ts": TS}, 404, "no object deployments.apps/nope"),
        ({**DEMO, "cluster": "elsewhere", "ts": TS}, 404, "(cluster elsewhere) is known"),
    ],
)
def test_bad_redirects_are_refused_with_the_reason(
    client: TestClient, params: dict[str, str], status: int, message: str
) -> None:
    refused(client.get("/redirect", params=params), status, message)


@pytest.mark.parametrize(
    ("trace_id", "status", "message"),
    [
        ("nothex", 400, "invalid trace id 'nothex': expected 32 hex digits of the form ff<mode>e1e3e7<view>"),
        ("0123456789abcdef0123456789abcdef", 400, "invalid trace id"),
        ("ff20000000e1e3e7000000000000123", 400, "invalid trace id"),
        ("ff99000000e1e3e70000000000001234", 400, "unknown display mode id '99000000'"),
        ("ff21000001e1e3e70000000000001234", 400, "unknown display mode id '21000001'"),
        (UNKNOWN_VIEW, 404, "view 0000000000001234 is not known here"),
    ],
)
def test_bad_trace_ids_are_refused(client: TestClient, trace_id: str, status: int, message: str) -> None:
    refused(client.get(f"/api/traces/{trace_id}"), status, message)
    refused(client.get(f"/api/kelemetry/views/{trace_id}"), status, message)


def test_a_view_number_beyond_63_bits_is_an_unknown_view(client: TestClient) -> None:
    """Any 16 hex digits parse as a view number; one no view can have is unknown, not a crash."""
    for trace_id in ("ff20000000e1e3e7ffffffffffffffff", "ff20000000e1e3e78000000000000000"):
        refused(client.get(f"/api/traces/{trace_id}"), 404, "is not known here")
        refused(client.get(f"/api/kelemetry/views/{trace_id}"), 404, "is not known here")


@pytest.mark.parametrize("value", ["99999999999999999999", "²"])
def test_times_that_are_digits_but_not_usable_are_refused(client: TestClient, value: str) -> None:
    """A number too large for a time (or a digit character int() cannot read) is bad input."""
    refused(client.get("/api/traces", params={"tags": DEMO_TAGS, "start": value}), 400, "invalid start")
    refused(client.get("/api/kelemetry/lookup", params={**DEMO, "end": value}), 400, "invalid end")
    refused(client.get("/redirect", params={**DEMO, "ts": value}), 400, "invalid ts")


# -- our lookup API


def test_modes_lists_every_mode_with_its_parts(client: TestClient) -> None:
    body = ok(client.get("/api/kelemetry/modes"))
    assert body["default"] == "21000000"
    assert [(mode["id"], mode["name"]) for mode in body["modes"]] == MODE_LIST
    # An id's first digit is the mode, its second the scope (Go Kelemetry's layout).
    bases = {"0": "tree", "1": "timeline", "2": "tracing", "3": "grouped"}
    scopes = {"0": "object", "1": "full", "2": "ancestors", "4": "children"}
    for mode in body["modes"]:
        assert (mode["mode"], mode["scope"], mode["depth"]) == (
            bases[mode["id"][0]],
            scopes[mode["id"][1]],
            3,
        )
    assert body["modes"][0] == {
        "id": "21000000",
        "name": "tracing [full tree]",
        "mode": "tracing",
        "scope": "full",
        "depth": 3,
    }


def test_clusters_and_resources(client: TestClient) -> None:
    assert ok(client.get("/api/kelemetry/clusters")) == {"data": [CLUSTER]}
    resources = ok(client.get("/api/kelemetry/resources"))["data"]
    by_name = {(r["group"], r["resource"]): r for r in resources}
    assert by_name[("apps", "deployments")] == {
        "group": "apps",
        "resource": "deployments",
        "kind": "Deployment",
        "objects": 1,
        "shortNames": ["deploy"],
    }
    assert by_name[("apps", "replicasets")]["objects"] == 2
    assert by_name[("", "pods")] == {
        "group": "",
        "resource": "pods",
        "kind": "Pod",
        "objects": 8,
        "shortNames": ["po"],
    }
    assert [r["resource"] for r in resources] == sorted(r["resource"] for r in resources)
    assert ok(client.get("/api/kelemetry/resources", params={"cluster": CLUSTER}))["data"] == resources
    assert ok(client.get("/api/kelemetry/resources", params={"cluster": "elsewhere"})) == {"data": []}


def test_objects_suggests_by_name_prefix_or_uid(client: TestClient) -> None:
    found = ok(client.get("/api/kelemetry/objects", params={"q": FIRST_RS}))["data"]
    names = [row["name"] for row in found]
    assert sorted(names) == sorted([FIRST_RS, *(n for n in names if n.startswith(FIRST_RS + "-"))])
    assert len(names) == 5
    last_seen = [row["lastSeen"] for row in found]
    assert last_seen == sorted(last_seen, reverse=True)
    rs = next(row for row in found if row["name"] == FIRST_RS)
    assert set(rs) == {
        "cluster",
        "group",
        "resource",
        "namespace",
        "name",
        "kind",
        "uid",
        "firstSeen",
        "lastSeen",
    }
    assert (rs["cluster"], rs["group"], rs["resource"], rs["kind"]) == (
        CLUSTER,
        "apps",
        "replicasets",
        "ReplicaSet",
    )
    assert type(rs["firstSeen"]) is int and rs["firstSeen"] <= rs["lastSeen"]

    pods = ok(client.get("/api/kelemetry/objects", params={"resource": "pods", "q": "demo", "limit": "3"}))[
        "data"
    ]
    assert len(pods) == 3 and all(row["resource"] == "pods" for row in pods)
    by_uid = ok(client.get("/api/kelemetry/objects", params={"q": DEMO_UID}))["data"]
    assert [row["name"] for row in by_uid] == ["demo"]
    upper = ok(client.get("/api/kelemetry/objects", params={"q": "DEMO-85", "resource": "replicasets"}))[
        "data"
    ]
    assert [row["name"] for row in upper] == [FIRST_RS]
    everything = ok(client.get("/api/kelemetry/objects", params={"limit": "500"}))["data"]
    assert len(everything) > 10
    assert ok(client.get("/api/kelemetry/objects", params={"namespace": "kube-system"}))["data"] == []
    assert ok(client.get("/api/kelemetry/objects", params={"cluster": "elsewhere"}))["data"] == []


@pytest.mark.parametrize("text", ["%", "demo%", "demo_", "_", "demo\\"])
def test_objects_treats_like_wildcards_as_plain_text(client: TestClient, text: str) -> None:
    assert ok(client.get("/api/kelemetry/objects", params={"q": text}))["data"] == []


@pytest.mark.parametrize(
    ("limit", "message"),
    [("0", "limit must be between 1 and 500, not 0"), ("501", "not 501"), ("x", "invalid limit 'x'")],
)
def test_objects_refuses_a_bad_limit(client: TestClient, limit: str, message: str) -> None:
    refused(client.get("/api/kelemetry/objects", params={"limit": limit}), 400, message)


def test_lookup_gives_a_view_per_object_in_the_mode_asked(client: TestClient) -> None:
    body = ok(client.get("/api/kelemetry/lookup", params={**DEMO, "mode": "24000000"}))
    (found,) = body["data"]
    assert found["object"] == {**DEMO, "kind": "Deployment", "uid": DEMO_UID}
    assert found["viewId"].startswith("ff24000000e1e3e7")
    trace = fetch(client, found["viewId"])
    assert len(children_of(trace, root_of(trace)["spanID"])) == 2

    plain = ok(client.get("/api/kelemetry/lookup", params={"resource": "deployments", "name": "demo"}))
    assert plain["data"][0]["viewId"][:10] == "ff21000000"
    assert plain["data"][0]["viewId"][10:] == found["viewId"][10:]
    ranged = ok(
        client.get("/api/kelemetry/lookup", params={**DEMO, "start": str(TS_US - HOUR_US), "end": TS})
    )
    assert ranged["data"][0]["viewId"][10:] != found["viewId"][10:]


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"name": "demo"}, 400, "missing query parameter(s): resource"),
        ({"resource": "deployments"}, 400, "missing query parameter(s): name"),
        ({}, 400, "missing query parameter(s): resource, name"),
        ({**DEMO, "mode": "tracing"}, 400, "invalid display mode id 'tracing': expected 8 hex digits"),
        ({**DEMO, "mode": "99000000"}, 400, "unknown display mode id '99000000'"),
        ({**DEMO, "start": "x"}, 400, "invalid start 'x'"),
        ({**DEMO, "start": TS, "end": BEFORE}, 400, "start is after end"),
        ({**DEMO, "name": "nope"}, 404, "no object deployments.apps/nope in namespace default"),
        (
            {**DEMO, "start": BEFORE, "end": "2020-01-02T00:00:00Z"},
            404,
            "no activity in the requested time range",
        ),
    ],
)
def test_bad_lookups_are_refused_with_the_reason(
    client: TestClient, params: dict[str, str], status: int, message: str
) -> None:
    refused(client.get("/api/kelemetry/lookup", params=params), status, message)


def test_view_info_names_the_object_range_and_mode(client: TestClient) -> None:
    trace_id = redirect(client, **DEMO)
    info = ok(client.get(f"/api/kelemetry/views/{with_mode(trace_id, '34020000').upper()}"))
    assert info == {
        "viewId": with_mode(trace_id, "34020000"),
        "modeId": "34020000",
        "mode": "grouped",
        "scope": "children",
        "depth": 2,
        "name": "grouped [owned objects] (depth 2)",
        # The view is of the one incarnation the lookup found; the demo was never recreated.
        "object": {**DEMO, "uid": DEMO_UID},
        "start": TS_US - 30 * 60 * 1_000_000,
        "end": TS_US + 30 * 60 * 1_000_000,
        "incarnations": [],
    }


# -- the web UI


def test_the_ui_pages_are_the_single_page_app(client: TestClient) -> None:
    index = api.STATIC_DIR / "index.html"
    for path in ("/", "/search", f"/trace/{UNKNOWN_VIEW}"):
        response = client.get(path)
        if index.is_file():
            assert response.status_code == 200, (path, response.text)
            assert response.headers["content-type"].startswith("text/html")
            assert response.headers["cache-control"] == "no-cache"
            assert response.content == index.read_bytes()
        else:
            refused(response, 500, "the web UI is not installed (frontend/static/index.html is missing)")


def test_static_files_are_served_when_present(client: TestClient) -> None:
    files = sorted(p for p in api.STATIC_DIR.glob("*") if p.is_file()) if api.STATIC_DIR.is_dir() else []
    for path in files:
        response = client.get(f"/static/{path.name}")
        assert response.status_code == 200, path.name
        assert response.content == path.read_bytes()
    assert client.get("/static/no-such-file.js").status_code == 404


# -- several objects of one name


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """Pods named "web" in two namespaces of cluster c1."""
    path = tmp_path_factory.mktemp("twins") / "k.db"
    store = SpanStore(path)
    pipeline = new_pipeline(store)
    events = [audit_event(name="web", namespace=ns, uid=f"u-{ns}") for ns in ("team-a", "team-b")]
    assert pipeline.process_audit(events, "c1").failed == 0
    store.close()
    service = QueryService(StoreBackend(StoreReader(path)), ViewStore(None))
    app = FastAPI()
    api.install(app, service)
    yield TestClient(app, raise_server_exceptions=False, follow_redirects=False)
    service.close()


def test_a_name_in_two_namespaces(twins: TestClient) -> None:
    at = "2024-05-01T10:00:00Z"
    pod = {"cluster": "c1", "resource": "pods", "name": "web", "ts": at}
    refused(twins.get("/redirect", params=pod), 400, "pods/web (cluster c1) matches 2 objects")
    assert twins.get("/redirect", params={**pod, "namespace": "team-b"}).status_code == 302
    found = ok(twins.get("/api/kelemetry/lookup", params={"resource": "pods", "name": "web"}))["data"]
    assert sorted(item["object"]["namespace"] for item in found) == ["team-a", "team-b"]
    assert len({item["viewId"] for item in found}) == 2
    pods = json.dumps({"resource": "pods", "name": "web"})
    both = ok(twins.get("/api/traces", params={"tags": pods}))["data"]
    assert len(both) == 2
    assert len(ok(twins.get("/api/traces", params={"tags": pods, "limit": "1"}))["data"]) == 1


def test_an_ambiguous_redirect_says_how_to_narrow_it(twins: TestClient) -> None:
    """The refusal must tell the objects apart, or the user cannot pick one."""
    pod = {"cluster": "c1", "resource": "pods", "name": "web", "ts": "2024-05-01T10:00:00Z"}
    error = refused(twins.get("/redirect", params=pod), 400, "matches 2 objects")
    assert "team-a" in error and "team-b" in error, error


@pytest.mark.parametrize(
    "path",
    [
        "/api/traces/a%2Fb",
        "/api/kelemetry/views/%2Fx",
        "/api/nosuch",
        # Found by the 100,000-case make fuzz: a newline after an encoded "/" escapes the catch-all
        # route's pattern as well.
        "/api/kelemetry/views/gb%3B%2F%0A%C2%AA",
    ],
)
def test_a_path_no_api_route_takes_is_refused_with_our_json(client: TestClient, path: str) -> None:
    # Found by tests/fuzz: an id holding an encoded "/" matched no route and got the framework's
    # {"detail": "Not Found"}, which Jaeger UI cannot show.
    refused(client.get(path), 404, "no API endpoint")
