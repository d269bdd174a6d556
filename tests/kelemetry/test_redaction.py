"""A canary Secret value goes in through the webhook and through replay, and comes out nowhere:
not in the store or inbox files, not in any dump format, not in OTLP export bytes, not in our logs.
The diff still says which Secret key changed."""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from warnings import catch_warnings, filterwarnings

import pytest

from kelemetry import cli
from kelemetry.app import Collector, create_app
from kelemetry.diff.redact import LAST_APPLIED, Redactor
from kelemetry.export.otlp import OtlpFollower
from kelemetry.receivers.audit import scrub_batch
from kelemetry.receivers.auditwire import decode_batch
from kelemetry.settings import ServeSettings, StoreSettings
from tests.factories import audit_event, event_list

with catch_warnings():
    # starlette warns at import that it prefers another HTTP client; not our concern here.
    filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

CANARY = "canary-7f3a9c-do-not-leak"
CANARY2 = "canary-second-e41d"
NEEDLES = [CANARY, CANARY2, *(base64.b64encode(c.encode()).decode() for c in (CANARY, CANARY2))]


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
