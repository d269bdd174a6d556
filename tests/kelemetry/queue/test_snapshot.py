"""A snapshot taken mid-stream and restored elsewhere goes on exactly as the uninterrupted run."""

from __future__ import annotations

import pickle
import zlib
from pathlib import Path

import pytest

from kelemetry import errors
from kelemetry.kube.kinds import KindResolver
from kelemetry.pipeline import build
from kelemetry.queue import snapshot
from kelemetry.settings import TraceSettings
from kelemetry.store.sqlite import SpanStore
from tests.kelemetry.queue.workerkit import sample_events


def test_restored_state_gives_the_same_spans_and_diffs_as_the_uninterrupted_run(tmp_path: Path) -> None:
    events = sample_events()
    half = len(events) // 2

    straight = SpanStore(tmp_path / "straight.db")
    pipeline = build(straight, TraceSettings(), KindResolver())
    pipeline.process_audit(events[:half], "default")
    pipeline.process_audit(events[half:], "default")

    first = SpanStore(tmp_path / "first.db")
    before = build(first, TraceSettings(), KindResolver())
    before.process_audit(events[:half], "default")
    data = snapshot.capture(first, before, 42, 7, ((40, 9), (42, first.last_seq)))
    first_seq = first.last_seq
    first.close()

    restored = snapshot.restore(data, tmp_path / "second.db")
    assert (restored.seq, restored.cursor, restored.pending) == (42, 7, ((40, 9), (42, first_seq)))
    second = SpanStore(tmp_path / "second.db")
    restored_seq = second.last_seq
    after = build(second, TraceSettings(), KindResolver())
    with pytest.raises(ValueError):
        snapshot.apply(after, restored.memory)  # built without the snapshot's resolver
    after = build(second, TraceSettings(), restored.memory.resolver)
    snapshot.apply(after, restored.memory)
    after.process_audit(events[half:], "default")

    assert second.digest_rows() == straight.digest_rows()
    assert second.last_seq == straight.last_seq
    # The writes after the restore still carry their diff: the versions before them came along.
    written_after = [record for _seq, record in second.spans_after(restored_seq, 100_000)]
    assert any(log.kind == "diff" for record in written_after for log in record.logs)


def test_an_unreadable_snapshot_is_a_queue_error(tmp_path: Path) -> None:
    with pytest.raises(errors.QueueError, match="unreadable"):
        snapshot.restore(b"not a snapshot", tmp_path / "x.db")


def _payload(data: bytes, **changes: object) -> bytes:
    payload = pickle.loads(zlib.decompress(data))
    payload.update(changes)
    for key in [key for key, value in changes.items() if value is None]:
        del payload[key]
    return zlib.compress(pickle.dumps(payload))


def test_a_format_1_snapshot_reads_as_everything_exported_and_a_newer_format_is_refused(
    tmp_path: Path,
) -> None:
    store = SpanStore(tmp_path / "first.db")
    pipeline = build(store, TraceSettings(), KindResolver())
    pipeline.process_audit(sample_events()[:20], "default")
    data = snapshot.capture(store, pipeline, 9, 3, ((9, store.last_seq),))
    written = store.last_seq
    store.close()

    # Format 1 was only taken once everything was exported, and carried no export position.
    old = snapshot.restore(_payload(data, format=1, cursor=None, pending=None), tmp_path / "old.db")
    assert (old.seq, old.cursor, old.pending) == (9, None, ())
    reopened = SpanStore(tmp_path / "old.db")
    assert reopened.last_seq == written
    reopened.close()

    with pytest.raises(snapshot.UnknownFormat, match="format 3"):
        snapshot.restore(_payload(data, format=3), tmp_path / "new.db")
    assert not (tmp_path / "new.db").exists()
