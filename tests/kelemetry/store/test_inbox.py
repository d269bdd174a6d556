"""The webhook inbox (kelemetry.store.inbox): accepted batches kept on disk until processed.

Covers: put/pending/delete in arrival order with bodies kept byte for byte, count, persistence
across reopen and across SIGKILL right after put(), ids never reused, deletion while pending() is
being iterated, and the StoreError of a file that cannot be an inbox.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from kelemetry import errors
from kelemetry.store.inbox import Inbox

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
    from kelemetry.store.inbox import Inbox

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
