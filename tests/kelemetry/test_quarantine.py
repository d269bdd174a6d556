"""`kelemetry quarantine` (kelemetry.cli) over an inbox the real ingest side filled, and the
quarantined count of a running collector (/readyz, /api/kelemetry/status, /metrics).

Covers: the listing (time, cluster, source, audit id, object, size, reason) with counts by reason,
as text and JSON, cut by --limit; --retry after the fix storing the input and releasing it, and
keeping what fails again with its new reason (exit 1); --purge of everything or of what was
quarantined --before a time, saying how many; one-line errors for a missing store, --before without
--purge, --purge with --retry, a bad --limit or time; a store without an inbox has nothing
quarantined; /readyz stays ready with a quarantined input and says how many, as the status answer
and a gauge at /metrics do.
"""

from __future__ import annotations

import json
import sqlite3
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kelemetry import cli
from kelemetry import pipeline as pipelines
from kelemetry.app import Collector, create_app
from kelemetry.ingest import Ingestor
from kelemetry.model import tags
from kelemetry.settings import ServeSettings, StoreSettings
from kelemetry.store.inbox import Inbox
from kelemetry.store.sqlite import SpanStore, StoreReader
from tests.factories import audit_event, event_list, new_pipeline, pipeline_with_a_broken_linker

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

WAIT = 10.0
JSON_TYPE = {"content-type": "application/json"}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def ingest(
    store_path: Path, events: list[dict[str, Any]], pipeline_of: Callable[[SpanStore], pipelines.Pipeline]
) -> None:
    """Send ``events`` through the collector's ingest side, as the webhook would, and stop."""
    store = SpanStore(store_path)
    inbox = Inbox(store_path.with_name(store_path.name + ".inbox"))
    ingestor = Ingestor(inbox, pipeline_of(store), max_backlog_bytes=64 << 20)
    ingestor.start()
    try:
        ingestor.accept("c1", json.dumps(event_list(events)).encode())
        assert ingestor.wait_idle(WAIT)
    finally:
        ingestor.stop(WAIT)
        inbox.close()
        store.close()


def audit_ids(store_path: Path) -> set[str]:
    reader = StoreReader(store_path)
    try:
        return {str(span.tags[tags.AUDIT_ID]) for span in reader.all_spans() if tags.AUDIT_ID in span.tags}
    finally:
        reader.close()


POISON = audit_event(name="poison", uid="uid-poison", audit_id="poison-1", verb="update", code=200)
GOOD = audit_event(name="web-0", uid="uid-web-0", audit_id="good-1")


@pytest.fixture
def quarantined_store(tmp_path: Path) -> Path:
    """A store whose pipeline had a bug (a linker raising on objects named poison)."""
    store = tmp_path / "k.db"
    ingest(store, [GOOD, POISON], pipeline_with_a_broken_linker)
    return store


def test_the_listing_shows_each_quarantined_input_and_counts_by_reason(
    quarantined_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "quarantine", "--store", str(quarantined_store))

    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("1 quarantined input (") and lines[0].endswith("bytes)")
    assert lines[1:3] == ["by reason:", "  1  pipeline failed at linking"]
    header, row = lines[4], lines[5]
    assert header.split() == ["QUARANTINED", "CLUSTER", "SOURCE", "AUDIT", "ID", "OBJECT", "SIZE", "REASON"]
    assert row.split()[1:6] == ["c1", "audit", "poison-1", "pods", "default/poison"]
    assert row.endswith("pipeline failed at linking: RuntimeError: linker broke on poison")
    assert "retry" in lines[-1] and "purge" in lines[-1]

    code, out, _ = run(capsys, "quarantine", "--store", str(quarantined_store), "--format", "json")
    answer = json.loads(out)
    assert code == 0
    assert (answer["total"], answer["by_reason"]) == (1, {"pipeline failed at linking": 1})
    (item,) = answer["items"]
    assert {k: item[k] for k in ("cluster", "source", "audit_id", "object")} == {
        "cluster": "c1",
        "source": "audit",
        "audit_id": "poison-1",
        "object": "pods default/poison",
    }
    assert item["size"] == answer["bytes"] > 0
    assert item["reason"] == "pipeline failed at linking: RuntimeError: linker broke on poison"
    assert item["quarantined"].endswith("Z")


def test_limit_cuts_the_listing_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "k.db"
    ingest(store, [GOOD], new_pipeline)
    inbox = Inbox(tmp_path / "k.db.inbox")
    for i in range(3):
        inbox.quarantine("c2", b"{not json", f"inbox batch unreadable: {i}", 1_000_000 * i)
    inbox.close()

    code, out, _ = run(capsys, "quarantine", "--store", str(store), "--limit", "2")

    assert code == 0
    assert out.splitlines()[0].startswith("3 quarantined inputs (")
    assert "  3  inbox batch unreadable" in out
    assert len([line for line in out.splitlines() if " c2 " in line]) == 2
    assert "showing the first 2 of 3 (--limit)" in out


