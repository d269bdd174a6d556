"""A snapshot taken mid-stream and restored elsewhere goes on exactly as the uninterrupted run."""

from __future__ import annotations

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
    data = snapshot.capture(first, before, 42)
    first.close()

    restored = snapshot.restore(data, tmp_path / "second.db")
    assert restored.seq == 42
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
