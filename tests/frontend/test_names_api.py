"""Names as people type them, over HTTP: every kubectl spelling of a resource in the API's tags,
/redirect, the lookup API and the suggestions; partial names and uids; "did you mean" and
"last active" reasons on 404s; ambiguous resources refused with the choices; times as epoch seconds,
milliseconds, microseconds, nanoseconds or RFC 3339. On the recorded Deployment sample, and on a
small store of custom resources sharing a kind across groups."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from frontend import api
from frontend.backend import StoreBackend
from frontend.query import QueryService
from frontend.views import ViewStore
from kelemetry import errors
from kelemetry.kube.discovery import parse_resource_lists
from kelemetry.kube.kinds import KindResolver
from kelemetry.store.sqlite import SpanStore, StoreReader
from tests.factories import audit_event, new_pipeline
from tests.frontend.test_api import DEMO_UID, FIRST_RS, TS, TS_US, TestClient, ok, refused

SPELLINGS = ["deploy", "Deployment", "deployment", "deployments", "deployments.apps", "deployments.v1.apps"]
# Sample times (2026-11-23T07:25:00Z) in every form a jq user might hold them.
TS_FORMS = [TS, str(TS_US // 1_000_000), str(TS_US // 1_000), str(TS_US), str(TS_US * 1_000), "1795418700.0"]


@pytest.fixture(scope="module")
def client(sample_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    views = ViewStore(tmp_path_factory.mktemp("views") / "views.db")
    service = QueryService(StoreBackend(StoreReader(sample_store)), views)
    app = FastAPI()
    api.install(app, service)
    yield TestClient(app, raise_server_exceptions=False, follow_redirects=False)
    service.close()


def traces(client: TestClient, **tags: str) -> list[dict[str, object]]:
    data: list[dict[str, object]] = ok(client.get("/api/traces", params={"tags": json.dumps(tags)}))["data"]
    return data


def root_tags(trace: dict[str, object]) -> dict[str, object]:
    spans = trace["spans"]
    assert isinstance(spans, list)
    root = next(span for span in spans if not span["references"])
    return {tag["key"]: tag["value"] for tag in root["tags"]}


@pytest.mark.parametrize("resource", SPELLINGS)
def test_every_spelling_finds_the_deployment(client: TestClient, resource: str) -> None:
    found = traces(client, resource=resource, name="demo")
    assert len(found) == 1
    assert root_tags(found[0])["uid"] == DEMO_UID
    lookup = ok(client.get("/api/kelemetry/lookup", params={"resource": resource, "name": "demo"}))["data"]
    assert [item["object"]["uid"] for item in lookup] == [DEMO_UID]
    redirect = client.get(
        "/redirect", params={"cluster": "tracetest", "resource": resource, "name": "demo", "ts": TS}
    )
    assert redirect.status_code == 302 and redirect.headers["location"].startswith("/trace/ff")
    objects = ok(client.get("/api/kelemetry/objects", params={"resource": resource, "q": "demo"}))["data"]
    assert [row["name"] for row in objects] == ["demo"]


@pytest.mark.parametrize(("resource", "name"), [("rs", FIRST_RS), ("ReplicaSet", FIRST_RS), ("po", None)])
def test_short_names_and_kinds_of_owned_objects(client: TestClient, resource: str, name: str | None) -> None:
    if name is None:
        pods = ok(client.get("/api/kelemetry/objects", params={"resource": resource, "q": "demo"}))["data"]
        assert pods and all(row["resource"] == "pods" for row in pods)
        name = pods[0]["name"]
    assert len(traces(client, resource=resource, name=name)) == 1


def test_a_group_the_resource_is_not_in_is_refused(client: TestClient) -> None:
    refused(
        client.get("/api/kelemetry/lookup", params={"resource": "deploy", "group": "batch", "name": "demo"}),
        400,
        "resource 'deploy' is in group 'apps', not group 'batch'",
    )


def test_an_unknown_resource_says_what_it_may_be(client: TestClient) -> None:
    reason = refused(
        client.get("/api/traces", params={"tags": json.dumps({"resource": "deplyo", "name": "demo"})}),
        404,
        "",
    )
    assert (
        reason
        == "no object deplyo/demo (any cluster) is known: unknown resource 'deplyo'; did you mean deploy?"
    )


def test_a_misspelt_name_says_the_nearest_objects(client: TestClient) -> None:
    reason = refused(
        client.get("/api/kelemetry/lookup", params={"resource": "deploy", "name": "dmeo"}),
        404,
        "did you mean",
    )
    assert reason.endswith("did you mean deployments.apps/demo in namespace default (cluster tracetest)?")


def test_the_same_name_elsewhere_comes_first(client: TestClient) -> None:
    reason = refused(
        client.get("/api/kelemetry/lookup", params={"resource": "pods", "name": "demo"}), 404, "did you mean"
    )
    # The Deployment named demo, then Pods whose names start with it.
    assert "did you mean deployments.apps/demo in namespace default (cluster tracetest); pods/demo-" in reason


def test_a_wrong_namespace_points_at_the_right_one(client: TestClient) -> None:
    params = {"resource": "deploy", "name": "demo", "namespace": "prod", "cluster": "tracetest"}
    reason = refused(client.get("/api/kelemetry/lookup", params=params), 404, "")
    assert reason == (
        "no object deployments.apps/demo in namespace prod (cluster tracetest) is known; "
        "did you mean deployments.apps/demo in namespace default (cluster tracetest)?"
    )


def test_no_activity_in_the_range_says_when_it_was_active(client: TestClient) -> None:
    params = {
        "resource": "deploy",
        "name": "demo",
        "start": "2026-11-24T00:00:00Z",
        "end": "2026-11-24T01:00:00Z",
    }
    reason = refused(client.get("/api/kelemetry/lookup", params=params), 404, "")
    assert reason.startswith(
        "deployments.apps/demo (any cluster) has no activity in the requested time range; "
        "it was last active at 2026-11-23T07:23:33Z ("
    )
    assert "first at 2026-11-23T07:23:30Z: try --since " in reason
    assert reason.endswith(
        "--start 2026-11-23T07:23:30Z --end 2026-11-23T07:23:34Z (CLI), "
        "start=2026-11-23T07:23:30Z&end=2026-11-23T07:23:34Z (API)"
    )
    # The range it proposes finds it.
    ok(
        client.get(
            "/api/kelemetry/lookup",
            params={**params, "start": "2026-11-23T07:23:30Z", "end": "2026-11-23T07:23:34Z"},
        )
    )
    redirect = client.get(
        "/redirect",
        params={"cluster": "tracetest", "resource": "deploy", "name": "demo", "ts": "2026-11-24T12:00:00Z"},
    )
    assert redirect.status_code == 404 and "last active at 2026-11-23T07:23:33Z" in redirect.json()["error"]


@pytest.mark.parametrize("moment", TS_FORMS)
def test_times_in_every_epoch_unit_and_rfc_3339(client: TestClient, moment: str) -> None:
    redirect = client.get(
        "/redirect", params={"cluster": "tracetest", "resource": "deploy", "name": "demo", "ts": moment}
    )
    assert redirect.status_code == 302, redirect.text
    found = ok(
        client.get(
            "/api/traces", params={"tags": json.dumps({"resource": "deploy", "name": "demo"}), "end": moment}
        )
    )
    assert len(found["data"]) == 1


def test_epoch_units_agree() -> None:
    assert {api.parse_time_param("ts", form) for form in TS_FORMS} == {TS_US}
    assert api.parse_time_param("ts", "1795418700.5") == TS_US + 500_000
    assert api.parse_time_param("ts", "0") == 0


@pytest.mark.parametrize("moment", ["2026-11-23T07:25:00Z", str(TS_US // 1_000_000)])
def test_a_start_after_the_end_in_any_unit_is_refused(client: TestClient, moment: str) -> None:
    params = {"resource": "deploy", "name": "demo", "start": moment, "end": str(TS_US // 1_000 - 1)}
    refused(client.get("/api/kelemetry/lookup", params=params), 400, "start is after end")


def test_errors_keep_data_a_list(client: TestClient) -> None:
    for response in (
        client.get("/api/traces", params={"tags": json.dumps({"resource": "deploy", "name": "nope"})}),
        client.get("/api/traces", params={"start": "yesterday", "tags": "{}"}),
        client.get("/api/traces/ff20000000e1e3e70000000000001234"),
    ):
        assert response.status_code in (400, 404)
        assert response.json()["data"] == []


# -- partial names and uids


def test_a_pod_found_by_its_distinguishing_suffix(client: TestClient) -> None:
    pods = ok(client.get("/api/kelemetry/objects", params={"resource": "po", "q": "demo"}))["data"]
    suffix = pods[0]["name"].rsplit("-", 1)[1]
    found = ok(client.get("/api/kelemetry/objects", params={"q": suffix}))["data"]
    assert [row["name"] for row in found] == [pods[0]["name"]]
    middle = ok(client.get("/api/kelemetry/objects", params={"resource": "pods", "q": "5544f8b48c"}))["data"]
    assert middle and all("5544f8b48c" in row["name"] for row in middle)


def test_exact_then_prefix_then_substring(client: TestClient) -> None:
    found = ok(client.get("/api/kelemetry/objects", params={"q": "demo", "limit": "500"}))["data"]
    names = [row["name"] for row in found]
    assert names[0] == "demo"
    assert all(name.startswith("demo") for name in names)
    rs = ok(client.get("/api/kelemetry/objects", params={"q": "85dd8d7bd8", "limit": "500"}))["data"]
    assert rs[0]["name"] == FIRST_RS  # the shortest name containing the text comes first among its peers
    assert all("85dd8d7bd8" in row["name"] for row in rs)


def test_a_uid_or_its_first_characters_find_the_incarnation(client: TestClient) -> None:
    for text in (DEMO_UID, DEMO_UID[:8], DEMO_UID.upper()):
        found = ok(client.get("/api/kelemetry/objects", params={"q": text}))["data"]
        assert [row["uid"] for row in found] == [DEMO_UID], text
    lookup = ok(
        client.get("/api/kelemetry/lookup", params={"resource": "deploy", "name": "demo", "uid": DEMO_UID})
    )
    assert lookup["data"][0]["object"]["uid"] == DEMO_UID


# -- custom resources: the store's kinds, discovery's short names, a kind in two groups


@pytest.fixture(scope="module")
def crds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Widgets of two groups (kind Widget in both) and gadgets of one, in cluster c1."""
    path = tmp_path_factory.mktemp("crds") / "k.db"
    store = SpanStore(path)
    pipeline = new_pipeline(store)
    events = [
        audit_event(resource="widgets", group="a.example.com", name="w1", uid="u-a", kind="Widget"),
        audit_event(resource="widgets", group="b.example.com", name="w1", uid="u-b", kind="Widget"),
        audit_event(resource="gadgetries", group="example.com", name="g1", uid="u-g", kind="Gadget"),
    ]
    for event in events:
        event["objectRef"]["apiVersion"] = "v1"
    assert pipeline.process_audit(events, "c1").failed == 0
    store.close()
    return path


