"""The pipeline hands the store the object versions it sees: a request's response (whole, or
reconstructed from a Scale's replicas), a deletion, and every watched version; written again the
same on replay; never a Status or Scale taken for the object; never a Secret value."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path
from typing import Any

from aggregators import ids
from kelemetry import cli
from kelemetry.model.objects import Incarnation, ObjectKey
from kelemetry.model.versions import DELETED_RV
from kelemetry.store.sqlite import StoreReader
from tests.conftest import REPO_ROOT
from tests.factories import audit_event
from tests.kelemetry.test_watched_changes import T0, TARGET, deployment, pipeline

DEPLOYMENT = REPO_ROOT / "samples" / "deployment" / "audit.log"
SECRET = REPO_ROOT / "samples" / "secret" / "audit.log"
DEMO = ObjectKey.make("tracetest", "apps", "deployments", "default", "demo")


def _replay(store: Path, *logs: Path) -> None:
    assert (
        cli.main(["replay", "--quiet", "--cluster", "tracetest", "--store", str(store), *map(str, logs)]) == 0
    )


def _rows(store: Path) -> list[tuple[object, ...]]:
    db = sqlite3.connect(store)
    try:
        return db.execute("SELECT * FROM versions ORDER BY object_id, rv").fetchall()
    finally:
        db.close()


def _bodies(store: Path) -> list[tuple[str, str, str, Any]]:
    """(resource, the object's kind, rv, body) of every stored version."""
    reader = StoreReader(store)
    try:
        found = []
        for row in reader.objects():
            for version in reader.versions_of(row.object_id):
                body = reader.version_body(row.object_id, version.resource_version)
                found.append((row.key.resource, row.kind, version.resource_version, body))
        return found
    finally:
        reader.close()


def test_the_deployment_sample_keeps_each_version_once_and_replays_unchanged(tmp_path: Path) -> None:
    store = tmp_path / "k.db"
    _replay(store, DEPLOYMENT)
    reader = StoreReader(store)
    (demo,) = reader.find_objects(cluster="tracetest", resource="deployments", name="demo")
    versions = reader.versions_of(demo.object_id)
    by_rv = {v.resource_version: v for v in versions}
    assert by_rv["245"].verb == "create" and by_rv["245"].user == "admin" and by_rv["245"].complete
    scale = by_rv["276"]
    assert scale.verb == "patch scale" and not scale.complete
    assert scale.span_id == ids.event_span_id(DEMO, "audit", _audit_id_of_scale())
    body = reader.version_body(demo.object_id, "276")
    assert body["kind"] == "Deployment" and body["spec"]["replicas"] == 4
    assert body["metadata"]["resourceVersion"] == "275"  # the rest is the version before, as it was
    assert versions[-1].resource_version == DELETED_RV and versions[-1].deleted
    assert reader.version_body(demo.object_id, DELETED_RV) is None  # the delete answered with a Status
    reader.close()
    before = _rows(store)
    _replay(store, DEPLOYMENT)
    assert _rows(store) == before


def _audit_id_of_scale() -> str:
    for line in DEPLOYMENT.read_text().splitlines():
        event = json.loads(line)
        ref = event.get("objectRef", {})
        if ref.get("subresource") == "scale" and event["stage"] == "ResponseComplete":
            return str(event["auditID"])
    raise AssertionError("the sample has no scale request")


def test_no_status_or_scale_is_stored_as_the_object(tmp_path: Path) -> None:
    store = tmp_path / "k.db"
    _replay(store, DEPLOYMENT)
    bodies = _bodies(store)
    assert len(bodies) > 50
    for _resource, kind, rv, body in bodies:
        if body is None:
            assert rv == DELETED_RV
            continue
        assert body["kind"] == kind and kind not in ("Status", "Scale"), (kind, rv, body["kind"])
        assert "managedFields" not in body["metadata"]


def test_watched_versions_are_kept_and_a_request_names_them_later(tmp_path: Path) -> None:
    pipe, store = pipeline(tmp_path)
    pipe.process_object_changes([("LIST", deployment("10", 2))], "c", TARGET, T0)
    pipe.process_object_changes([("MODIFIED", deployment("11", 4))], "c", TARGET, T0 + 1_000)
    body = deployment("11", 4)
    event = audit_event(
        verb="update",
        resource="deployments",
        group="apps",
        name="demo",
        uid="d1",
        code=200,
        request_object=body,
        response_object=body,
        received="2024-05-01T10:00:00.000500Z",
    )
    pipe.process_audit([event], "c")
    pipe.process_object_changes([("DELETED", deployment("12", 4))], "c", TARGET, T0 + 2_000)
    object_id = ids.object_id(
        Incarnation(ObjectKey.make("c", "apps", "deployments", "default", "demo"), "d1")
    )
    versions = store.versions_of(object_id)
    assert [(v.resource_version, v.source, v.verb) for v in versions] == [
        ("10", "watch", "list"),
        ("11", "audit", "update"),
        (DELETED_RV, "watch", "delete"),
    ]
    assert versions[1].time_us == T0 + 500 and versions[1].user == "admin"
    last = store.version_body(object_id, DELETED_RV)
    assert last["metadata"]["resourceVersion"] == "12" and "managedFields" not in last["metadata"]
    store.close()


CANARIES = ("kelemetry-canary-4f1d2e", "kelemetry-canary-second-9b7c")


def test_the_secret_sample_stores_versions_without_its_canary(tmp_path: Path) -> None:
    store = tmp_path / "k.db"
    _replay(store, SECRET)
    needles = [*CANARIES, *(base64.b64encode(c.encode()).decode() for c in CANARIES)]
    bodies = _bodies(store)
    secrets = [body for resource, _kind, _rv, body in bodies if resource == "secrets" and body is not None]
    assert secrets, "the Secret's versions are not kept"
    for body in secrets:
        assert set(body["data"]) == {"password", "user"}
        assert all(str(value).startswith("<redacted") for value in body["data"].values()), body["data"]
    text = json.dumps([body for _r, _k, _rv, body in bodies])
    for needle in needles:
        assert needle not in text


def test_an_immediate_delete_answering_with_the_object_marks_it_deleted(tmp_path: Path) -> None:
    store = tmp_path / "k.db"
    _replay(store, DEPLOYMENT)
    reader = StoreReader(store)
    (pod,) = reader.find_objects(cluster="tracetest", resource="pods", name="demo-85dd8d7bd8-krhwb")
    versions = reader.versions_of(pod.object_id)
    # The ReplicaSet controller's graceful delete is a version; kwok's delete with grace 0 removes it.
    assert [(v.resource_version, v.user, v.deleted) for v in versions[-2:]] == [
        ("308", "system:serviceaccount:kube-system:replicaset-controller", False),
        (DELETED_RV, "kwok", True),
    ]
    last = reader.version_body(pod.object_id, DELETED_RV)
    assert last["metadata"]["deletionGracePeriodSeconds"] == 0
    reader.close()
