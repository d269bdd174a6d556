"""Gaps recorded by the collector (kelemetry.ingest, kelemetry.app) with the real inbox, pipeline and
SQLite store: a restart after a heartbeat leaves a gap from the heartbeat to the start, on every
cluster the last run received for; refused webhook batches (429 over the backlog, 507 when the disk
is short of space) leave a "possible loss" gap from the first refusal to the next acceptance, or to
the last refusal when the collector stops first; heartbeats are written while idle; the collector's
metrics count gaps and their seconds per cluster and reason. The watch's own gaps are in
tests/kelemetry/kube/test_watch.py, how views show them in tests/frontend/test_gapmarks.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kelemetry import errors
from kelemetry.app import Collector
from kelemetry.ingest import Ingestor
from kelemetry.model import tags
from kelemetry.model.gaps import GAP_GROUP, GAP_RESOURCE
from kelemetry.model.spans import SpanRecord
from kelemetry.settings import ServeSettings, StoreSettings
from kelemetry.store.inbox import Inbox
from kelemetry.store.sqlite import SpanStore, StoreReader
from tests.factories import audit_event, event_list, new_pipeline

CLUSTER = "c1"
WAIT = 10.0
MINUTE_US = 60 * 1_000_000


def body(name: str) -> bytes:
    return json.dumps(event_list([audit_event(name=name, uid=f"uid-{name}", audit_id=name)])).encode()


@dataclass
class Rig:
    store: SpanStore
    inbox: Inbox
    ingestor: Ingestor

    def close(self) -> None:
        self.ingestor.stop(timeout=WAIT)
        self.inbox.close()
        self.store.close()


@pytest.fixture
def rigs(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(**options: Any) -> Rig:
        store = SpanStore(tmp_path / "k.db")
        inbox = Inbox(tmp_path / "k.db.inbox")
        options.setdefault("max_backlog_bytes", 64 << 20)
        ingestor = Ingestor(inbox, new_pipeline(store), retry_first_s=0.02, **options)
        rig = Rig(store, inbox, ingestor)
        made.append(rig)
        return rig

    yield make
    for rig in reversed(made):
        rig.close()


def gaps_of(path: Path, cluster: str = CLUSTER) -> list[SpanRecord]:
    reader = StoreReader(path)
    try:
        return reader.gap_spans([cluster], 0, time.time_ns() // 1000 + MINUTE_US)
    finally:
        reader.close()


def test_a_restart_after_a_heartbeat_leaves_a_gap_from_the_heartbeat_to_the_start(
    rigs: Callable[..., Rig], tmp_path: Path
) -> None:
    rig = rigs()
    beat = time.time_ns() // 1000 - 5 * MINUTE_US
    rig.store.beat([CLUSTER, "c2"], beat)
    before = time.time_ns() // 1000
    rig.ingestor.start()
    assert rig.ingestor.wait_idle(WAIT)
    after = time.time_ns() // 1000

    for cluster in (CLUSTER, "c2"):
        [gap] = gaps_of(tmp_path / "k.db", cluster)
        assert gap.source.value == "gap"
        assert gap.key.cluster == cluster and (gap.key.group, gap.key.resource) == (GAP_GROUP, GAP_RESOURCE)
        assert gap.start_us == beat and before <= gap.end_us <= after
        assert gap.tags[tags.GAP_REASON] == "restart"
        [log] = gap.logs
        assert log.message.startswith("data may be missing between ")
        assert log.message.endswith("UTC: collector restarted")
    assert rig.ingestor.gap_counts[(CLUSTER, "restart")] == 1
    assert rig.ingestor.gap_seconds[(CLUSTER, "restart")] == pytest.approx(300, abs=5)
    # The start noted the collector alive again: a crash now would count from here, not from before.
    assert rig.store.heartbeats()[CLUSTER] >= before


def test_a_first_start_has_no_gap_and_a_stop_then_start_has_one_from_the_stop(
    rigs: Callable[..., Rig], tmp_path: Path
) -> None:
    first = rigs(clusters=[CLUSTER])
    first.ingestor.start()
    first.ingestor.accept("c9", body("a"))
    assert first.ingestor.wait_idle(WAIT)
    assert gaps_of(tmp_path / "k.db") == []
    first.close()
    stopped = time.time_ns() // 1000
    time.sleep(0.2)

    second = rigs()
    second.ingestor.start()
    assert second.ingestor.wait_idle(WAIT)
    # The configured cluster and the one that only sent audit both get a gap, from the stop's last note.
    for cluster in (CLUSTER, "c9"):
        [gap] = gaps_of(tmp_path / "k.db", cluster)
        assert stopped - 1_000_000 <= gap.start_us <= stopped
        assert gap.end_us - gap.start_us >= 200_000


def test_heartbeats_are_written_while_idle(rigs: Callable[..., Rig]) -> None:
    rig = rigs(clusters=[CLUSTER], heartbeat_s=0.1)
    rig.ingestor.start()
    first = rig.store.heartbeats()[CLUSTER]
    deadline = time.monotonic() + WAIT
    while rig.store.heartbeats()[CLUSTER] == first:
        assert time.monotonic() < deadline, "no heartbeat written while idle"
        time.sleep(0.1)


def test_429s_leave_a_possible_loss_gap_from_the_first_refusal_to_the_next_acceptance(
    rigs: Callable[..., Rig], tmp_path: Path
) -> None:
    rig = rigs(max_backlog_bytes=1)
    rig.ingestor.accept(CLUSTER, body("first"))  # not started: it stays in the backlog
    refused_at = time.time_ns() // 1000
    for name in ("second", "third"):
        with pytest.raises(errors.BacklogFull):
            rig.ingestor.accept(CLUSTER, body(name))
    assert gaps_of(tmp_path / "k.db") == []
    rig.ingestor.start()
    assert rig.ingestor.wait_idle(WAIT)
    rig.ingestor.accept(CLUSTER, body("second"))  # the apiserver's retry gets through
    accepted_at = time.time_ns() // 1000
    assert rig.ingestor.wait_idle(WAIT)

    [gap] = gaps_of(tmp_path / "k.db")
    assert gap.tags[tags.GAP_REASON] == "refused"
    assert gap.tags[tags.GAP_DETAIL] == "2 batches refused (429)"
    assert refused_at <= gap.start_us and gap.end_us <= accepted_at
    assert "possible loss: the webhook refused audit batches (2 batches refused (429))" in gap.logs[0].message
    assert rig.ingestor.gap_counts[(CLUSTER, "refused")] == 1


def test_refusals_still_open_at_stop_are_recorded_up_to_the_last_one(
    rigs: Callable[..., Rig], tmp_path: Path
) -> None:
    rig = rigs(min_free_bytes=1 << 62)  # no disk has this much free: every batch is refused with 507
    rig.ingestor.start()
    for name in ("a", "b"):
        with pytest.raises(errors.StoreUnavailable):
            rig.ingestor.accept(CLUSTER, body(name))
    last = time.time_ns() // 1000
    rig.ingestor.stop(timeout=WAIT)

    [gap] = gaps_of(tmp_path / "k.db")
    assert gap.tags[tags.GAP_DETAIL] == "2 batches refused (507)"
    assert gap.end_us <= last
    assert gap.end_us > gap.start_us


def test_the_collector_counts_gaps_per_cluster_and_reason_in_its_metrics(tmp_path: Path) -> None:
    settings = ServeSettings(store=StoreSettings(path=str(tmp_path / "k.db")))
    first = Collector(settings)
    first.store.beat(["c1"], time.time_ns() // 1000 - 90 * 1_000_000)
    first.stop()
    second = Collector(settings)
    second.start()
    try:
        assert second.ingestor.wait_idle(WAIT)
        values = second.metrics()
        assert values['kelemetry_gaps_total{cluster="c1",reason="restart"}'] == 1
        assert values['kelemetry_gap_seconds_total{cluster="c1",reason="restart"}'] == pytest.approx(
            90, abs=5
        )
    finally:
        second.stop()