def crd_client(path: Path, kinds: KindResolver | None = None) -> TestClient:
    app = FastAPI()
    api.install(app, QueryService(StoreBackend(StoreReader(path)), ViewStore(None), kinds))
    return TestClient(app, raise_server_exceptions=False, follow_redirects=False)


def test_a_kind_the_store_has_seen(crds: Path) -> None:
    client = crd_client(crds)
    for resource in ("Gadget", "gadget", "gadgetries", "gadgetries.example.com", "gadgetries.v1.example.com"):
        found = ok(client.get("/api/kelemetry/lookup", params={"resource": resource, "name": "g1"}))["data"]
        assert [item["object"]["uid"] for item in found] == ["u-g"], resource


def test_a_kind_in_two_groups_is_refused_with_the_choices(crds: Path) -> None:
    client = crd_client(crds)
    reason = refused(
        client.get("/api/kelemetry/lookup", params={"resource": "Widget", "name": "w1"}), 400, ""
    )
    assert reason == (
        "resource 'Widget' is ambiguous: it may be widgets.a.example.com, widgets.b.example.com; "
        "name one of them"
    )
    refused(
        client.get("/api/traces", params={"tags": json.dumps({"resource": "widget", "name": "w1"})}),
        400,
        "is ambiguous",
    )
    for group, uid in (("a", "u-a"), ("b", "u-b")):
        qualified = f"widgets.{group}.example.com"
        found = ok(client.get("/api/kelemetry/lookup", params={"resource": qualified, "name": "w1"}))["data"]
        assert [item["object"]["uid"] for item in found] == [uid]
        found = ok(
            client.get(
                "/api/kelemetry/lookup",
                params={"resource": "Widget", "group": f"{group}.example.com", "name": "w1"},
            )
        )["data"]
        assert [item["object"]["uid"] for item in found] == [uid]
    # The plural as stored still means both, as it always did.
    found = ok(client.get("/api/kelemetry/lookup", params={"resource": "widgets", "name": "w1"}))["data"]
    assert sorted(item["object"]["uid"] for item in found) == ["u-a", "u-b"]


