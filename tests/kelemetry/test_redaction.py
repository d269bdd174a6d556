"""A canary Secret value goes in through the webhook and through replay, and comes out nowhere:
not in the store or inbox files, not in any dump format, not in OTLP export bytes, not in our logs.
The diff still says which Secret key changed."""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from warnings import catch_warnings, filterwarnings

import pytest
from fastapi import FastAPI

from frontend import api
from frontend.backend import StoreBackend
from frontend.query import QueryService
from frontend.views import ViewStore
from kelemetry import cli
from kelemetry.app import Collector, create_app
from kelemetry.diff.redact import LAST_APPLIED, OPAQUE_PREFIX, Redactor, with_rules
from kelemetry.export.otlp import OtlpFollower
from kelemetry.receivers.audit import scrub_batch
from kelemetry.receivers.auditwire import decode_batch
from kelemetry.settings import ServeSettings, StoreSettings, TraceSettings
from kelemetry.store.sqlite import StoreReader, decompress
from tests.factories import audit_event, event_list

with catch_warnings():
    # starlette warns at import that it prefers another HTTP client; not our concern here.
    filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

CANARY = "canary-7f3a9c-do-not-leak"
CANARY2 = "canary-second-e41d"
NEEDLES = [CANARY, CANARY2, *(base64.b64encode(c.encode()).decode() for c in (CANARY, CANARY2))]

JSON_TYPE = {"content-type": "application/json"}


def secret_events() -> list[dict[str, object]]:
    def secret(data: dict[str, str], rv: str, string_data: dict[str, str] | None = None) -> dict[str, object]:
        body: dict[str, object] = {
            "kind": "Secret",
            "apiVersion": "v1",
            "metadata": {"name": "db", "namespace": "prod", "uid": "uid-db", "resourceVersion": rv},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
            "type": "Opaque",
        }
        if string_data:
            body["stringData"] = string_data
        return body

    created = secret({"password": CANARY, "user": "admin"}, "10")
    request = secret({"user": "admin"}, "", string_data={"password": CANARY})
    updated = secret({"password": CANARY2, "user": "admin"}, "11")
    return [
        audit_event(
            verb="create",
            resource="secrets",
            namespace="prod",
            name="db",
            uid="uid-db",
            kind="Secret",
            request_object=request,
            response_object=created,
            received="2024-05-01T10:00:00Z",
            completed="2024-05-01T10:00:00.01Z",
        ),
        audit_event(
            verb="update",
            resource="secrets",
            namespace="prod",
            name="db",
            uid="uid-db",
            code=200,
            kind="Secret",
            request_object=updated,
            response_object=updated,
            received="2024-05-01T10:01:00Z",
            completed="2024-05-01T10:01:00.01Z",
        ),
        audit_event(
            verb="delete",
            resource="secrets",
            namespace="prod",
            name="db",
            uid="uid-db",
            code=200,
            kind="Secret",
            request_object={"kind": "DeleteOptions", "apiVersion": "v1"},
            response_object=updated,
            received="2024-05-01T10:02:00Z",
            completed="2024-05-01T10:02:00.01Z",
        ),
        # Credentials: a TokenRequest's answer is a live bearer token; a TokenReview carries one.
        audit_event(
            verb="create",
            resource="serviceaccounts",
            subresource="token",
            namespace="prod",
            name="builder",
            uid="uid-builder",
            kind="TokenRequest",
            request_object={"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1", "spec": {}},
            response_object={
                "kind": "TokenRequest",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"name": "builder", "namespace": "prod"},
                "status": {"token": CANARY, "expirationTimestamp": "2024-05-01T11:03:00Z"},
            },
            received="2024-05-01T10:03:00Z",
            completed="2024-05-01T10:03:00.01Z",
        ),
        audit_event(
            verb="create",
            resource="tokenreviews",
            group="authentication.k8s.io",
            namespace="",
            name="",
            kind="TokenReview",
            request_object={
                "kind": "TokenReview",
                "apiVersion": "authentication.k8s.io/v1",
                "spec": {"token": CANARY2},
            },
            response_object={
                "kind": "TokenReview",
                "apiVersion": "authentication.k8s.io/v1",
                "spec": {"token": CANARY2},
                "status": {"authenticated": True},
            },
            received="2024-05-01T10:04:00Z",
            completed="2024-05-01T10:04:00.01Z",
        ),
    ]


