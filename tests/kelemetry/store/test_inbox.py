"""The webhook inbox (kelemetry.store.inbox): accepted batches kept on disk until processed.

Covers: put/pending/delete in arrival order with bodies kept byte for byte, count, persistence
across reopen and across SIGKILL right after put(), ids never reused, deletion while pending() is
being iterated, and the StoreError of a file that cannot be an inbox. The quarantine: rows kept with
cluster, source, time, reason and body in order (a limit), their count and bytes, released by id,
kept again with a new reason, purged all or before a time (saying how many), and an inbox written
before rows had a source read as audit.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from kelemetry import errors
from kelemetry.store.inbox import Inbox, Quarantined

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def inbox(tmp_path: Path) -> Iterator[Inbox]:
    opened = Inbox(tmp_path / "inbox.db")
    yield opened
    opened.close()


def test_an_empty_inbox(inbox: Inbox) -> None:
    assert inbox.count() == 0
    assert list(inbox.pending()) == []


def test_put_then_pending_in_arrival_order_with_exact_bodies(inbox: Inbox) -> None:
    bodies = [(b"c1", b'{"kind":"EventList"}'), (b"c2", b"\x00\xff binary \n"), (b"c1", b"")]
    batch_ids = [inbox.put(cluster.decode(), body, 1_000 + i) for i, (cluster, body) in enumerate(bodies)]

    assert batch_ids == sorted(batch_ids) and len(set(batch_ids)) == 3
    assert all(batch_id > 0 for batch_id in batch_ids)
    assert inbox.count() == 3
    assert list(inbox.pending()) == [
        (batch_id, cluster.decode(), body)
        for batch_id, (cluster, body) in zip(batch_ids, bodies, strict=True)
    ]
    assert all(isinstance(body, bytes) for _id, _cluster, body in inbox.pending())


def test_delete_removes_one_batch_and_keeps_the_order_of_the_rest(inbox: Inbox) -> None:
    first, second, third = (inbox.put("c", f"body-{i}".encode(), i) for i in range(3))
    inbox.delete(second)
    assert inbox.count() == 2
    assert [batch_id for batch_id, _cluster, _body in inbox.pending()] == [first, third]
    # Deleting twice (a retry after a crash) is harmless.
    inbox.delete(second)
    inbox.delete(first)
    inbox.delete(third)
    assert inbox.count() == 0 and list(inbox.pending()) == []


def test_a_batch_deleted_while_pending_is_iterated_is_not_yielded(inbox: Inbox) -> None:
    first, second, third = (inbox.put("c", f"body-{i}".encode(), i) for i in range(3))
    pending = inbox.pending()
    assert next(pending)[0] == first
    inbox.delete(second)
    late = inbox.put("c", b"late", 9)
    # The ids were listed when iteration began: the deleted one is skipped, the late one waits.
    assert [batch_id for batch_id, _cluster, _body in pending] == [third]
    assert [batch_id for batch_id, _cluster, _body in inbox.pending()] == [first, third, late]


def test_batches_persist_across_reopen_and_ids_are_never_reused(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "inbox.db"
    first = Inbox(path)
    kept = first.put("c1", b"kept", 1)
    done = first.put("c2", b"done", 2)
    first.delete(done)
    first.close()

    second = Inbox(path)
    try:
        assert second.count() == 1
        assert list(second.pending()) == [(kept, "c1", b"kept")]
        # A reused id could make a delete of the old batch remove a new one.
        assert second.put("c1", b"new", 3) > done
    finally:
        second.close()


_KILLED_WEBHOOK = textwrap.dedent(
    """
    import os, signal, sys
    from kelemetry.store.inbox import Inbox, Quarantined

    inbox = Inbox(sys.argv[1])
    for i in range(20):
        inbox.put("c1", b"batch-%d" % i, i)
    print("acknowledged", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_put_batches_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "inbox.db"
    result = subprocess.run(
        [sys.executable, "-c", _KILLED_WEBHOOK, str(path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert result.stdout.strip() == "acknowledged"
    inbox = Inbox(path)
    try:
        assert inbox.count() == 20
        assert [body for _id, _cluster, body in inbox.pending()] == [b"batch-%d" % i for i in range(20)]
    finally:
        inbox.close()


def test_a_file_that_is_not_sqlite_cannot_be_an_inbox(tmp_path: Path) -> None:
    path = tmp_path / "inbox.db"
    path.write_text("not a database\n" * 200)
    with pytest.raises(errors.StoreError, match=r"cannot open inbox .*inbox\.db"):
        Inbox(path)


def test_put_on_a_closed_inbox_is_a_store_error(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox.db")
    inbox.close()
    with pytest.raises(errors.StoreError, match="cannot write inbox"):
        inbox.put("c1", b"body", 1)


def test_quarantined_rows_are_listed_oldest_first_with_everything_kept(inbox: Inbox) -> None:
    first = inbox.quarantine("c1", b'{"kind":"EventList"}', "store refused: no", 1_000)
    second = inbox.quarantine("c2", b'{"kind":"Event"}', "pipeline failed at linking: boom", 2_000, "event")
    third = inbox.quarantine("c1", b"{}", "store refused: no", 3_000, "watch")

    assert inbox.quarantined() == [
        Quarantined(first, "c1", "audit", 1_000, "store refused: no", b'{"kind":"EventList"}'),
        Quarantined(second, "c2", "event", 2_000, "pipeline failed at linking: boom", b'{"kind":"Event"}'),
        Quarantined(third, "c1", "watch", 3_000, "store refused: no", b"{}"),
    ]
    assert [row.row_id for row in inbox.quarantined(limit=2)] == [first, second]
    assert inbox.quarantine_summary() == (3, 20 + 16 + 2)
    assert sorted(inbox.quarantine_reasons()) == [
        "pipeline failed at linking: boom",
        "store refused: no",
        "store refused: no",
    ]
    # Quarantined input is not a batch waiting to be processed.
    assert inbox.count() == 0


def test_quarantined_rows_are_released_kept_again_and_purged(inbox: Inbox) -> None:
    rows = [inbox.quarantine("c", f"body-{i}".encode(), "old reason", 1_000 * i) for i in range(5)]

    assert inbox.release([rows[0], 999]) == 1
    inbox.requarantine(rows[1], "new reason", 9_000)
    assert [(row.reason, row.at_us) for row in inbox.quarantined(limit=1)] == [("new reason", 9_000)]
    # Rows 2, 3, 4 were quarantined at 2000, 3000, 4000; row 1 again at 9000.
    assert inbox.purge(before_us=3_500) == 2
    assert [row.row_id for row in inbox.quarantined()] == [rows[1], rows[4]]
    assert inbox.purge() == 2
    assert inbox.quarantined() == [] and inbox.quarantine_summary() == (0, 0)


def test_an_inbox_whose_quarantine_predates_sources_reads_its_rows_as_audit(tmp_path: Path) -> None:
    path = tmp_path / "inbox.db"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE quarantine (id INTEGER PRIMARY KEY AUTOINCREMENT, cluster TEXT NOT NULL, "
        "quarantined_us INTEGER NOT NULL, reason TEXT NOT NULL, body BLOB NOT NULL)"
    )
    db.execute(
        "INSERT INTO quarantine (cluster, quarantined_us, reason, body) VALUES ('c', 5, 'why', x'7b7d')"
    )
    db.commit()
    db.close()

    inbox = Inbox(path)
    try:
        assert inbox.quarantined() == [Quarantined(1, "c", "audit", 5, "why", b"{}")]
    finally:
        inbox.close()