def test_discovery_short_names_of_a_connected_cluster(crds: Path) -> None:
    lists = [
        {
            "groupVersion": "example.com/v1",
            "resources": [
                {"name": "gadgetries", "kind": "Gadget", "namespaced": True, "shortNames": ["gdg"]}
            ],
        }
    ]
    client = crd_client(crds, KindResolver(parse_resource_lists(lists)))
    found = ok(client.get("/api/kelemetry/lookup", params={"resource": "gdg", "name": "g1"}))["data"]
    assert [item["object"]["uid"] for item in found] == ["u-g"]
    # Without discovery the short name is unknown, and the reason says so.
    refused(
        crd_client(crds).get("/api/kelemetry/lookup", params={"resource": "gdg", "name": "g1"}),
        404,
        "unknown resource 'gdg'",
    )


@pytest.mark.parametrize("lookback", ["2h", "1h30m", "5400", "90m", "0.1d"])
def test_lookbacks_as_jaeger_and_people_write_them(client: TestClient, lookback: str) -> None:
    # Seen from 08:50, the Deployment's activity at 07:23 is within 90 minutes.
    params = {"tags": json.dumps({"resource": "deploy", "name": "demo"}), "end": "2026-11-23T08:50:00Z"}
    assert len(ok(client.get("/api/traces", params={**params, "lookback": lookback}))["data"]) == 1
    refused(client.get("/api/traces", params={**params, "lookback": "30m"}), 404, "no activity")


def test_lookback_parts_add_up() -> None:
    assert api.lookback_us("1h30m") == api.lookback_us("90m") == api.lookback_us("5400") == 5_400_000_000
    for bad in ("1h30", "h", "1y", "-5m", "1h 30m"):
        with pytest.raises(errors.InputError, match="invalid lookback"):
            api.lookback_us(bad)
