"""The audit webhook against a faulty apiserver or a crafted sender (kelemetry.receivers.webhook,
kelemetry.receivers.auditwire, kelemetry.ingest, /readyz).

Covers: a batch of one valid event and one odd event (a user given as a string, a list for a user
agent, a uid of 2^64-1 as a number, a null name on an update, a user agent nested 300 deep, an
unknown field nested 5,000 deep, a 5,000-digit status code, a 2,000-character name, an unreadable
time, an event dated 9999) is refused whole with a 4xx naming the field, and the next valid batch is
stored; wrong JSON types in the envelope are a 4xx, never a 500; a refusal quoting a 1 MB field is
cut in the answer and the log; after an event dated 9999 replayed from a file, `kelemetry retain`
removes nothing that arrived within the retention; /readyz is ready on a working collector, and says
why not on a corrupted store page (the webhook answers 503 meanwhile, and the accepted batch stays
in the inbox) and below the free-space minimum (507); an event whose body names its kind with a
list or a mapping is stored beside the valid one. The future-date limit is the --max-clock-skew
setting: with 1h, an event 2h ahead is refused with a reason naming the setting and one 30 minutes
ahead is stored; `serve --help` documents it and an unreadable value is a one-line error.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from kelemetry.app import Collector, create_app
from kelemetry.model import tags
from kelemetry.model.events import TraceSource
from kelemetry.settings import ServeSettings, StoreSettings, WebhookSettings
from kelemetry.store.sqlite import StoreReader
from tests.factories import audit_event, event_list

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

KELEMETRY = str(Path(sys.executable).with_name("kelemetry"))
WAIT = 10.0

JSON_TYPE = {"content-type": "application/json"}


@contextmanager
def serving(store_path: Path, **webhook: Any) -> Iterator[tuple[Collector, TestClient]]:
    settings = ServeSettings(store=StoreSettings(path=str(store_path)), webhook=WebhookSettings(**webhook))
    collector = Collector(settings)
    with TestClient(create_app(collector), raise_server_exceptions=False) as client:
        yield collector, client


def audit_ids(store_path: Path) -> Counter[str]:
    reader = StoreReader(store_path)
    try:
        return Counter(
            str(span.tags[tags.AUDIT_ID]) for span in reader.all_spans() if span.source is TraceSource.AUDIT
        )
    finally:
        reader.close()


def valid(audit_id: str) -> dict[str, Any]:
    return audit_event(name=audit_id, uid=f"uid-{audit_id}", audit_id=audit_id)


def odd_update() -> dict[str, Any]:
    return audit_event(verb="update", code=200, name="odd", uid="uid-odd", audit_id="odd")


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def _set(path: str, value: Any) -> Callable[[], bytes]:
    def make() -> bytes:
        event = odd_update()
        *parents, last = path.split(".")
        target = event
        for part in parents:
            target = target[part]
        target[last] = value
        return json.dumps(event).encode()

    return make


def _raw(marker: str, replacement: str) -> Callable[[], bytes]:
    """The odd event as text with ``marker`` replaced: for what json.dumps cannot write."""

    def make() -> bytes:
        text = json.dumps(odd_update())
        assert marker in text
        return text.replace(marker, replacement, 1).encode()

    return make


ODD_EVENTS = [
    pytest.param(_set("user", "alice"), 422, "items[1].user: Expected object", id="user-a-string"),
    pytest.param(_set("userAgent", ["x"]), 422, "items[1].userAgent: Expected str", id="user-agent-a-list"),
    pytest.param(
        _set("objectRef.uid", 2**64 - 1), 422, "items[1].objectRef.uid: Expected str", id="uid-2^64-1"
    ),
    pytest.param(
        _set("objectRef.name", None), 422, "items[1].objectRef.name: Expected str, got null", id="name-null"
    ),
    pytest.param(
        _set("userAgent", nested(300)), 422, "items[1].userAgent: Expected str", id="user-agent-300-deep"
    ),
    pytest.param(
        _raw('"auditID": "odd"', '"extra": ' + "[" * 5000 + "]" * 5000 + ', "auditID": "odd"'),
        400,
        "nests arrays or objects too deeply",
        id="unknown-field-5000-deep",
    ),
    pytest.param(
        _raw('"code": 200', '"code": ' + "7" * 5000),
        422,
        "items[1].responseStatus.code",
        id="code-5000-digits",
    ),
    pytest.param(_set("objectRef.name", "n" * 2000), 422, "length <= 253", id="name-2000-chars"),
    pytest.param(
        _set("requestReceivedTimestamp", "yesterday"), 422, "is not an RFC 3339 time", id="time-unreadable"
    ),
    pytest.param(
        _set("requestReceivedTimestamp", "9999-12-31T23:59:59Z"),
        422,
        "items[1].requestReceivedTimestamp: 9999-12-31T23:59:59Z is more than 24h ahead of this "
        "collector's clock (--max-clock-skew)",
        id="dated-9999",
    ),
]


@pytest.mark.parametrize(("odd", "status", "reason"), ODD_EVENTS)
def test_a_batch_with_an_odd_event_is_refused_with_its_reason_and_the_next_batch_is_stored(
    tmp_path: Path, odd: Callable[[], bytes], status: int, reason: str
) -> None:
    store = tmp_path / "k.db"
    prefix = b'{"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": ['
    body = prefix + json.dumps(valid("first")).encode() + b", " + odd() + b"]}"
    with serving(store) as (collector, client):
        refused = client.post("/audit/c1", headers=JSON_TYPE, content=body)
        then = client.post(
            "/audit/c1", headers=JSON_TYPE, content=json.dumps(event_list([valid("next")])).encode()
        )
        assert collector.ingestor.wait_idle(WAIT)

    assert refused.status_code == status, refused.text
    assert reason in refused.json()["error"]
    assert refused.json()["errors"] == [{"code": status, "msg": refused.json()["error"]}]
    assert then.status_code == 200, then.text
    assert audit_ids(store) == Counter(["next"]), "nothing of the refused batch; all of the next"


ENVELOPES = [
    b'{"kind": "EventList", "apiVersion": {"a": 1}, "items": []}',
    b'{"kind": "EventList", "apiVersion": ["audit.k8s.io/v1"], "items": []}',
    b'{"kind": ["EventList"], "apiVersion": "audit.k8s.io/v1"}',
    b'{"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": {}}',
    b'{"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [1, null]}',
    b'{"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": "x"}',
    b'{"kind": 7, "apiVersion": "audit.k8s.io/v1"}',
    b"[[[[[[[[[[" * 1000 + b"]]]]]]]]]]" * 1000,
    b"1" + b"0" * 5000,
    b"null",
]


@pytest.mark.parametrize("body", ENVELOPES, ids=range(len(ENVELOPES)))
def test_wrong_json_types_in_the_envelope_are_a_4xx_with_a_reason(tmp_path: Path, body: bytes) -> None:
    with serving(tmp_path / "k.db") as (_collector, client):
        response = client.post("/audit/c1", headers=JSON_TYPE, content=body)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]


def test_a_refusal_quoting_a_megabyte_field_is_cut_in_the_answer_and_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    huge = "k" * 1_000_000
    body = json.dumps({"kind": huge, "apiVersion": "audit.k8s.io/v1"}).encode()
    with serving(tmp_path / "k.db") as (_collector, client), caplog.at_level(logging.WARNING):
        response = client.post("/audit/c1", headers=JSON_TYPE, content=body)

    assert response.status_code == 422
    reason = response.json()["error"]
    assert len(reason) < 300
    assert reason.endswith("more)") and "…(" in reason
    (record,) = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(record.getMessage()) < 400


def test_after_an_event_dated_9999_retain_removes_nothing_that_arrived_within_the_retention(
    tmp_path: Path,
) -> None:
    store = tmp_path / "k.db"
    log = tmp_path / "audit.log"
    events = [valid("a"), valid("b"), {**valid("future"), "requestReceivedTimestamp": "9999-12-31T23:59:59Z"}]
    events[2]["stageTimestamp"] = "9999-12-31T23:59:59.5Z"
    log.write_text("".join(json.dumps(event) + "\n" for event in events))

    def kelemetry(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([KELEMETRY, *argv], capture_output=True, text=True, check=False)

    replayed = kelemetry("replay", "--quiet", "--cluster", "c1", "--store", str(store), str(log))
    assert replayed.returncode == 0, replayed.stderr
    assert audit_ids(store) == Counter(["a", "b", "future"])
    for retention in ("7d", "1h"):
        retained = kelemetry("retain", "--store", str(store), "--retention", retention)
        assert retained.returncode == 0, retained.stderr
        assert retained.stdout.strip() == "nothing to remove"
    assert audit_ids(store) == Counter(["a", "b", "future"])


def _corrupt_span_pages(store: Path) -> None:
    """Overwrite the pages of the spans' id index with garbage (the schema, meta and table pages stay,
    so the collector opens the store and fails on its first write of a span)."""
    import sqlite3

    db = sqlite3.connect(store)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    pages = [page for (page,) in db.execute("SELECT pageno FROM dbstat WHERE name = 'spans_by_id'")]
    db.close()
    assert pages
    with store.open("r+b") as file:
        for page in pages:
            file.seek((page - 1) * page_size)
            file.write(b"\xa5" * page_size)


def test_on_a_corrupted_store_page_the_webhook_answers_503_and_readyz_says_why(tmp_path: Path) -> None:
    store = tmp_path / "k.db"
    with serving(store) as (collector, client):
        assert (
            client.post(
                "/audit/c1", headers=JSON_TYPE, content=json.dumps(event_list([valid("before")])).encode()
            ).status_code
            == 200
        )
        assert collector.ingestor.wait_idle(WAIT)
        ready = client.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready", "reasons": [], "quarantined": 0})
    _corrupt_span_pages(store)

    with serving(store) as (collector, client):
        accepted = client.post(
            "/audit/c1", headers=JSON_TYPE, content=json.dumps(event_list([valid("during")])).encode()
        )
        deadline = time.monotonic() + WAIT
        while collector.ingestor.store_failure is None and time.monotonic() < deadline:
            time.sleep(0.02)
        refused = client.post(
            "/audit/c1", headers=JSON_TYPE, content=json.dumps(event_list([valid("refused")])).encode()
        )
        readyz = client.get("/readyz")
        metrics = client.get("/metrics").text
        healthz = client.get("/healthz")
        waiting = collector.inbox.count()

    assert accepted.status_code == 200
    assert refused.status_code == 503, refused.text
    assert "malformed" in refused.json()["error"]
    assert refused.headers["retry-after"]
    assert readyz.status_code == 503
    (reason,) = readyz.json()["reasons"]
    assert reason.startswith("the store is failing") and "malformed" in reason
    assert "kelemetry_store_failing 1" in metrics
    assert healthz.status_code == 200, "alive, only not ready"
    assert waiting == 1, "the accepted batch waits in the inbox"
    assert str(tmp_path) not in refused.text + readyz.text, "no path of this machine in an answer"


def test_below_the_free_space_minimum_batches_are_answered_507_and_readyz_says_why(tmp_path: Path) -> None:
    store = tmp_path / "k.db"
    with serving(store, min_free_bytes=1 << 60) as (collector, client):
        refused = client.post(
            "/audit/c1", headers=JSON_TYPE, content=json.dumps(event_list([valid("x")])).encode()
        )
        readyz = client.get("/readyz")
        count = collector.inbox.count()
    assert refused.status_code == 507, refused.text
    assert "below the 1152921504606846976-byte minimum" in refused.json()["error"]
    assert readyz.status_code == 503
    assert "bytes free on the store's disk" in readyz.json()["reasons"][0]
    assert count == 0, "nothing acknowledged, nothing written"
    assert audit_ids(store) == Counter()


@pytest.mark.parametrize("kind", [{"a": 1}, ["Status"], 7, None])
def test_an_event_whose_body_names_an_odd_kind_is_stored_beside_the_valid_one(
    tmp_path: Path, kind: Any
) -> None:
    # Bodies are not checked at the edge; an odd kind inside one must not lose the event after the 200.
    store = tmp_path / "k.db"
    odd = audit_event(verb="patch", code=200, name="odd", uid="uid-odd", audit_id="odd")
    odd["responseObject"]["kind"] = kind
    odd["requestObject"] = {"kind": kind, "metadata": {"labels": {"a": "b"}}}
    with serving(store) as (collector, client):
        response = client.post(
            "/audit/c1", headers=JSON_TYPE, content=json.dumps(event_list([valid("first"), odd])).encode()
        )
        assert collector.ingestor.wait_idle(WAIT)
        failed = collector.ingestor.counters["events_failed"]

    assert response.status_code == 200, response.text
    assert failed == 0
    assert audit_ids(store) == Counter(["first", "odd"])


def _dated_in(seconds: int) -> dict[str, Any]:
    moment = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))
    event = valid(f"ahead-{seconds}")
    event["requestReceivedTimestamp"] = event["stageTimestamp"] = moment
    return event


def test_the_future_date_limit_is_the_max_clock_skew_setting(tmp_path: Path) -> None:
    store = tmp_path / "k.db"
    with serving(store, max_clock_skew_seconds=3600) as (collector, client):
        refused = client.post(
            "/audit/c1", headers=JSON_TYPE, content=json.dumps(event_list([_dated_in(7200)])).encode()
        )
        kept = client.post(
            "/audit/c1", headers=JSON_TYPE, content=json.dumps(event_list([_dated_in(1800)])).encode()
        )
        assert collector.ingestor.wait_idle(WAIT)

    assert refused.status_code == 422, refused.text
    assert "is more than 1h ahead of this collector's clock (--max-clock-skew)" in refused.json()["error"]
    assert kept.status_code == 200, kept.text
    assert audit_ids(store) == Counter({"ahead-1800": 1})


def test_serve_documents_max_clock_skew_and_refuses_an_unreadable_one(tmp_path: Path) -> None:
    shown = subprocess.run([KELEMETRY, "serve", "--help"], capture_output=True, text=True, check=False)
    assert shown.returncode == 0
    assert "--max-clock-skew DURATION" in shown.stdout
    assert "default 24h" in " ".join(shown.stdout.split())

    bad = subprocess.run(
        [KELEMETRY, "serve", "--store", str(tmp_path / "k.db"), "--max-clock-skew", "soon"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "kelemetry: error: invalid --max-clock-skew 'soon': use a number and a unit, e.g. 30m, 2h, 7d"
    )