def test_retry_after_the_fix_stores_the_input_and_releases_it(
    quarantined_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert audit_ids(quarantined_store) == {"good-1"}

    code, out, err = run(capsys, "quarantine", "--store", str(quarantined_store), "--retry")

    assert (code, err) == (0, "")
    assert out.strip() == "retried 1 quarantined input: 1 stored, 0 still quarantined"
    assert audit_ids(quarantined_store) == {"good-1", "poison-1"}
    code, out, _ = run(capsys, "quarantine", "--store", str(quarantined_store))
    assert (code, out.strip()) == (0, "nothing quarantined")


def test_a_retry_that_fails_again_keeps_the_input_with_its_new_reason(
    quarantined_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The cause is still there: the store now refuses the object.
    db = sqlite3.connect(quarantined_store, isolation_level=None)
    db.execute(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON objects WHEN NEW.name = 'poison' "
        "BEGIN SELECT RAISE(ABORT, 'poison refused'); END"
    )
    db.close()

    code, out, _ = run(capsys, "quarantine", "--store", str(quarantined_store), "--retry")

    assert code == 1
    lines = out.splitlines()
    assert lines[0] == "retried 1 quarantined input: 0 stored, 1 still quarantined"
    assert lines[1].endswith("store refused: poison refused")
    _, listing, _ = run(capsys, "quarantine", "--store", str(quarantined_store), "--format", "json")
    assert json.loads(listing)["by_reason"] == {"store refused": 1}


def test_purge_removes_all_or_what_was_quarantined_before_a_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "k.db"
    ingest(store, [GOOD], new_pipeline)
    inbox = Inbox(tmp_path / "k.db.inbox")
    # 2024-05-01T00:00:00Z, 2024-06-01T00:00:00Z, 2024-07-01T00:00:00Z
    for at_us in (1714521600_000000, 1717200000_000000, 1719792000_000000):
        inbox.quarantine("c1", b"{}", "store refused: no", at_us)
    inbox.close()

    code, out, _ = run(capsys, "quarantine", "--store", str(store), "--purge", "--before", "2024-06-15")
    assert (code, out.strip()) == (0, "purged 2 quarantined inputs from before 2024-06-15T00:00:00Z; 1 left")

    code, out, _ = run(capsys, "quarantine", "--store", str(store), "--purge")
    assert (code, out.strip()) == (0, "purged 1 quarantined input; 0 left")
    assert audit_ids(store) == {"good-1"}, "a purge touches nothing but the quarantine"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--before", "2024-06-01"], "--before only goes with --purge"),
        (["--purge", "--retry"], "--purge and --retry cannot be combined"),
        (["--limit", "0"], "--limit must be at least 1"),
        (["--purge", "--before", "someday"], "invalid --before 'someday'"),
    ],
)
def test_usage_errors_are_one_line(
    quarantined_store: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    code, out, err = run(capsys, "quarantine", "--store", str(quarantined_store), *extra)

    assert (code, out) == (2, "")
    assert err.startswith(f"kelemetry: error: {message}") and err.count("\n") == 1


def test_a_missing_store_is_an_error_and_a_store_without_inbox_has_nothing_quarantined(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "quarantine", "--store", str(tmp_path / "none.db"))
    assert code == 1 and err.startswith("kelemetry: error: no store at ")
    assert not (tmp_path / "none.db.inbox").exists()

    store = tmp_path / "k.db"
    SpanStore(store).close()
    code, out, _ = run(capsys, "quarantine", "--store", str(store), "--format", "json")
    assert code == 0
    assert json.loads(out) == {"total": 0, "bytes": 0, "by_reason": {}, "items": []}
    assert not (tmp_path / "k.db.inbox").exists(), "listing creates no inbox"


def test_a_running_collector_shows_its_quarantined_count_without_failing_readiness(tmp_path: Path) -> None:
    store = tmp_path / "k.db"
    collector = Collector(ServeSettings(store=StoreSettings(path=str(store))))
    db = sqlite3.connect(store, isolation_level=None)
    db.execute(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON objects WHEN NEW.name = 'poison' "
        "BEGIN SELECT RAISE(ABORT, 'poison refused'); END"
    )
    db.close()
    body = json.dumps(event_list([GOOD, POISON])).encode()
    with TestClient(create_app(collector), raise_server_exceptions=False) as client:
        accepted = client.post("/audit/c1", headers=JSON_TYPE, content=body)
        assert collector.ingestor.wait_idle(WAIT)
        ready = client.get("/readyz")
        status = client.get("/api/kelemetry/status")
        metrics = client.get("/metrics")

    assert accepted.status_code == 200
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "reasons": [], "quarantined": 1}
    assert status.json()["quarantined"] == {
        "inputs": 1,
        "see": "kelemetry quarantine --store <store>",
    }
    assert "kelemetry_quarantined_inputs 1.0\n" in metrics.text
    assert "kelemetry_ingest_events_quarantined_total 1.0\n" in metrics.text