def assert_clean(blob: bytes | str, where: str) -> None:
    text = blob.decode(errors="replace") if isinstance(blob, bytes) else blob
    for needle in NEEDLES:
        assert needle not in text, f"{needle!r} leaked into {where}"


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        self.received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def otlp_receiver() -> Iterator[str]:
    _Receiver.received.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _dumps(store: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = ["dump", "--store", str(store), "--cluster", "c", "--resource", "secrets", "--name", "db"]
    assert cli.main([*args, "--format", "tree"]) == 0
    tree = capsys.readouterr().out
    assert "data.password <redacted> -> <redacted>" in tree
    assert "snapshot: Secret prod/db" in tree
    assert_clean(tree, "the tree dump")
    # The whole snapshot, as --full prints it, is redacted too.
    assert cli.main([*args, "--format", "tree", "--full"]) == 0
    whole = capsys.readouterr().out
    assert "snapshot:" in whole and '"password":"<redacted>"' in whole.replace(" ", "")
    assert_clean(whole, "the full tree dump")
    for fmt in ("json", "jsonl"):
        assert cli.main([*args, "--format", fmt]) == 0
        assert_clean(capsys.readouterr().out, f"the {fmt} dump")
    target = tmp_path / "d.parquet"
    assert cli.main([*args, "--format", "parquet", "--output", str(target)]) == 0
    assert_clean(target.read_bytes(), "the parquet dump")


def test_canary_through_the_webhook(
    tmp_path: Path, otlp_receiver: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    store = tmp_path / "k.db"
    collector = Collector(ServeSettings(store=StoreSettings(path=str(store))))
    collector.ingestor.stop()
    with TestClient(create_app(collector)) as client:
        collector.ingestor.stop()  # keep the batch in the inbox to look at what was persisted
        response = client.post(
            "/audit/c",
            content=json.dumps(event_list(secret_events())),
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 200
        for path in tmp_path.glob("k.db.inbox*"):
            assert_clean(path.read_bytes(), path.name)
        collector.ingestor.start()
        assert collector.ingestor.wait_idle(10)
    for path in tmp_path.glob("k.db*"):
        assert_clean(path.read_bytes(), path.name)
    follower = OtlpFollower(store, otlp_receiver)
    assert follower.drain(10)
    assert _Receiver.received
    for payload in _Receiver.received:
        assert_clean(payload, "an OTLP export request")
    _dumps(store, capsys, tmp_path)
    assert_clean(caplog.text, "our log lines")


def test_canary_through_replay(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    log = tmp_path / "audit.log"
    log.write_text("".join(json.dumps(e) + "\n" for e in secret_events()))
    store = tmp_path / "k.db"
    assert cli.main(["replay", "--cluster", "c", "--store", str(store), str(log)]) == 0
    assert_clean(capsys.readouterr().err, "replay output")
    for path in tmp_path.glob("k.db*"):
        assert_clean(path.read_bytes(), path.name)
    _dumps(store, capsys, tmp_path)
    assert_clean(caplog.text, "our log lines")


def test_scrub_batch_keeps_no_value_of_a_json_patch_or_the_last_applied_annotation() -> None:
    """What reaches the inbox file: a JSON patch to a Secret (a list of operations) and the manifest
    `kubectl apply` copies into an annotation both carry values; neither may be written as is."""
    encoded = base64.b64encode(CANARY.encode()).decode()
    patch = audit_event(
        verb="patch",
        resource="secrets",
        name="db",
        code=200,
        request_object=[{"op": "replace", "path": "/data/password", "value": encoded}],  # type: ignore[arg-type]
        response_object={
            "kind": "Secret",
            "apiVersion": "v1",
            "metadata": {
                "name": "db",
                "namespace": "default",
                "annotations": {LAST_APPLIED: json.dumps({"data": {"password": encoded}})},
            },
            "data": {"password": encoded},
        },
    )
    body = json.dumps(event_list([patch])).encode()
    scrubbed, events = scrub_batch(body, decode_batch(body), Redactor())
    assert encoded.encode() not in scrubbed and CANARY.encode() not in scrubbed
    assert json.loads(scrubbed)["items"][0]["objectRef"]["name"] == "db"
    # The events handed on are those of the scrubbed body, not of the one received.
    assert [event.auditID for event in events] == [patch["auditID"]]
    assert encoded not in json.dumps([events[0].request(), events[0].response()])
    assert events[0].objectRef is not None and events[0].objectRef.name == "db"


def test_scrub_batch_hands_back_what_it_was_given_when_nothing_needs_scrubbing() -> None:
    body = json.dumps(event_list([audit_event(audit_id="p1"), audit_event(resource="configmaps")])).encode()
    events = decode_batch(body)
    scrubbed, kept = scrub_batch(body, events, Redactor())
    assert scrubbed is body and kept is events


def test_scrub_batch_rewrites_only_the_secret_and_keeps_the_other_events() -> None:
    pod = audit_event(audit_id="pod", verb="update", code=200)
    secret = secret_events()[0]
    body = json.dumps(event_list([pod, secret])).encode()
    scrubbed, events = scrub_batch(body, decode_batch(body), Redactor())
    assert scrubbed != body
    assert_clean(scrubbed, "the scrubbed body")
    assert [event.auditID for event in events] == ["pod", secret["auditID"]]
    assert events[0].response() == pod["responseObject"]


def test_scrub_batch_of_a_secret_beside_a_body_json_cannot_hold_as_python_values() -> None:
    """The edge accepts a body with a 5,000-digit number (it is valid JSON, judged only when read); a
    Secret in the same batch must still be scrubbed, and the batch accepted, not fail unexpectedly."""
    huge = json.dumps(audit_event(audit_id="huge", verb="update", code=200)).replace(
        '"resourceVersion": "100"}}}', '"resourceVersion": "100"}, "n": ' + "7" * 5000 + "}}"
    )
    secret = json.dumps(secret_events()[0])
    body = f'{{"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [{huge}, {secret}]}}'.encode()
    events = decode_batch(body)
    assert events[0].auditID == "huge" and events[0].response() is None
    scrubbed, kept = scrub_batch(body, events, Redactor())
    assert_clean(scrubbed, "the scrubbed body")
    assert [event.auditID for event in kept] == [event.auditID for event in events]


# -- Lists of Secrets, mixed lists, odd spellings of the resource: every way a body with a Secret's
# values can arrive under the secret-bodies audit policy (samples/apiserver).

CANARY_CM = "canary-configmap-binary-5b0e"
LIST_NEEDLES = [*NEEDLES, CANARY_CM, base64.b64encode(CANARY_CM.encode()).decode()]


def _secret(name: str, rv: str, value: str, *, with_kind: bool = True) -> dict[str, object]:
    body: dict[str, object] = {
        "metadata": {"name": name, "namespace": "prod", "uid": f"uid-{name}", "resourceVersion": rv},
        "data": {"password": base64.b64encode(value.encode()).decode()},
        "stringData": {"token": value},
        "type": "Opaque",
    }
    return {"kind": "Secret", "apiVersion": "v1", **body} if with_kind else body


def _at(minute: int) -> dict[str, Any]:
    return {"received": f"2024-05-01T10:{minute:02d}:00Z", "completed": f"2024-05-01T10:{minute:02d}:00.01Z"}


def secret_list_events() -> list[dict[str, object]]:
    secret_list = {
        "kind": "SecretList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": "20"},
        # The apiserver leaves kind and apiVersion out of a typed list's items.
        "items": [
            _secret("l1", "18", CANARY, with_kind=False),
            _secret("l2", "19", CANARY2, with_kind=False),
        ],
    }
    mixed = {
        "kind": "List",
        "apiVersion": "v1",
        "items": [
            {"kind": "Service", "apiVersion": "v1", "metadata": {"name": "svc"}, "spec": {"a": "b"}},
            _secret("mixed", "21", CANARY),
        ],
    }
    configmap = {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"name": "bin", "namespace": "prod", "uid": "uid-bin", "resourceVersion": "30"},
        "data": {"plain": CANARY_CM},
        "binaryData": {"blob": base64.b64encode(CANARY_CM.encode()).decode()},
    }
    events = [
        audit_event(
            verb="list",
            resource="secrets",
            namespace="prod",
            name="",
            code=200,
            request_object=None,
            response_object=secret_list,
            **_at(10),
        ),
        audit_event(
            verb="deletecollection",
            resource="secrets",
            namespace="prod",
            name="",
            code=200,
            kind="DeleteOptions",
            response_object=secret_list,
            **_at(11),
        ),
        audit_event(
            verb="create",
            resource="configmaps",
            namespace="prod",
            name="",
            code=201,
            request_object=mixed,
            response_object=mixed,
            **_at(12),
        ),
        audit_event(
            verb="update",
            resource="Secrets",
            namespace="prod",
            name="caps",
            uid="uid-caps",
            code=200,
            kind="Secret",
            request_object=_secret("caps", "22", CANARY),
            response_object=_secret("caps", "22", CANARY),
            **_at(13),
        ),
        audit_event(
            verb="update",
            resource="%73ecrets",
            namespace="prod",
            name="pct",
            uid="uid-pct",
            code=200,
            kind="Secret",
            request_object=_secret("pct", "23", CANARY2),
            response_object=_secret("pct", "23", CANARY2),
            **_at(14),
        ),
        audit_event(
            verb="update",
            resource="secrets",
            subresource="Status",
            namespace="prod",
            name="sub",
            uid="uid-sub",
            code=200,
            kind="Secret",
            request_object=_secret("sub", "24", CANARY),
            response_object=_secret("sub", "24", CANARY),
            **_at(15),
        ),
        audit_event(
            verb="watch",
            resource="secrets",
            namespace="prod",
            name="",
            code=200,
            response_object={"type": "ADDED", "object": _secret("w", "25", CANARY2)},
            **_at(16),
        ),
        audit_event(
            verb="update",
            resource="configmaps",
            namespace="prod",
            name="bin",
            uid="uid-bin",
            code=200,
            kind="ConfigMap",
            request_object=configmap,
            response_object=configmap,
            **_at(17),
        ),
        audit_event(
            verb="update",
            resource="secrets",
            namespace="prod",
            name="esc",
            uid="uid-esc",
            code=200,
            kind="Secret",
            request_object=_secret("esc", "26", CANARY),
            response_object=_secret("esc", "26", CANARY),
            **_at(18),
        ),
    ]
    # The objectRef names no resource; only the request line, percent-escaped, says Secrets.
    nameless = audit_event(
        verb="update",
        resource="pods",
        namespace="prod",
        name="uri",
        uid="uid-uri",
        code=200,
        kind="Secret",
        request_object=_secret("uri", "27", CANARY2),
        response_object=_secret("uri", "27", CANARY2),
        **_at(19),
    )
    nameless["objectRef"] = {"namespace": "prod", "name": "uri"}
    nameless["requestURI"] = "/api/v1/namespaces/prod/%73%65crets/uri?fieldManager=x"
    events.append(nameless)
    return events


def secret_list_batch() -> bytes:
    """The batch as bytes, with the last-but-one event's resource and kinds spelled with JSON escapes."""
    events = secret_list_events()
    encoded = [json.dumps(event) for event in events]
    encoded[-2] = (
        encoded[-2]
        .replace('"resource": "secrets"', '"resource": "secr\\u0065ts"')
        .replace('"kind": "Secret"', '"kind": "S\\u0065cret"')
    )
    return (
        '{"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [' + ", ".join(encoded) + "]}"
    ).encode()


def assert_no_list_canary(blob: bytes | str, where: str) -> None:
    text = blob.decode(errors="replace") if isinstance(blob, bytes) else blob
    for needle in LIST_NEEDLES:
        assert needle not in text, f"{needle!r} leaked into {where}"


def _stored_versions(store: Path) -> list[bytes]:
    """Every stored object version's body, decompressed as the store reads it."""
    db = sqlite3.connect(store)
    try:
        rows = db.execute(
            "SELECT v.body, b.body FROM versions AS v LEFT JOIN version_bases AS b USING (object_id)"
        ).fetchall()
    finally:
        db.close()
    bodies = []
    for blob, base in rows:
        raw_base = decompress(base) if base is not None else None
        if raw_base is not None:
            bodies.append(raw_base)
        if blob:
            bodies.append(decompress(blob, raw_base))
    return bodies


def test_scrub_batch_cleans_every_list_and_spelling_of_secrets() -> None:
    body = secret_list_batch()
    redactor = with_rules(["configmaps:data"])
    scrubbed, events = scrub_batch(body, decode_batch(body), redactor)
    assert_no_list_canary(scrubbed, "the scrubbed batch")
    assert_no_list_canary(json.dumps([[e.request(), e.response()] for e in events]), "the events handed on")
    # What is not a value stays: names, keys, the ConfigMap in the mixed list.
    items = json.loads(scrubbed)["items"]
    assert [i["metadata"]["name"] for i in items[0]["responseObject"]["items"]] == ["l1", "l2"]
    assert items[0]["responseObject"]["items"][0]["data"]["password"].startswith(OPAQUE_PREFIX)
    assert items[2]["responseObject"]["items"][0]["spec"] == {"a": "b"}
    assert set(items[7]["responseObject"]["binaryData"]) == {"blob"}
    assert items[9]["requestURI"].startswith("/api/v1/namespaces/prod/%73%65crets/")


def _api_answers(store: Path, tmp_path: Path) -> None:
    service = QueryService(StoreBackend(StoreReader(store)), ViewStore(tmp_path / "views.db"))
    app = FastAPI()
    api.install(app, service)
    try:
        client = TestClient(app)
        window = {"start": "1714500000000000", "end": "1714600000000000", "limit": "100"}
        answered = 0
        for name in ("caps", "pct", "sub", "bin", "esc", "uri", "l1"):
            resource = "configmaps" if name == "bin" else "secrets"
            tags = {"cluster": "c", "resource": resource, "namespace": "prod", "name": name}
            found = client.get("/api/traces", params={**window, "tags": json.dumps(tags)})
            # uri and l1 made no span (no objectRef; a read), so they answer 404: none the less clean.
            assert found.status_code == (404 if name in ("uri", "l1") else 200), found.text
            assert_no_list_canary(found.content, f"the API's answer for {name}")
            for trace in found.json()["data"]:
                answered += 1
                one = client.get(f"/api/traces/{trace['traceID']}")
                assert one.status_code == 200
                assert_no_list_canary(one.content, f"the API's trace of {name}")
        assert answered >= 5
    finally:
        service.close()


def test_canary_of_secret_lists_through_the_webhook(
    tmp_path: Path, otlp_receiver: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    store = tmp_path / "k.db"
    settings = ServeSettings(
        store=StoreSettings(path=str(store)), trace=TraceSettings(redact=("configmaps:data",))
    )
    collector = Collector(settings)
    collector.ingestor.stop()
    with TestClient(create_app(collector)) as client:
        collector.ingestor.stop()  # keep the batch in the inbox to look at what was persisted
        assert client.post("/audit/c", headers=JSON_TYPE, content=secret_list_batch()).status_code == 200
        inbox = list(tmp_path.glob("k.db.inbox*"))
        assert inbox
        for path in inbox:
            assert_no_list_canary(path.read_bytes(), path.name)
        collector.ingestor.start()
        assert collector.ingestor.wait_idle(10)
        for path in tmp_path.glob("k.db*"):
            assert_no_list_canary(path.read_bytes(), path.name)
    _api_answers(store, tmp_path)
    versions = _stored_versions(store)
    assert versions, "the updates stored object versions"
    for body in versions:
        assert_no_list_canary(body, "a stored object version")
    follower = OtlpFollower(store, otlp_receiver)
    assert follower.drain(10)
    for payload in _Receiver.received:
        assert_no_list_canary(payload, "an OTLP export request")
    for name in ("caps", "bin"):
        resource = "configmaps" if name == "bin" else "secrets"
        args = ["dump", "--store", str(store), "--cluster", "c", "--resource", resource, "--name", name]
        for fmt in ("tree", "json"):
            assert (
                cli.main([*args, "--format", fmt, "--full"] if fmt == "tree" else [*args, "--format", fmt])
                == 0
            )
            out = capsys.readouterr().out
            assert name in out
            assert_no_list_canary(out, f"the {fmt} dump of {name}")
    assert_no_list_canary(caplog.text, "our log lines")


def test_canary_of_secret_lists_through_replay(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    log = tmp_path / "audit.log"
    log.write_bytes(
        b"\n".join(json.dumps(event).encode() for event in json.loads(secret_list_batch())["items"])
    )
    store = tmp_path / "k.db"
    args = ["replay", "--cluster", "c", "--store", str(store), "--redact", "configmaps:data", str(log)]
    assert cli.main(args) == 0
    assert_no_list_canary(capsys.readouterr().err, "replay output")
    for path in tmp_path.glob("k.db*"):
        assert_no_list_canary(path.read_bytes(), path.name)
    versions = _stored_versions(store)
    assert versions
    for body in versions:
        assert_no_list_canary(body, "a stored object version")
    assert_no_list_canary(caplog.text, "our log lines")


def test_a_token_request_spelled_otherwise_is_still_a_credential(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = [event for event in secret_events() if event["objectRef"].get("subresource") == "token"]  # type: ignore[union-attr]
    events[0]["objectRef"]["subresource"] = "Token"  # type: ignore[index]
    other = json.loads(json.dumps(events[0]))
    other["auditID"] += "-2"
    other["objectRef"]["subresource"] = "%74oken"
    body = json.dumps(event_list([events[0], other])).encode()
    scrubbed, _ = scrub_batch(body, decode_batch(body), Redactor())
    assert_clean(scrubbed, "the scrubbed batch")
    log = tmp_path / "audit.log"
    log.write_text("".join(json.dumps(e) + "\n" for e in (events[0], other)))
    store = tmp_path / "k.db"
    assert cli.main(["replay", "--cluster", "c", "--store", str(store), str(log)]) == 0
    capsys.readouterr()
    for path in tmp_path.glob("k.db*"):
        assert_clean(path.read_bytes(), path.name)
