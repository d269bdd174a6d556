"""The query side at the edges an incident hits: cluster-scoped objects, names in two groups,
objects deleted and recreated, owners learned late or never seen, owner chains deeper than the
default depth, time ranges on window boundaries, Jaeger UI-style requests, odd input, every
display mode, the dump CLI, and Secret values that must never come out.

One store is built through the real pipeline (``kelemetry.pipeline.build``) from synthetic
audit events of cluster ``c1`` on 2024-05-01 (windows of 30 minutes: 10:00-10:30 is W0,
10:30-11:00 is W1), and the API is driven in process with FastAPI's test client.
"""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from frontend import api, modes, query
from frontend.assemble import has_activity
from frontend.backend import StoreBackend
from frontend.views import ViewSpec
from kelemetry import cli, errors
from kelemetry.model.times import parse_time_us
from kelemetry.store.sqlite import SpanStore
from tests.factories import audit_event, new_pipeline, owner_ref
from tests.jaegerjson import children_of, fields, root_of, tags

with warnings.catch_warnings():
    # starlette 1.10 warns on importing its test client when httpx (the project's dev dependency)
    # is installed instead of httpx2; the warning is about the environment, not the code under test.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

CLUSTER = "c1"
ODD_ROLE = "system:odd_name\\'\"é"
CANARY = "canary-edge-5b1e-do-not-leak"
APPLIED_CANARY = "canary-lastapplied-77"
NEEDLES = [
    CANARY,
    APPLIED_CANARY,
    *(base64.b64encode(c.encode()).decode() for c in (CANARY, CANARY + "2", APPLIED_CANARY)),
]


def at(hm: str, second: float = 0.0) -> dict[str, str]:
    return {
        "received": f"2024-05-01T{hm}:{second:09.6f}Z",
        "completed": f"2024-05-01T{hm}:{second + 0.01:09.6f}Z",
    }


def us(text: str) -> int:
    return parse_time_us(text)


def _secret(name: str, uid: str, rv: str, data: dict[str, str], **meta: Any) -> dict[str, Any]:
    return {
        "kind": "Secret",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": "prod", "uid": uid, "resourceVersion": rv, **meta},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        "type": "Opaque",
    }


def secret_events() -> list[dict[str, Any]]:
    """Secret ``db`` created, updated and deleted with a canary value; Secret ``tok`` applied with
    ``kubectl apply`` (so its whole manifest, data included, sits in the last-applied annotation)."""
    created = _secret("db", "sec-1", "10", {"password": CANARY})
    updated = _secret("db", "sec-1", "11", {"password": CANARY + "2"})
    applied = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "tok", "namespace": "prod"},
            "data": {"token": base64.b64encode(APPLIED_CANARY.encode()).decode()},
        }
    )
    annotation = "kubectl.kubernetes.io/last-applied-configuration"
    tok = _secret("tok", "t-1", "1", {"token": APPLIED_CANARY}, annotations={annotation: applied})
    tok_edited = _secret("tok", "t-1", "2", {"token": "x"}, annotations={annotation: "{}"})
    secret = {"resource": "secrets", "namespace": "prod", "kind": "Secret"}
    delete_options = {"kind": "DeleteOptions", "apiVersion": "v1"}
    return [
        audit_event(
            **secret,
            name="db",
            uid="sec-1",
            request_object={**created, "stringData": {"password": CANARY}},
            response_object=created,
            **at("10:09"),
        ),
        audit_event(
            **secret,
            verb="update",
            name="db",
            uid="sec-1",
            code=200,
            request_object=updated,
            response_object=updated,
            **at("10:09", 30),
        ),
        audit_event(
            **secret,
            verb="delete",
            name="db",
            uid="sec-1",
            code=200,
            request_object=delete_options,
            response_object=updated,
            **at("10:09", 40),
        ),
        audit_event(**secret, name="tok", uid="t-1", request_object=tok, response_object=tok, **at("10:10")),
        audit_event(
            **secret,
            verb="patch",
            name="tok",
            uid="t-1",
            code=200,
            request_object={"data": {"token": "eA=="}},
            response_object=tok_edited,
            **at("10:11"),
        ),
        audit_event(
            **secret,
            verb="delete",
            name="tok",
            uid="t-1",
            code=200,
            request_object=delete_options,
            response_object=tok,
            **at("10:12"),
        ),
    ]


def _custom(resource: str, kind: str, owner_kind: str | None, uid: str, owner_uid: str, second: int) -> Any:
    owner = owner_ref(owner_kind, "deep", api_version="example.com/v1", uid=owner_uid) if owner_kind else None
    return audit_event(
        resource=resource,
        group="example.com",
        kind=kind,
        name="deep",
        uid=uid,
        owner=owner,
        **at("10:07", second),
    )


