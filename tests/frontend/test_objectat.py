"""The object at a moment over HTTP (/api/kelemetry/revisions, /manifest, /manifest/diff), on the
recorded Deployment sample: demo is created with 2 replicas (07:23:30.571), scaled to 4 by
``admin`` (07:23:31.278, a Scale answer: the version is reconstructed), given a new image
(07:23:31.431), scaled to 2 (07:23:32.658) and deleted (07:23:33.319, a Status answer).

Also: the Jaeger backend answers 501 with the reason (it keeps no object versions).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI

from frontend import api
from frontend.backend import StoreBackend
from frontend.jaegerstore import JaegerBackend
from frontend.query import QueryService
from frontend.views import ViewStore
from jaeger.client import JaegerClient
from kelemetry import cli
from kelemetry.store.sqlite import StoreReader
from tests.factories import reuse_stream
from tests.jaeger.fakejaeger import FakeJaeger, jaeger_traces, serving

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

DEMO = {
    "cluster": "tracetest",
    "group": "apps",
    "resource": "deployments",
    "namespace": "default",
    "name": "demo",
}
CREATED = "2026-11-23T07:23:30.571331Z"
SCALED_UP = "2026-11-23T07:23:31.278180Z"
SCALED_DOWN = "2026-11-23T07:23:32.658745Z"
DELETED = "2026-11-23T07:23:33.319759Z"


def _app(backend: Any, views: Path) -> FastAPI:
    app = FastAPI()
    api.install(app, QueryService(backend, ViewStore(views)))
    return app


@pytest.fixture(scope="module")
def client(sample_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    app = _app(StoreBackend(StoreReader(sample_store)), tmp_path_factory.mktemp("views") / "v.db")
    yield TestClient(app, raise_server_exceptions=False)
    app.state.query_service.close()


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, (response.status_code, response.text)
    return response.json()


def manifest_at(client: TestClient, at: str, **extra: str) -> Any:
    return ok(client.get("/api/kelemetry/manifest", params={**DEMO, "at": at, **extra}))


def test_revisions_list_every_version_with_who_made_it(client: TestClient) -> None:
    body = ok(client.get("/api/kelemetry/revisions", params=DEMO))
    assert body["object"]["kind"] == "Deployment" and body["object"]["name"] == "demo"
    data = body["data"]
    assert data[0]["rv"] == "245" and data[0]["verb"] == "create" and data[0]["user"] == "admin"
    scale = next(r for r in data if r["rv"] == "276")
    assert scale["verb"] == "patch scale" and scale["user"] == "admin" and scale["complete"] is False
    assert scale["spanID"] and len(scale["spanID"]) == 16
    assert data[-1]["deleted"] is True and data[-1]["user"] == "admin"
    times = [r["time"] for r in data]
    assert times == sorted(times)
    # Status answers (the 409 conflicts, the delete) are no versions of the object.
    assert len({r["rv"] for r in data}) == len(data)


def test_the_manifest_at_the_scale_request_shows_the_scaled_replicas(client: TestClient) -> None:
    at_scale = manifest_at(client, SCALED_UP)
    assert at_scale["revision"]["rv"] == "276"
    assert at_scale["manifest"]["spec"]["replicas"] == 4
    assert any("reconstructed" in note for note in at_scale["notes"])
    assert "replicas: 4" in at_scale["yaml"]
    before = manifest_at(client, "2026-11-23T07:23:31.278Z")
    assert before["manifest"]["spec"]["replicas"] == 2 and before["revision"]["rv"] == "275"
    assert before["next"] == "276"
    later = manifest_at(client, SCALED_DOWN)
    assert later["manifest"]["spec"]["replicas"] == 2
    assert later["manifest"]["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
    # Cleaned as spans are: no managedFields.
    assert "managedFields" not in at_scale["manifest"]["metadata"]


def test_after_the_delete_the_last_state_is_shown_marked_deleted(client: TestClient) -> None:
    gone = manifest_at(client, "2026-11-23T07:30:00Z")
    assert gone["revision"]["deleted"] is True
    assert gone["manifest"]["metadata"]["resourceVersion"] == "392"
    assert gone["manifest"]["spec"]["replicas"] == 2
    assert any(note.startswith("deleted at 2026-11-23T07:23:33.319759Z by admin") for note in gone["notes"])


def test_before_the_first_version_is_a_404_naming_the_first_known_time(client: TestClient) -> None:
    response = client.get("/api/kelemetry/manifest", params={**DEMO, "at": "2026-11-23T07:00:00Z"})
    assert response.status_code == 404
    error = response.json()["error"]
    assert "no version of Deployment default/demo" in error and CREATED in error, error


def test_by_resource_version_and_as_yaml(client: TestClient) -> None:
    response = client.get("/api/kelemetry/manifest", params={**DEMO, "rv": "296", "format": "yaml"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/yaml")
    assert response.text.startswith("# rv 296 at 2026-11-23T07:23:31.431012Z by admin (patch)\n")
    parsed = yaml.safe_load(response.text)
    assert parsed["kind"] == "Deployment" and parsed["metadata"]["resourceVersion"] == "296"
    missing = client.get("/api/kelemetry/manifest", params={**DEMO, "rv": "1"})
    assert missing.status_code == 404 and "no version 1 of" in missing.json()["error"]


def test_the_side_by_side_diff_of_two_moments(client: TestClient) -> None:
    params = {**DEMO, "at": CREATED, "to": SCALED_UP}
    diff = ok(client.get("/api/kelemetry/manifest/diff", params=params))
    assert diff["left"]["rv"] == "245" and diff["right"]["rv"] == "276"
    changed = [r for r in diff["rows"] if r["kind"] == "changed"]
    assert {"left": "  replicas: 2", "right": "  replicas: 4"}.items() <= next(
        r for r in changed if "replicas" in (r["left"] or "") and r["left"].startswith("  replicas")
    ).items()
    assert diff["changed"] == sum(1 for r in diff["rows"] if r["kind"] != "same")
    assert "-  replicas: 2" in diff["unified"] and "+  replicas: 4" in diff["unified"]
    same = ok(client.get("/api/kelemetry/manifest/diff", params={**DEMO, "rv": "296", "toRv": "296"}))
    assert same["changed"] == 0 and same["unified"] == ""


@pytest.mark.parametrize(
    ("params", "status", "reason"),
    [
        pytest.param({"name": "demo"}, 400, "missing query parameter(s): resource", id="no-resource"),
        pytest.param({**DEMO, "name": "nope"}, 404, "no object deployments.apps", id="unknown"),
        pytest.param({**DEMO, "at": "yesterday"}, 400, "at", id="bad-time"),
        pytest.param({**DEMO, "at": CREATED, "rv": "245"}, 400, "not both", id="at-and-rv"),
        pytest.param({**DEMO, "format": "xml"}, 400, "json or yaml", id="bad-format"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(
    client: TestClient, params: dict[str, str], status: int, reason: str
) -> None:
    response = client.get("/api/kelemetry/manifest", params=params)
    assert response.status_code == status, response.text
    assert reason in response.json()["error"]


def test_a_diff_needs_a_second_revision(client: TestClient) -> None:
    response = client.get("/api/kelemetry/manifest/diff", params={**DEMO, "at": CREATED})
    assert response.status_code == 400 and "toRv" in response.json()["error"]


def test_over_jaeger_the_answer_is_501_with_the_reason(sample_store: Path, tmp_path: Path) -> None:
    reader = StoreReader(sample_store)
    records = [record for _seq, record in reader.spans_after(0, 1_000_000)]
    reader.close()
    with serving(FakeJaeger(traces=jaeger_traces(records))) as fake:
        backend = JaegerBackend(JaegerClient(fake.url), lookback_us=10 * 365 * 24 * 3600 * 1_000_000)
        client = TestClient(_app(backend, tmp_path / "v.db"), raise_server_exceptions=False)
        # Jaeger knows the object (its spans), but keeps no versions of it.
        for path in ("/api/kelemetry/revisions", "/api/kelemetry/manifest"):
            response = client.get(path, params={**DEMO, "at": SCALED_UP})
            assert response.status_code == 501, response.text
            assert "needs the embedded store" in response.json()["error"]


def test_a_reused_name_means_the_incarnation_that_existed_then(tmp_path: Path) -> None:
    log = tmp_path / "reuse.log"
    log.write_text("".join(json.dumps(event) + "\n" for event in reuse_stream()))
    store = tmp_path / "k.db"
    assert cli.main(["replay", "--quiet", "--cluster", "c", "--store", str(store), str(log)]) == 0
    app = _app(StoreBackend(StoreReader(store)), tmp_path / "v.db")
    client = TestClient(app, raise_server_exceptions=False)
    reuse = {"cluster": "c", "resource": "deployments", "name": "reuse"}

    def uid_at(**params: str) -> str:
        body = ok(client.get("/api/kelemetry/manifest", params={**reuse, **params}))
        assert body["manifest"]["metadata"]["uid"] == body["object"]["uid"]
        assert {i["uid"] for i in body["incarnations"]} == {"d-1", "d-2"}
        return str(body["object"]["uid"])

    assert uid_at(at="2024-05-01T10:00:05Z") == "d-1"
    assert uid_at(at="2024-05-01T10:00:35Z") == "d-2"
    assert uid_at() == "d-2"
    assert uid_at(uid="d-1") == "d-1"
    app.state.query_service.close()
