"""GET /api/kelemetry/explain and /api/kelemetry/blame on the replayed Deployment sample.

Covers the answers' JSON shape (object, chain steps with their requests, the blame entries), the
resolution of resources and incarnations as the other endpoints do it, and the refusals: a bad
field or time is a 400 with the reason, an unknown object a 404 with what it may have meant.
The rules of the chain itself are tested in test_causes.py, blame's in test_blame.py.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from frontend import api
from frontend.backend import StoreBackend
from frontend.query import QueryService
from frontend.views import ViewStore
from kelemetry.store.sqlite import StoreReader

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

CLUSTER = "tracetest"
POD = {"cluster": CLUSTER, "resource": "pods", "namespace": "default", "name": "demo-5544f8b48c-bq8vc"}
DEMO = {"cluster": CLUSTER, "resource": "deploy", "namespace": "default", "name": "demo"}
# The image patch (rollout revision 2) and the first Pod the new ReplicaSet made after it.
AFTER_ROLLOUT = "2026-11-23T07:23:31.600Z"
HEX16 = re.compile(r"[0-9a-f]{16}")
HEX32 = re.compile(r"[0-9a-f]{32}")
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture(scope="module")
def client(sample_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    views = ViewStore(tmp_path_factory.mktemp("views") / "views.db")
    service = QueryService(StoreBackend(StoreReader(sample_store)), views)
    app = FastAPI()
    api.install(app, service)
    yield TestClient(app, raise_server_exceptions=False)
    service.close()


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, (response.status_code, response.text)
    body = response.json()
    assert len(body["data"]) == 1
    return body["data"][0]


def refused(response: httpx.Response, status: int, message: str) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["errors"] == [{"code": status, "msg": body["error"]}]
    assert message in body["error"], body["error"]
    return str(body["error"])


def check_request(request: dict[str, Any]) -> None:
    assert set(request) == {
        "time",
        "time_us",
        "user",
        "user_agent",
        "verb",
        "subresource",
        "code",
        "audit_id",
        "span_id",
        "trace_id",
    }
    assert STAMP.fullmatch(request["time"])
    assert HEX16.fullmatch(request["span_id"]) and HEX32.fullmatch(request["trace_id"])


def test_explain_a_pod_after_the_rollout_names_the_replicaset_the_deployment_and_admin(
    client: TestClient,
) -> None:
    answer = ok(client.get("/api/kelemetry/explain", params={**POD, "ts": AFTER_ROLLOUT}))
    assert answer["object"]["name"] == "demo-5544f8b48c-bq8vc" and answer["object"]["kind"] == "Pod"
    assert answer["object"]["uid"]
    assert answer["at"] == AFTER_ROLLOUT
    assert answer["complete"] is True
    # The Deployment's rollouts up to the moment: revision 1 at the create, 2 at admin's image patch.
    assert [(r["revision"], r["trigger"]["user"]) for r in answer["rollouts"]] == [
        ("1", "admin"),
        ("2", "admin"),
    ]
    assert answer["rollouts"][1]["object"]["name"] == "demo-5544f8b48c"
    assert answer["stuck"] == []
    assert HEX32.fullmatch(answer["view_id"]) and answer["view_id"].startswith("ff")
    chain = answer["chain"]
    assert [(step["object"]["kind"], step["object"]["name"], step["relation"]) for step in chain] == [
        ("Pod", "demo-5544f8b48c-bq8vc", "created"),
        ("ReplicaSet", "demo-5544f8b48c", "scaled"),
        ("Deployment", "demo", "changed"),
    ]
    for step in chain:
        check_request(step["request"])
        assert step["proven"] is True
    assert chain[0]["request"]["user"] == "system:serviceaccount:kube-system:replicaset-controller"
    assert chain[0]["actor"] == "controller"
    assert chain[1]["changes"][-1] == "spec.replicas 2 -> 3"
    origin = chain[-1]
    assert origin["actor"] == "human" and origin["request"]["user"] == "admin"
    assert origin["request"]["verb"] == "patch" and origin["request"]["code"] == 200
    assert 'spec.template.spec.containers[name=nginx].image "nginx:1.27" -> "nginx:1.28"' in origin["changes"]
    assert "started by admin (kubectl)" in answer["summary"]
    # The view it links to opens.
    assert client.get(f"/api/kelemetry/views/{answer['view_id']}").status_code == 200


def test_explain_defaults_to_the_last_activity(client: TestClient) -> None:
    answer = ok(client.get("/api/kelemetry/explain", params=POD))
    assert answer["at"] == "2026-11-23T07:23:33.345Z"
    relations = [
        (step["object"]["kind"], step["relation"], step["request"]["user"]) for step in answer["chain"]
    ]
    assert relations == [
        ("Pod", "deleted", "system:serviceaccount:kube-system:generic-garbage-collector"),
        ("ReplicaSet", "deleted", "system:serviceaccount:kube-system:generic-garbage-collector"),
        ("Deployment", "deleted", "admin"),
    ]


def test_blame_spec_replicas_names_admin_and_the_scale_request(client: TestClient) -> None:
    answer = ok(client.get("/api/kelemetry/blame", params={**DEMO, "field": "spec.replicas"}))
    assert answer["object"]["resource"] == "deployments" and answer["object"]["group"] == "apps"
    assert answer["field"] == "spec.replicas"
    (incarnation,) = answer["incarnations"]
    assert incarnation["deleted"] is True and incarnation["uid"] == answer["object"]["uid"]
    history = [
        (e["old"], e["new"], e["request"]["verb"], e["request"]["subresource"])
        for e in incarnation["history"]
    ]
    assert history == [
        ("null", "2", "create", ""),
        ("2", "4", "patch", "scale"),
        ("4", "2", "patch", "scale"),
    ]
    current = answer["current"]
    assert current == incarnation["history"][-1]
    assert current["request"]["user"] == "admin" and current["source"] == "audit" and current["proven"]
    check_request(current["request"])


def test_blame_up_to_a_moment(client: TestClient) -> None:
    answer = ok(
        client.get("/api/kelemetry/blame", params={**DEMO, "field": "spec.replicas", "ts": AFTER_ROLLOUT})
    )
    assert answer["current"]["new"] == "4"


@pytest.mark.parametrize(
    ("path", "params", "status", "message"),
    [
        pytest.param("blame", {**DEMO}, 400, "missing query parameter(s): field", id="no-field"),
        pytest.param("blame", {**DEMO, "field": "spec..replicas"}, 400, "invalid field", id="bad-field"),
        pytest.param("blame", {**DEMO, "field": "spec[name"}, 400, "invalid field", id="open-bracket"),
        pytest.param("explain", {**POD, "ts": "yesterday"}, 400, "invalid ts", id="bad-ts"),
        pytest.param("explain", {"cluster": CLUSTER, "resource": "pods"}, 400, "missing", id="no-name"),
        pytest.param(
            "explain", {**POD, "name": "demo-5544f8b48c-bq8vx"}, 404, "did you mean", id="unknown-object"
        ),
        pytest.param(
            "blame", {**DEMO, "name": "dem", "field": "spec"}, 404, "did you mean", id="unknown-blame"
        ),
        pytest.param("explain", {**POD, "uid": "nope"}, 404, "no object", id="unknown-uid"),
        pytest.param("explain", {**POD, "ts": "2020-01-01T00:00:00Z"}, 404, "no activity", id="before-it"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(
    client: TestClient, path: str, params: dict[str, str], status: int, message: str
) -> None:
    refused(client.get(f"/api/kelemetry/{path}", params=params), status, message)


def test_chain_only_leaves_the_rollouts_out(client: TestClient) -> None:
    answer = ok(
        client.get("/api/kelemetry/explain", params={**POD, "ts": AFTER_ROLLOUT, "chainOnly": "true"})
    )
    assert answer["rollouts"] == [] and answer["stuck"] == [] and len(answer["chain"]) == 3
    refused(client.get("/api/kelemetry/explain", params={**POD, "chainOnly": "maybe"}), 400, "chainOnly")