def history() -> list[dict[str, Any]]:
    rs = "ReplicaSet"
    return [
        # cluster-scoped objects
        audit_event(resource="nodes", namespace="", name="node-1", uid="n-1", kind="Node", **at("10:00", 1)),
        audit_event(
            verb="patch",
            resource="nodes",
            namespace="",
            name="node-1",
            uid="n-1",
            kind="Node",
            subresource="status",
            code=200,
            **at("10:00", 2),
        ),
        audit_event(
            resource="namespaces", namespace="", name="team-a", uid="ns-a", kind="Namespace", **at("10:00", 3)
        ),
        audit_event(
            resource="clusterroles",
            group="rbac.authorization.k8s.io",
            namespace="",
            name=ODD_ROLE,
            uid="cr-1",
            kind="ClusterRole",
            **at("10:00", 4),
        ),
        # one name in two groups
        *(
            audit_event(
                resource="widgets", group=g, name="twin", uid=f"w-{g}", kind="Widget", **at("10:00", 5)
            )
            for g in ("a.example.com", "b.example.com")
        ),
        # deleted in W0 and recreated in W1: same key, another uid
        audit_event(name="phoenix", uid="ph-1", **at("10:01")),
        audit_event(verb="delete", name="phoenix", uid="ph-1", code=200, **at("10:02")),
        audit_event(name="phoenix", uid="ph-2", **at("10:40")),
        # an owner that is never seen
        audit_event(name="stray", uid="st-1", owner=owner_ref(rs, "ghost", uid="gh-1"), **at("10:03")),
        # an owner learned late: the pod's first request carried no ownerReference
        audit_event(name="late", uid="la-1", **at("10:04")),
        audit_event(resource="replicasets", group="apps", name="late-rs", uid="lrs-1", **at("10:05")),
        audit_event(
            verb="update",
            name="late",
            uid="la-1",
            code=200,
            owner=owner_ref(rs, "late-rs", uid="lrs-1"),
            **at("10:06"),
        ),
        # a chain of six: Alpha > Beta > Gamma > Deployment > ReplicaSet > Pod
        _custom("alphas", "Alpha", None, "al", "", 0),
        _custom("betas", "Beta", "Alpha", "be", "al", 1),
        _custom("gammas", "Gamma", "Beta", "ga", "be", 2),
        audit_event(
            resource="deployments",
            group="apps",
            name="deep",
            uid="de",
            owner=owner_ref("Gamma", "deep", api_version="example.com/v1", uid="ga"),
            **at("10:07", 3),
        ),
        audit_event(
            resource="replicasets",
            group="apps",
            name="deep-1",
            uid="rs",
            owner=owner_ref("Deployment", "deep", uid="de"),
            **at("10:07", 4),
        ),
        audit_event(name="deep-1-a", uid="po", owner=owner_ref(rs, "deep-1", uid="rs"), **at("10:07", 5)),
        # an owner with no request in the range: only its ReplicaSet is active
        audit_event(resource="deployments", group="apps", name="quiet", uid="q-1", **at("08:00")),
        audit_event(
            resource="replicasets",
            group="apps",
            name="quiet-1",
            uid="q-rs",
            owner=owner_ref("Deployment", "quiet", uid="q-1"),
            **at("10:08"),
        ),
        # exactly on the W0/W1 boundary
        audit_event(
            resource="configmaps",
            name="edge",
            uid="cm-1",
            kind="ConfigMap",
            received="2024-05-01T10:30:00.000000Z",
            completed="2024-05-01T10:30:00.000000Z",
        ),
        *secret_events(),
    ]


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("edges") / "k.db"
    store = SpanStore(path)
    pipeline = new_pipeline(store)
    assert pipeline.process_audit(history(), CLUSTER).failed == 0
    store.close()
    return path


@pytest.fixture(scope="module")
def client(store_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    service = query.for_store(store_path, tmp_path_factory.mktemp("views") / "views.db")
    app = FastAPI()
    api.install(app, service)
    yield TestClient(app, raise_server_exceptions=False, follow_redirects=False)
    service.close()


# -- helpers


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, (response.status_code, response.text)
    return response.json()


def refused(response: httpx.Response, status: int, message: str) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    error = str(body["error"])
    assert body["errors"] == [{"code": status, "msg": error}]
    assert message in error, error
    assert "\n" not in error and "Traceback" not in error
    return error


def view_id(client: TestClient, resource: str, name: str, mode: str = "20000000", **params: str) -> str:
    found = ok(
        client.get(
            "/api/kelemetry/lookup", params={"resource": resource, "name": name, "mode": mode, **params}
        )
    )["data"]
    assert len(found) == 1, found
    vid: str = found[0]["viewId"]
    return vid


def fetch(client: TestClient, trace_id: str, **params: str) -> dict[str, Any]:
    (trace,) = ok(client.get(f"/api/traces/{trace_id}", params=params))["data"]
    result: dict[str, Any] = trace
    return result


def view(
    client: TestClient, resource: str, name: str, mode: str = "20000000", **params: str
) -> dict[str, Any]:
    return fetch(client, view_id(client, resource, name, mode, **params))


def check_jaeger(trace: dict[str, Any]) -> None:
    """A trace Jaeger UI can draw: one root, references inside the trace, unique span ids,
    durations ≥ 0, every process id listed."""
    span_ids = [span["spanID"] for span in trace["spans"]]
    assert len(span_ids) == len(set(span_ids)), "duplicate span ids"
    roots = [span for span in trace["spans"] if not span["references"]]
    assert len(roots) == 1, f"{len(roots)} roots"
    for span in trace["spans"]:
        assert span["traceID"] == trace["traceID"]
        assert span["duration"] >= 0, span
        assert span["processID"] in trace["processes"], span["processID"]
        for ref in span["references"]:
            assert ref["traceID"] == trace["traceID"] and ref["spanID"] in span_ids, ref


def object_resources(trace: dict[str, Any]) -> list[str]:
    return sorted(
        str(tags(span)["resource"])
        for span in trace["spans"]
        if tags(span).get("kelemetry.trace_source", "object") == "object" and "resource" in tags(span)
    )


def audits(span: dict[str, Any]) -> list[str]:
    return [str(fields(log)["audit"]) for log in span["logs"] if "audit" in fields(log)]


# -- cluster-scoped objects


def test_a_node_is_found_with_or_without_an_empty_namespace(client: TestClient) -> None:
    plain = ok(client.get("/api/kelemetry/lookup", params={"resource": "nodes", "name": "node-1"}))["data"]
    empty = ok(
        client.get("/api/kelemetry/lookup", params={"resource": "nodes", "name": "node-1", "namespace": ""})
    )["data"]
    assert plain == empty and len(plain) == 1
    assert plain[0]["object"]["namespace"] == "" and plain[0]["object"]["kind"] == "Node"


@pytest.mark.parametrize(
    ("resource", "name", "audit"),
    [
        ("nodes", "node-1", "admin patch status"),
        ("namespaces", "team-a", "admin create"),
        ("clusterroles", ODD_ROLE, "admin create"),
    ],
)
def test_redirect_to_a_cluster_scoped_object_needs_no_namespace(
    client: TestClient, resource: str, name: str, audit: str
) -> None:
    response = client.get(
        "/redirect",
        params={"cluster": CLUSTER, "resource": resource, "name": name, "ts": "2024-05-01T10:00:00Z"},
    )
    assert response.status_code == 302, response.text
    trace = fetch(client, response.headers["location"].removeprefix("/trace/"))
    (span,) = trace["spans"]
    assert tags(span)["namespace"] == "" and tags(span)["name"] == name
    assert span["operationName"] == name  # no leading "/" for a cluster-scoped object
    assert audit in audits(span)


def test_a_search_by_tags_finds_a_cluster_scoped_object_with_or_without_namespace(client: TestClient) -> None:
    for extra in ({}, {"namespace": ""}, {"cluster": CLUSTER, "group": ""}):
        found = ok(
            client.get(
                "/api/traces", params={"tags": json.dumps({"resource": "nodes", "name": "node-1", **extra})}
            )
        )
        assert len(found["data"]) == 1, extra
        check_jaeger(found["data"][0])


def test_tag_pairs_keep_colons_in_the_value(client: TestClient) -> None:
    found = ok(client.get("/api/traces", params={"tag": ["resource:clusterroles", f"name:{ODD_ROLE}"]}))[
        "data"
    ]
    assert len(found) == 1
    assert tags(root_of(found[0]))["name"] == ODD_ROLE


# -- odd characters in suggestions and lookups


def test_suggestions_match_odd_characters_literally(client: TestClient) -> None:
    def names(text: str) -> list[str]:
        rows = ok(client.get("/api/kelemetry/objects", params={"q": text, "limit": "500"}))["data"]
        return [row["name"] for row in rows]

    assert names("system:odd_") == [ODD_ROLE]
    assert names(ODD_ROLE) == [ODD_ROLE]
    assert names("system:odd_name\\") == [ODD_ROLE]
    assert names("system:oddxname") == []  # "_" is not a wildcard
    assert names("system:%") == []  # "%" is not a wildcard
    assert names("SYSTEM:ODD_NAME\\'\"É") == [ODD_ROLE]  # names are lower-case: typed text is folded


@pytest.mark.parametrize("name", ["%", "_", "\\", "'", '"', "\x00", "é", "a" * 5000])
def test_odd_names_are_an_unknown_object_never_an_error(client: TestClient, name: str) -> None:
    refused(client.get("/api/kelemetry/lookup", params={"resource": "pods", "name": name}), 404, "is known")
    tagged = json.dumps({"resource": "pods", "name": name})
    refused(client.get("/api/traces", params={"tags": tagged}), 404, "is known")


# -- one name in two groups


def test_one_name_in_two_groups(client: TestClient) -> None:
    twin = {"cluster": CLUSTER, "resource": "widgets", "name": "twin", "ts": "2024-05-01T10:00:00Z"}
    error = refused(client.get("/redirect", params=twin), 400, "matches 2 objects")
    assert "a.example.com" in error and "b.example.com" in error
    narrowed = client.get("/redirect", params={**twin, "group": "b.example.com"})
    assert narrowed.status_code == 302, narrowed.text
    found = ok(client.get("/api/kelemetry/lookup", params={"resource": "widgets", "name": "twin"}))["data"]
    assert sorted(item["object"]["group"] for item in found) == ["a.example.com", "b.example.com"]


def test_dump_of_a_name_in_two_groups_names_the_group_options(
    store_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "dump",
        "--store",
        str(store_path),
        "--cluster",
        CLUSTER,
        "--resource",
        "widgets",
        "--name",
        "twin",
    ]
    assert cli.main([*argv, "--mode", "tracing"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.strip().splitlines()
    assert "--group 'a.example.com'" in line and "--group 'b.example.com'" in line


# -- deleted and recreated


def test_a_recreated_name_opens_its_newest_incarnation_and_lists_the_other(client: TestClient) -> None:
    # Deleted and created again under the same name: a second object with its own trace, and each
    # view offers the other incarnation.
    params = {"resource": "pods", "name": "phoenix"}
    (found,) = ok(client.get("/api/kelemetry/lookup", params=params))["data"]
    assert found["object"]["uid"] == "ph-2"
    assert [(i["uid"], i["firstSeen"]) for i in found["incarnations"]] == [
        ("ph-1", us(at("10:01")["received"]))
    ]
    (span,) = fetch(client, found["viewId"])["spans"]
    assert audits(span) == ["admin create"]

    tree = view(client, "pods", "phoenix", "00000000", uid="ph-1")
    check_jaeger(tree)
    requests = children_of(tree, root_of(tree)["spanID"])
    assert [(tags(s)["audit.verb"], tags(s)["uid"]) for s in requests] == [
        ("create", "ph-1"),
        ("delete", "ph-1"),
    ]

    old_view = view_id(client, "pods", "phoenix", uid="ph-1")
    (other,) = ok(client.get(f"/api/kelemetry/views/{old_view}"))["incarnations"]
    assert other["uid"] == "ph-2"
    (span,) = fetch(client, other["viewId"])["spans"]
    assert audits(span) == ["admin create"] and tags(span)["uid"] == "ph-2"

    # Jaeger-style search by uid.
    search = json.dumps({"resource": "pods", "name": "phoenix", "uid": "ph-1"})
    (found_trace,) = ok(client.get("/api/traces", params={"tags": search}))["data"]
    check_jaeger(found_trace)
    assert tags(root_of(found_trace))["uid"] == "ph-1"


def test_a_view_saved_without_a_uid_offers_the_incarnation_it_does_not_show(store_path: Path) -> None:
    # Views saved before incarnations were told apart name no uid: they show the newest object active
    # in their range (here the deleted ph-1), and must offer the other one, ph-2.
    service = query.for_store(store_path, None)
    try:
        start, end = us(at("10:00")["received"]), us(at("10:05")["received"])
        spec = ViewSpec(CLUSTER, "", "pods", "default", "phoenix", start, end)
        assert service.open(spec, start, end).target.uid == "ph-1"
        assert [row.uid for row, _view in service.incarnations(spec, modes.DEFAULT)] == ["ph-2"]
    finally:
        service.close()


def test_suggestions_find_a_recreated_object_by_its_current_uid(client: TestClient) -> None:
    rows = ok(client.get("/api/kelemetry/objects", params={"q": "ph-2"}))["data"]
    assert [row["name"] for row in rows] == ["phoenix"]


def test_suggestions_find_a_recreated_object_by_its_earlier_uid(client: TestClient) -> None:
    """A uid finds its object even when it names an earlier, deleted incarnation (the uid in the
    incident's logs), not only the current one."""
    rows = ok(client.get("/api/kelemetry/objects", params={"q": "ph-1"}))["data"]
    assert [row["name"] for row in rows] == ["phoenix"]


# -- owners learned late, owners never seen


def test_an_owner_learned_late_holds_the_pods_earlier_requests(client: TestClient) -> None:
    for resource, name, mode in (("pods", "late", "21000000"), ("replicasets", "late-rs", "24000000")):
        trace = view(client, resource, name, mode)
        check_jaeger(trace)
        root = root_of(trace)
        assert tags(root)["name"] == "late-rs"
        (pod,) = children_of(trace, root["spanID"])
        assert tags(pod)["name"] == "late"
        assert audits(pod) == ["admin create", "admin update"]


def test_an_owner_never_seen_is_the_root_without_requests(client: TestClient) -> None:
    from_pod = view(client, "pods", "stray", "21000000")
    from_owner = view(client, "replicasets", "ghost", "24000000")
    for trace in (from_pod, from_owner):
        check_jaeger(trace)
        root = root_of(trace)
        assert tags(root)["name"] == "ghost" and audits(root) == []
        (pod,) = children_of(trace, root["spanID"])
        assert audits(pod) == ["admin create"]


# -- deep owner chains


@pytest.mark.parametrize(
    ("resource", "name", "mode", "root", "objects"),
    [
        ("pods", "deep-1-a", "22000000", "gammas", ["deployments", "gammas", "pods", "replicasets"]),
        ("pods", "deep-1-a", "22010000", "replicasets", ["pods", "replicasets"]),
        (
            "pods",
            "deep-1-a",
            "22050000",
            "alphas",
            ["alphas", "betas", "deployments", "gammas", "pods", "replicasets"],
        ),
        (
            "pods",
            "deep-1-a",
            "21050000",
            "alphas",
            ["alphas", "betas", "deployments", "gammas", "pods", "replicasets"],
        ),
        ("pods", "deep-1-a", "24ff0000", "pods", ["pods"]),
        ("alphas", "deep", "24000000", "alphas", ["alphas", "betas", "deployments", "gammas"]),
        ("alphas", "deep", "34010000", "alphas", ["alphas", "betas"]),
        ("alphas", "deep", "02000000", "alphas", ["alphas"]),
        (
            "deployments",
            "deep",
            "21000000",
            "alphas",
            ["alphas", "betas", "deployments", "gammas", "pods", "replicasets"],
        ),
        ("deployments", "deep", "01010000", "gammas", ["deployments", "gammas", "replicasets"]),
    ],
)
def test_depth_digits_cut_a_chain_of_six(
    client: TestClient, resource: str, name: str, mode: str, root: str, objects: list[str]
) -> None:
    trace = view(client, resource, name, mode)
    check_jaeger(trace)
    assert tags(root_of(trace))["resource"] == root
    assert object_resources(trace) == objects


# -- every mode is valid Jaeger JSON


@pytest.mark.parametrize(
    ("resource", "name"),
    [
        ("pods", "deep-1-a"),
        ("deployments", "deep"),
        ("nodes", "node-1"),
        ("deployments", "quiet"),
        ("pods", "phoenix"),
        ("pods", "late"),
        ("replicasets", "ghost"),
        ("secrets", "db"),
        ("configmaps", "edge"),
    ],
)
def test_every_mode_and_depth_is_valid_jaeger_json(client: TestClient, resource: str, name: str) -> None:
    number = view_id(client, resource, name)[10:]
    for mode in modes.ALL:
        for depth in ("00", "01", "05"):
            trace = fetch(client, f"ff{mode.id[:2]}{depth}{mode.id[4:]}{number}")
            check_jaeger(trace)


# -- an owner with no requests of its own in the range

QUIET_RANGE = {"start": "2024-05-01T10:00:00Z", "end": "2024-05-01T11:00:00Z"}


@pytest.mark.parametrize(
    ("mode", "spans"), [("34000000", 3), ("14000000", 2), ("04000000", 3), ("24000000", 2)]
)
def test_an_owner_with_only_its_childs_activity(client: TestClient, mode: str, spans: int) -> None:
    trace = view(client, "deployments", "quiet", mode, **QUIET_RANGE)
    check_jaeger(trace)
    root = root_of(trace)
    assert tags(root)["name"] == "quiet" and root["logs"] == []
    assert len(trace["spans"]) == spans
    created = [s for s in trace["spans"] if tags(s).get("audit.verb") == "create" or audits(s)]
    assert created, "the ReplicaSet's create is not in the view"


def test_dump_of_an_owner_with_only_its_childs_activity(
    store_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["dump", "--store", str(store_path), "--cluster", CLUSTER, "--resource", "deployments"]
    argv += ["--name", "quiet", "--start", QUIET_RANGE["start"], "--end", QUIET_RANGE["end"]]
    for mode in ("tracing", "grouped", "tree", "timeline"):
        assert cli.main([*argv, "--mode", mode, "--scope", "children", "--format", "tree"]) == 0
        out = capsys.readouterr().out
        assert out.startswith("deployments.apps/quiet"), out
        assert "admin create" in out and "T08:00" not in out, (mode, out)


# -- time ranges

EDGE = json.dumps({"resource": "configmaps", "name": "edge"})


@pytest.mark.parametrize(
    ("start", "end", "found"),
    [
        ("2024-05-01T10:30:00Z", "2024-05-01T10:30:00Z", 1),  # start == end, on the boundary
        ("2024-05-01T10:00:00Z", "2024-05-01T10:29:59.999999Z", 0),  # the µs before the boundary
        ("2024-05-01T12:30:00+02:00", "2024-05-01T12:30:00+02:00", 1),  # an offset
        ("2024-05-01T10:29:59.5Z", "2024-05-01T10:30:00.25Z", 1),  # fractions
        ("2024-05-01T10:29:59.123456789Z", "2024-05-01T10:31:00Z", 1),  # nanoseconds
        (str(us("2024-05-01T10:30:00Z")), str(us("2024-05-01T10:30:00Z")), 1),  # µs
        ("2024-05-01T11:00:00.000001Z", "2024-05-01T12:00:00Z", 0),  # after W1
    ],
)
def test_ranges_on_the_window_boundary(client: TestClient, start: str, end: str, found: int) -> None:
    response = client.get("/api/traces", params={"tags": EDGE, "start": start, "end": end})
    if found:
        assert len(ok(response)["data"]) == found
    else:
        refused(response, 404, "has no activity in the requested time range")


def test_a_range_with_no_activity_of_the_object_is_not_found(client: TestClient) -> None:
    """A range in which nothing happened to the object is a 404 saying so (the README's promise):
    phoenix was deleted at 10:02 and recreated at 10:40, so 10:05-10:10 has no activity, and the
    window-long object span of W0 does not count as any."""
    params = {
        "resource": "pods",
        "name": "phoenix",
        "start": "2024-05-01T10:05:00Z",
        "end": "2024-05-01T10:10:00Z",
    }
    refused(
        client.get("/api/kelemetry/lookup", params=params), 404, "no activity in the requested time range"
    )


def test_dump_of_a_range_with_no_activity_fails(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The dump follows the same rule as the lookup: a range with no activity of the object exits 1
    with the reason on stderr, rather than printing the bare object."""
    argv = [
        "dump",
        "--store",
        str(store_path),
        "--cluster",
        CLUSTER,
        "--resource",
        "pods",
        "--name",
        "phoenix",
    ]
    code = cli.main([*argv, "--start", "2024-05-01T10:05:00Z", "--end", "2024-05-01T10:10:00Z"])
    captured = capsys.readouterr()
    assert code == 1, captured.out
    assert "no activity in the requested time range" in captured.err


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (None, None),
        ("2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z"),
        ("2024-05-01T10:05:00Z", "2024-05-01T10:10:00Z"),
        ("2024-05-01T10:07:03Z", "2024-05-01T10:07:04Z"),
        ("2024-05-01T10:30:00Z", "2024-05-01T10:30:00Z"),
        ("2024-05-01T10:35:00Z", None),
        (None, "2024-05-01T08:30:00Z"),
        ("2024-05-01T12:00:00Z", None),
    ],
)
def test_the_stores_activity_check_agrees_with_the_assembled_tree(
    store_path: Path, start: str | None, end: str | None
) -> None:
    """A lookup asks the store by index whether an object, or anything it owns, had activity in the
    range; the view it leads to assembles the tree and asks that. Over every object of this store
    (owners learned late or never seen, a chain of six, recreated names), both agree."""
    start_us = None if start is None else us(start)
    end_us = None if end is None else us(end)
    backend = StoreBackend.open(store_path)
    try:
        answers = []
        for row in backend.reader.objects():
            try:
                assembled = has_activity(backend.trace(row, start_us, end_us))
            except errors.NotFound:
                assembled = False
            assert backend.active(row, start_us, end_us) is assembled, row.key.display
            answers.append(assembled)
    finally:
        backend.close()
    assert len(answers) > 20


def test_jaeger_ui_search_with_lookback_and_a_range(client: TestClient) -> None:
    """What Jaeger UI sends: service, empty operation, lookback=1h plus start/end in µs, limit, and
    the duration filters left empty or set (ignored)."""
    end = us("2024-05-01T10:45:00Z")
    params = {
        "service": "* tracing [full tree]",
        "operation": "",
        "tags": EDGE,
        "limit": "20",
        "lookback": "1h",
        "start": str(end - 3_600_000_000),
        "end": str(end),
        "minDuration": "",
        "maxDuration": "1s",
        "spanKind": "server",
    }
    (trace,) = ok(client.get("/api/traces", params=params))["data"]
    assert trace["traceID"].startswith("ff21000000")
    check_jaeger(trace)
    only_lookback = {k: v for k, v in params.items() if k != "start"}
    assert len(ok(client.get("/api/traces", params=only_lookback))["data"]) == 1


def test_jaeger_ui_empty_search_lists_the_objects_active_in_its_range(client: TestClient) -> None:
    """Jaeger UI's search with no tags: the objects with activity in the range, each as its view,
    the most recent first and no more than the limit; nothing when the range has no activity."""
    params = {"service": "tracing", "operation": "", "tags": "{}", "limit": "20", "lookback": "1h"}
    assert ok(client.get("/api/traces", params=params))["data"] == []
    ranged = {**params, "start": str(us("2024-05-01T10:00:00Z")), "end": str(us("2024-05-01T11:00:00Z"))}
    found = ok(client.get("/api/traces", params=ranged))["data"]
    assert len(found) == 20
    for trace in found:
        check_jaeger(trace)
    assert len({t["traceID"] for t in found}) == 20
    first_three = ok(client.get("/api/traces", params={**ranged, "limit": "3"}))["data"]
    assert [t["traceID"] for t in first_three] == [t["traceID"] for t in found[:3]]


def test_jaeger_ui_lookup_by_trace_ids(client: TestClient) -> None:
    """``/api/traces?traceID=...`` (repeatable) answers exactly those traces, as Jaeger's does; Jaeger
    UI uses it for its trace-ID search and trace comparison, so it is not a tag search."""
    first = view_id(client, "nodes", "node-1")
    second = view_id(client, "pods", "phoenix", "21000000")
    found = ok(client.get("/api/traces", params={"traceID": [first, second]}))["data"]
    assert sorted(trace["traceID"] for trace in found) == sorted([first, second])


def test_a_huge_lookback_means_all_history(client: TestClient) -> None:
    """A lookback far beyond the epoch once overflowed SQLite's integers (a 500); it is clamped to
    the epoch, so it finds what all history holds."""
    response = client.get("/api/traces", params={"tags": EDGE, "lookback": "99999999999d"})
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == 1


def test_a_huge_since_means_all_history(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``kelemetry dump --since 99999999999d`` once ended in a traceback; it now dumps everything."""
    argv = [
        "dump",
        "--store",
        str(store_path),
        "--cluster",
        CLUSTER,
        "--resource",
        "pods",
        "--name",
        "phoenix",
    ]
    assert cli.main([*argv, "--since", "99999999999d"]) == 0
    assert "phoenix" in capsys.readouterr().out


def test_an_unencoded_plus_offset_in_ts_is_read_as_an_offset(client: TestClient) -> None:
    """``ts=2024-05-01T12:01:00+02:00`` typed or pasted into a URL arrives as ``...12:01:00 02:00``
    (``+`` is a space in a query string) and is accepted: a space before an ``hh:mm`` at the end can
    only have been a ``+``."""
    ts = "2024-05-01T12:01:00+02:00"
    url = f"/redirect?cluster={CLUSTER}&resource=pods&namespace=default&name=phoenix&ts={ts}"
    response = client.get(url)
    assert response.status_code == 302, response.text


# -- odd parameters: never a 500


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/api/traces", {"tags": EDGE, "limit": "99999999999999999999999"}, 400),
        ("/api/traces", {"tags": EDGE, "limit": "-0"}, 200),
        ("/api/traces", {"tags": EDGE, "start": "", "end": "", "lookback": "", "limit": ""}, 200),
        ("/api/traces", {"tags": EDGE, "start": "0001-01-01T00:00:00Z"}, 200),
        ("/api/traces", {"tags": EDGE, "end": "9999-12-31T23:59:59.999999Z"}, 200),
        # Nanoseconds (2116): after the object's activity.
        ("/api/traces", {"tags": EDGE, "start": "4611686018427387903"}, 404),
        ("/api/traces", {"tags": EDGE, "lookback": "0ms"}, 404),
        ("/api/traces", {"tags": EDGE, "minDuration": "banana", "maxDuration": "-5"}, 200),
        ("/api/traces", {"tags": EDGE, "service": "tracing [full tree] (depth 99999999999999999999)"}, 400),
        ("/api/traces", {"tags": EDGE, "operation": "*"}, 404),
        ("/api/traces", {"tags": '{"resource": "configmaps", "name": "edge", "cluster": ""}'}, 200),
        ("/api/kelemetry/objects", {"cluster": "", "resource": "", "q": "", "limit": ""}, 200),
        ("/api/kelemetry/objects", {"limit": "-1"}, 400),
        ("/api/kelemetry/lookup", {"resource": "pods", "name": "phoenix", "mode": ""}, 200),
        ("/api/kelemetry/lookup", {"resource": "pods", "name": "phoenix", "mode": " 21000000"}, 400),
        ("/api/kelemetry/lookup", {"resource": "pods", "name": "phoenix", "start": "-1"}, 400),
        ("/api/kelemetry/lookup", {"resource": "", "name": ""}, 400),
        (
            "/redirect",
            {"cluster": CLUSTER, "resource": "pods", "name": "phoenix", "ts": "4611686018427387903"},
            404,
        ),
        (
            "/redirect",
            {"cluster": CLUSTER, "resource": "pods", "name": "phoenix", "ts": "0001-01-01T00:00:00Z"},
            404,
        ),
        ("/redirect", {"cluster": "", "resource": "", "name": "", "ts": ""}, 400),
        ("/api/kelemetry/resources", {"cluster": ""}, 200),
    ],
)
def test_odd_parameters_are_answered_never_a_server_error(
    client: TestClient, path: str, params: dict[str, str], status: int
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == status, (response.status_code, response.text)
    if status != 200:
        refused(response, status, "")


def test_repeated_parameters_take_the_last_value(client: TestClient) -> None:
    response = client.get("/api/kelemetry/objects", params=[("limit", "500"), ("limit", "1")])
    assert len(ok(response)["data"]) == 1


def test_not_found_messages_do_not_show_an_empty_cluster(client: TestClient) -> None:
    """Without a cluster, the not-found reason names the object without an empty "(cluster )"."""
    error = refused(
        client.get("/api/kelemetry/lookup", params={"resource": "pods", "name": "nope"}), 404, "pods/nope"
    )
    assert "(cluster )" not in error


def test_not_found_with_an_empty_namespace_says_it_looked_for_a_cluster_scoped_object(
    client: TestClient,
) -> None:
    """``namespace=`` looks for a cluster-scoped object, and the not-found reason says so (secrets/db
    is known, in namespace prod, so a bare "no object secrets/db" would mislead)."""
    params = {"cluster": CLUSTER, "resource": "secrets", "name": "db", "namespace": ""}
    error = refused(client.get("/api/kelemetry/lookup", params=params), 404, "secrets/db")
    assert "cluster-scoped" in error or "namespace ''" in error or 'namespace ""' in error, error


# -- Secrets


def leaks(text: str) -> list[str]:
    return [needle for needle in NEEDLES if needle in text]


def test_no_secret_value_in_any_mode_or_suggestion(client: TestClient) -> None:
    number = view_id(client, "secrets", "db")[10:]
    for mode in modes.ALL:
        text = client.get(f"/api/traces/ff{mode.id}{number}").text
        assert leaks(text) == [], mode.name
    (span,) = fetch(client, f"ff20000000{number}")["spans"]
    diffs = [str(fields(log)["diff"]) for log in span["logs"] if "diff" in fields(log)]
    assert diffs == ["data.password <redacted> -> <redacted>"]
    assert leaks(client.get("/api/kelemetry/objects", params={"q": "db"}).text) == []


def test_no_secret_value_from_the_last_applied_annotation_in_the_api(client: TestClient) -> None:
    """A Secret made with ``kubectl apply`` carries its whole manifest, data included, in the
    ``kubectl.kubernetes.io/last-applied-configuration`` annotation; redaction scrubs the values
    there too, so no display mode shows them in a diff or the delete snapshot."""
    number = view_id(client, "secrets", "tok")[10:]
    for mode in modes.ALL:
        text = client.get(f"/api/traces/ff{mode.id}{number}").text
        assert leaks(text) == [], mode.name


@pytest.mark.parametrize("fmt", ["tree", "json", "jsonl"])
def test_no_secret_value_in_dumps(store_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    base = [
        "dump",
        "--store",
        str(store_path),
        "--cluster",
        CLUSTER,
        "--resource",
        "secrets",
        "--format",
        fmt,
    ]
    for name in ("db", "tok"):
        assert cli.main([*base, "--name", name]) == 0
        assert leaks(capsys.readouterr().out) == [], (name, fmt)
        assert cli.main([*base, "--name", name, *(["--mode", "tracing"] if fmt != "jsonl" else [])]) == 0
        assert leaks(capsys.readouterr().out) == [], (name, fmt, "tracing")


# -- dump on cluster-scoped objects


def test_dump_of_a_node_in_tracing_mode(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "dump",
        "--store",
        str(store_path),
        "--cluster",
        CLUSTER,
        "--resource",
        "nodes",
        "--name",
        "node-1",
    ]
    for extra in ([], ["--namespace", ""]):
        assert cli.main([*argv, *extra, "--mode", "tracing", "--format", "tree"]) == 0
        out = capsys.readouterr().out
        assert out.splitlines()[0] == "nodes/node-1  [Node, uid n-1]"
        assert "admin patch status" in out
    assert cli.main([*argv, "--format", "json", "--mode", "tree"]) == 0
    (trace,) = json.loads(capsys.readouterr().out)["data"]
    check_jaeger(trace)
