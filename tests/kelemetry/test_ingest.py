"""Ingestion (kelemetry.ingest.Ingestor) with its real inbox, pipeline and SQLite store.

Covers: accept() validating the whole body before anything is written, making it durable in the
inbox and queueing it; the worker writing the spans and clearing the inbox; the backlog limit
(BacklogFull once full, nothing written for the refused batch, room again once processed, one
oversized batch still admitted into an empty backlog); stop() draining the queue; recovery of the
batches a previous run left in the inbox, exactly once; the same body twice in the inbox; an
unreadable inbox batch quarantined with its reason at start; a batch whose store write fails
retried in the same run until the store takes it (meanwhile new batches are refused, the backlog
counts it, later batches wait and then form whole traces; a stop leaves it in the inbox for the next
run); a batch whose write fails whole for one event stores the others and quarantines that one; the
write-ahead logs checkpointed to zero bytes when idle. No silent drop after the 200: an event a
pipeline stage raises on (a linker plugged into the pipeline that breaks on one object) is
quarantined as received with the stage in its reason, and stored by a retry once the pipeline is
fixed; Kubernetes Events and watched object versions the store refuses are quarantined (watched
bodies redacted as stored), and a retry while the cause remains keeps them with the new reason.
"""

from __future__ import annotations

import json
import logging
import re
import resource
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kelemetry import errors
from kelemetry import pipeline as pipelines
from kelemetry.ingest import Ingestor
from kelemetry.model import tags
from kelemetry.model.events import TraceSource
from kelemetry.store.inbox import Inbox
from kelemetry.store.sqlite import SpanStore, StoreReader
from tests.factories import (
    audit_event,
    event_list,
    hierarchy_events,
    kube_event,
    new_pipeline,
    pipeline_redacting_configmaps,
    pipeline_with_a_broken_linker,
)

CLUSTER = "c1"
WAIT = 10.0


def body_of(events: list[dict[str, Any]]) -> bytes:
    return json.dumps(event_list(events)).encode()


def pod_events(prefix: str, count: int) -> list[dict[str, Any]]:
    return [
        audit_event(name=f"{prefix}-{i}", uid=f"uid-{prefix}-{i}", audit_id=f"{prefix}-{i}")
        for i in range(count)
    ]


def ids_of(events: list[dict[str, Any]]) -> list[str]:
    return [event["auditID"] for event in events]


@dataclass
class Rig:
    """One run of the ingest side: store, inbox, pipeline and ingestor as `serve` wires them."""

    store_path: Path
    store: SpanStore
    inbox: Inbox
    ingestor: Ingestor

    def close(self) -> None:
        self.ingestor.stop(timeout=WAIT)
        self.inbox.close()
        self.store.close()


@pytest.fixture
def rigs(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    """Builds runs over the same files (a second one is a restart); closes them all at teardown."""
    made: list[Rig] = []

    def make(
        max_backlog_bytes: int = 64 << 20,
        pipeline_of: Callable[[SpanStore], pipelines.Pipeline] = new_pipeline,
    ) -> Rig:
        store_path = tmp_path / "k.db"
        store = SpanStore(store_path)
        inbox = Inbox(tmp_path / "k.db.inbox")
        pipeline = pipeline_of(store)
        ingestor = Ingestor(inbox, pipeline, max_backlog_bytes=max_backlog_bytes, retry_first_s=0.02)
        rig = Rig(store_path, store, inbox, ingestor)
        made.append(rig)
        return rig

    yield make
    for rig in reversed(made):
        rig.close()


def audit_ids(store_path: Path) -> Counter[str]:
    """How many audit spans the store holds per audit ID, read through a separate connection."""
    reader = StoreReader(store_path)
    try:
        return Counter(
            str(span.tags[tags.AUDIT_ID]) for span in reader.all_spans() if span.source is TraceSource.AUDIT
        )
    finally:
        reader.close()


def test_accept_makes_the_batch_durable_and_the_worker_writes_it_and_clears_the_inbox(
    rigs: Callable[..., Rig],
) -> None:
    rig = rigs()
    rig.ingestor.start()
    events = pod_events("web", 3)

    assert rig.ingestor.accept(CLUSTER, body_of(events)) == 3
    assert rig.ingestor.wait_idle(WAIT)

    assert audit_ids(rig.store_path) == Counter(ids_of(events))
    assert {span.key.cluster for span in rig.store.all_spans()} == {CLUSTER}
    assert rig.inbox.count() == 0
    assert rig.ingestor.backlog_bytes == 0
    counters = rig.ingestor.counters
    assert counters["batches_accepted"] == 1
    assert counters["events_received"] == counters["events_kept"] == 3
    assert counters["spans_written"] == 6  # an object span and an audit span per pod
    assert counters["batches_failed"] == 0
    assert rig.ingestor.last_processed_us > 0


def test_an_accepted_batch_is_in_the_inbox_before_any_processing(rigs: Callable[..., Rig]) -> None:
    rig = rigs()
    body = body_of(pod_events("web", 2))

    assert rig.ingestor.accept(CLUSTER, body) == 2

    ((_batch_id, cluster, kept),) = list(rig.inbox.pending())
    assert (cluster, kept) == (CLUSTER, body)
    assert rig.ingestor.backlog_bytes == len(body)
    assert not rig.ingestor.wait_idle(0.05)
    assert audit_ids(rig.store_path) == Counter()


@pytest.mark.parametrize(
    ("body", "error", "reason"),
    [
        (b'{"kind": "EventList", "items": [', errors.MalformedBody, "not valid JSON"),
        (
            b'{"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "note": "\xff\xfe", "items": []}',
            errors.MalformedBody,
            "UTF-8",
        ),
        (body_of([audit_event()]).replace(b"kubectl/", b"kubectl/\xff"), errors.MalformedBody, "UTF-8"),
        (json.dumps({**event_list([]), "kind": "PodList"}).encode(), errors.WrongKind, "PodList"),
        (body_of([audit_event(api_version="audit.k8s.io/v2")]), errors.WrongKind, "items[0]"),
        (
            body_of([audit_event(audit_id="good-1"), {"kind": "Pod", "metadata": {}}, audit_event()]),
            errors.WrongKind,
            "items[1]",
        ),
        (
            body_of([audit_event(audit_id="good-1"), {**audit_event(), "user": "alice"}]),
            errors.WrongKind,
            "items[1].user: Expected object | null, got str",
        ),
    ],
    ids=[
        "not-json",
        "not-utf8",
        "not-utf8-in-a-field",
        "wrong-kind",
        "item-wrong-version",
        "one-bad-item-among-good",
        "a-field-of-the-wrong-type",
    ],
)
def test_an_invalid_body_is_refused_whole_and_nothing_of_it_is_written(
    rigs: Callable[..., Rig], body: bytes, error: type[errors.InputError], reason: str
) -> None:
    rig = rigs()
    rig.ingestor.start()

    with pytest.raises(error, match=re.escape(reason)):
        rig.ingestor.accept(CLUSTER, body)

    assert rig.ingestor.wait_idle(WAIT)
    assert rig.inbox.count() == 0
    assert rig.ingestor.backlog_bytes == 0
    assert rig.ingestor.counters["batches_rejected"] == 1
    assert rig.ingestor.counters["batches_accepted"] == 0
    assert rig.store.all_spans() == []


def test_the_backlog_refuses_a_batch_once_full_and_takes_it_after_processing(
    rigs: Callable[..., Rig],
) -> None:
    batches = [pod_events(f"b{n}", 2) for n in range(3)]
    bodies = [body_of(events) for events in batches]
    # Room for the first two batches and half of the third.
    rig = rigs(max_backlog_bytes=len(bodies[0]) + len(bodies[1]) + len(bodies[2]) // 2)

    assert rig.ingestor.accept(CLUSTER, bodies[0]) == 2
    assert rig.ingestor.accept(CLUSTER, bodies[1]) == 2
    with pytest.raises(errors.BacklogFull, match="at its limit"):
        rig.ingestor.accept(CLUSTER, bodies[2])

    assert rig.inbox.count() == 2, "a refused batch is not written anywhere"
    assert rig.ingestor.backlog_bytes == len(bodies[0]) + len(bodies[1])
    assert rig.ingestor.counters["batches_throttled"] == 1
    assert rig.ingestor.counters["batches_accepted"] == 2

    rig.ingestor.start()
    assert rig.ingestor.wait_idle(WAIT)
    assert rig.ingestor.backlog_bytes == 0
    assert rig.ingestor.accept(CLUSTER, bodies[2]) == 2
    assert rig.ingestor.wait_idle(WAIT)

    assert audit_ids(rig.store_path) == Counter(ids_of(batches[0] + batches[1] + batches[2]))
    assert rig.inbox.count() == 0


def test_one_batch_larger_than_the_backlog_limit_is_admitted_into_an_empty_backlog(
    rigs: Callable[..., Rig],
) -> None:
    rig = rigs(max_backlog_bytes=10)
    big, next_one = body_of(pod_events("big", 3)), body_of(pod_events("next", 1))

    assert rig.ingestor.accept(CLUSTER, big) == 3
    with pytest.raises(errors.BacklogFull):
        rig.ingestor.accept(CLUSTER, next_one)

    rig.ingestor.start()
    assert rig.ingestor.wait_idle(WAIT)
    assert rig.ingestor.accept(CLUSTER, next_one) == 1
    assert rig.ingestor.wait_idle(WAIT)
    assert audit_ids(rig.store_path) == Counter(ids_of(pod_events("big", 3) + pod_events("next", 1)))


def test_batches_accepted_before_start_are_processed_once(rigs: Callable[..., Rig]) -> None:
    rig = rigs()
    first, second = pod_events("early", 2), pod_events("later", 1)
    rig.ingestor.accept(CLUSTER, body_of(first))
    rig.ingestor.accept(CLUSTER, body_of(second))

    rig.ingestor.start()
    assert rig.ingestor.wait_idle(WAIT)

    assert audit_ids(rig.store_path) == Counter(ids_of(first + second))
    # Each accepted batch is already queued; start() must not queue its inbox copy a second time.
    assert rig.ingestor.counters["events_kept"] == 3
    assert rig.ingestor.counters["batches_accepted"] == 2
    assert rig.ingestor.backlog_bytes == 0


def test_stop_processes_what_is_queued_before_returning(rigs: Callable[..., Rig]) -> None:
    rig = rigs()
    rig.ingestor.start()
    batches = [pod_events(f"q{n}", 2) for n in range(5)]
    for events in batches:
        rig.ingestor.accept(CLUSTER, body_of(events))

    rig.ingestor.stop(timeout=WAIT)

    assert audit_ids(rig.store_path) == Counter(ids_of([e for events in batches for e in events]))
    assert rig.inbox.count() == 0


def test_a_new_run_processes_what_the_previous_run_left_in_the_inbox_exactly_once(
    rigs: Callable[..., Rig], caplog: pytest.LogCaptureFixture
) -> None:
    first_run = rigs()
    batches = [pod_events("left-a", 2), pod_events("left-b", 3)]
    for events in batches:
        first_run.ingestor.accept(CLUSTER, body_of(events))
    first_run.close()  # the worker never ran: as if the process died right after answering 200
    assert audit_ids(first_run.store_path) == Counter()

    second_run = rigs()
    assert second_run.inbox.count() == 2
    with caplog.at_level(logging.INFO, logger="kelemetry.ingest"):
        second_run.ingestor.start()
        assert second_run.ingestor.wait_idle(WAIT)

    assert audit_ids(second_run.store_path) == Counter(ids_of(batches[0] + batches[1]))
    assert second_run.inbox.count() == 0
    assert second_run.ingestor.backlog_bytes == 0
    assert "recovered 2 unprocessed batches" in caplog.text


def test_the_same_body_twice_in_the_inbox_leaves_one_copy_of_each_span(rigs: Callable[..., Rig]) -> None:
    events = hierarchy_events()
    body = body_of(events)
    rig = rigs()
    # A crash after the store commit and before the inbox delete leaves a batch to be processed again.
    rig.inbox.put(CLUSTER, body, 1)
    rig.inbox.put(CLUSTER, body, 2)

    rig.ingestor.start()
    assert rig.ingestor.wait_idle(WAIT)

    assert audit_ids(rig.store_path) == Counter({"dep": 1, "rs": 1, "pod": 1})
    spans = rig.store.all_spans()
    assert len(spans) == len({span.span_id for span in spans}) == 6
    assert len({span.trace_id for span in spans}) == 1
    assert rig.inbox.count() == 0


def test_an_unreadable_inbox_batch_is_quarantined_with_its_reason_and_the_rest_processed(
    rigs: Callable[..., Rig], caplog: pytest.LogCaptureFixture
) -> None:
    rig = rigs()
    good = pod_events("good", 2)
    rig.inbox.put(CLUSTER, b"\x00 not an audit batch", 1)
    rig.inbox.put(CLUSTER, body_of(good), 2)

    with caplog.at_level(logging.ERROR, logger="kelemetry.ingest"):
        rig.ingestor.start()
        assert rig.ingestor.wait_idle(WAIT)

    assert "quarantined input of cluster c1: inbox batch unreadable" in caplog.text
    assert audit_ids(rig.store_path) == Counter(ids_of(good))
    assert rig.inbox.count() == 0
    (row,) = rig.inbox.quarantined()
    assert (row.cluster, row.source, row.body) == (CLUSTER, "audit", b"\x00 not an audit batch")
    assert row.reason.startswith("inbox batch unreadable: body is not valid JSON")
    assert rig.ingestor.counters["events_quarantined"] == 1


@contextmanager
def full_disk() -> Iterator[None]:
    """No file of this process can grow while inside: a full disk at the OS boundary
    (``RLIMIT_FSIZE``; SIGXFSZ ignored, so a write fails with EFBIG instead of killing the process)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def _until(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_batch_the_store_cannot_take_is_retried_in_the_same_run_and_new_batches_are_refused_meanwhile(
    rigs: Callable[..., Rig], caplog: pytest.LogCaptureFixture
) -> None:
    rig = rigs()
    events = pod_events("unlucky", 2)
    assert rig.ingestor.accept(CLUSTER, body_of(events)) == 2

    with full_disk(), caplog.at_level(logging.ERROR, logger="kelemetry.ingest"):
        rig.ingestor.start()
        assert _until(lambda: rig.ingestor.counters["store_failures"] >= 2), "retried in process"
        failure = rig.ingestor.store_failure or ""
        problems = rig.ingestor.problems()
        with pytest.raises(errors.StoreUnavailable, match="the store is failing") as refused:
            rig.ingestor.accept(CLUSTER, body_of(pod_events("meanwhile", 1)))
        backlog = rig.ingestor.backlog_bytes

    assert "disk is full" in failure or "I/O error" in failure, failure
    assert "retrying in" in caplog.text
    assert any("the store is failing" in problem for problem in problems)
    assert refused.value.status == 503
    assert backlog == len(body_of(events)), "the pending batch counts in the backlog"
    assert rig.ingestor.wait_idle(WAIT), "stored once the disk has room again"
    assert audit_ids(rig.store_path) == Counter(ids_of(events))
    assert rig.inbox.count() == 0
    assert rig.ingestor.store_failure is None
    assert rig.ingestor.problems() == []
    assert rig.ingestor.backlog_bytes == 0
    then = pod_events("then", 1)
    assert rig.ingestor.accept(CLUSTER, body_of(then)) == 1
    assert rig.ingestor.wait_idle(WAIT)
    assert audit_ids(rig.store_path) == Counter(ids_of(events + then))


def test_a_batch_still_failing_at_stop_stays_in_the_inbox_for_the_next_run(rigs: Callable[..., Rig]) -> None:
    rig = rigs()
    events = pod_events("unlucky", 2)
    rig.ingestor.accept(CLUSTER, body_of(events))
    with full_disk():
        rig.ingestor.start()
        assert _until(lambda: rig.ingestor.store_failure is not None)
        rig.ingestor.stop(timeout=WAIT)
    assert rig.ingestor.counters["batches_left_in_inbox"] == 1
    rig.close()

    assert Inbox(rig.inbox.path).count() == 1
    next_run = rigs()
    next_run.ingestor.start()
    assert next_run.ingestor.wait_idle(WAIT)

    assert audit_ids(next_run.store_path) == Counter(ids_of(events))
    assert next_run.inbox.count() == 0


def test_after_a_failed_write_both_batches_on_the_same_object_are_stored_as_whole_traces(
    rigs: Callable[..., Rig],
) -> None:
    rig = rigs()
    rig.ingestor.accept(CLUSTER, body_of([audit_event(name="web-0", uid="p-0", audit_id="first")]))
    with full_disk():
        rig.ingestor.start()
        assert _until(lambda: rig.ingestor.store_failure is not None)
    assert _until(lambda: rig.ingestor.store_failure is None)

    update = audit_event(verb="update", name="web-0", uid="p-0", code=200, audit_id="after-failure")
    rig.ingestor.accept(CLUSTER, body_of([update]))
    assert rig.ingestor.wait_idle(WAIT)

    spans = {span.span_id: span for span in rig.store.all_spans()}
    audits = [span for span in spans.values() if span.source is TraceSource.AUDIT]
    assert sorted(str(span.tags[tags.AUDIT_ID]) for span in audits) == ["after-failure", "first"]
    for audit in audits:
        assert audit.parent_id in spans, "an audit span's object span is missing from the store"
        assert spans[audit.parent_id].source is TraceSource.OBJECT  # type: ignore[index]


def test_an_event_the_store_refuses_is_quarantined_and_the_others_of_its_batch_are_stored(
    rigs: Callable[..., Rig],
) -> None:
    rig = rigs()
    rig.ingestor.start()
    # A write refused for one object only (a constraint), so the same write would be refused again.
    db = sqlite3.connect(rig.store_path, isolation_level=None)
    db.execute(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON objects WHEN NEW.name = 'poison' "
        "BEGIN SELECT RAISE(ABORT, 'poison refused'); END"
    )
    db.close()
    good = pod_events("good", 2)
    poison = audit_event(name="poison", uid="uid-poison", audit_id="poison")
    rig.ingestor.accept(CLUSTER, body_of([good[0], poison, good[1]]))
    assert rig.ingestor.wait_idle(WAIT)
    then = pod_events("then", 1)
    rig.ingestor.accept(CLUSTER, body_of(then))
    assert rig.ingestor.wait_idle(WAIT)

    assert audit_ids(rig.store_path) == Counter(ids_of(good + then))
    assert rig.inbox.count() == 0
    (row,) = rig.inbox.quarantined()
    assert row.cluster == CLUSTER and row.source == "audit" and "poison refused" in row.reason
    assert json.loads(row.body)["items"][0]["auditID"] == "poison"
    assert rig.ingestor.counters["events_quarantined"] == 1
    assert rig.ingestor.store_failure is None


def test_the_write_ahead_logs_are_checkpointed_to_zero_bytes_when_idle(rigs: Callable[..., Rig]) -> None:
    rig = rigs()
    rig.ingestor.start()
    rig.ingestor.accept(CLUSTER, body_of(pod_events("wal", 200)))
    assert rig.ingestor.wait_idle(WAIT)
    wal = rig.store_path.with_name(rig.store_path.name + "-wal")
    inbox_wal = rig.inbox.path.with_name(rig.inbox.path.name + "-wal")

    assert _until(lambda: rig.ingestor.counters["checkpoints"] >= 1)
    assert wal.stat().st_size == 0
    assert inbox_wal.stat().st_size == 0
    assert audit_ids(rig.store_path) == Counter(ids_of(pod_events("wal", 200)))


def refuse_objects_named_poison(store_path: Path) -> None:
    """A write refused for one object only (a constraint): the same write would be refused again."""
    db = sqlite3.connect(store_path, isolation_level=None)
    db.execute(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON objects WHEN NEW.name = 'poison' "
        "BEGIN SELECT RAISE(ABORT, 'poison refused'); END"
    )
    db.close()


def test_an_event_a_pipeline_stage_raises_on_is_quarantined_as_received_and_stored_by_a_retry_after_the_fix(
    rigs: Callable[..., Rig],
) -> None:
    rig = rigs(pipeline_of=pipeline_with_a_broken_linker)
    rig.ingestor.start()
    good = pod_events("good", 2)
    poison = audit_event(name="poison", uid="uid-poison", audit_id="poison", verb="update")
    rig.ingestor.accept(CLUSTER, body_of([good[0], poison, good[1]]))
    assert rig.ingestor.wait_idle(WAIT)

    assert audit_ids(rig.store_path) == Counter(ids_of(good))
    (row,) = rig.inbox.quarantined()
    assert (row.cluster, row.source) == (CLUSTER, "audit")
    assert row.reason == "pipeline failed at linking: RuntimeError: linker broke on poison"
    (kept,) = json.loads(row.body)["items"]
    assert kept["auditID"] == "poison" and kept["objectRef"]["name"] == "poison"
    assert kept["responseObject"] == poison["responseObject"]
    assert rig.ingestor.counters["events_quarantined"] == 1
    assert rig.ingestor.counters["events_failed"] == 1
    rig.close()

    fixed = rigs()
    report = fixed.ingestor.retry_quarantined()

    assert (report.stored, report.failed) == (1, [])
    assert audit_ids(fixed.store_path) == Counter(ids_of([*good, poison]))
    assert fixed.inbox.quarantined() == []


def test_kube_events_and_watched_objects_the_store_refuses_are_quarantined_and_kept_by_a_failed_retry(
    rigs: Callable[..., Rig],
) -> None:
    rig = rigs(pipeline_of=pipeline_redacting_configmaps)
    rig.ingestor.start()
    refuse_objects_named_poison(rig.store_path)
    fine = kube_event(kind="Pod", name="web-0", reason="Scheduled")
    refused = kube_event(kind="Pod", name="poison", reason="Scheduled")
    done: list[bool] = []
    rig.ingestor.submit_kube_events(CLUSTER, [fine, refused], on_done=lambda: done.append(True))
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "poison", "namespace": "default", "uid": "uid-cm", "resourceVersion": "7"},
        "data": {"password": "hunter2"},
    }
    rig.ingestor.submit_object_changes(CLUSTER, ("", "v1", "configmaps"), [("ADDED", config)])
    assert rig.ingestor.wait_idle(WAIT)

    event_row, watch_row = rig.inbox.quarantined()
    assert event_row.source == "event" and watch_row.source == "watch"
    assert event_row.reason.startswith("store refused: ") and "poison refused" in event_row.reason
    assert json.loads(event_row.body) == refused
    assert "poison refused" in watch_row.reason
    watched = json.loads(watch_row.body)
    assert (watched["type"], watched["target"]) == ("ADDED", ["", "v1", "configmaps"])
    assert watched["object"]["metadata"] == config["metadata"]
    assert b"hunter2" not in watch_row.body, "a quarantined body is redacted as the store's would be"
    assert done == [True], "the Events' resume point moves on: nothing was lost"
    reasons = {str(span.tags.get(tags.EVENT_REASON)) for span in rig.store.all_spans()}
    assert "Scheduled" in reasons, "the Event the store took is stored"
    assert rig.ingestor.counters["events_quarantined"] == 2
    rig.ingestor.stop(timeout=WAIT)

    report = rig.ingestor.retry_quarantined()

    assert report.stored == 0
    assert [row_id for row_id, _reason in report.failed] == [event_row.row_id, watch_row.row_id]
    assert all("poison refused" in reason for _row_id, reason in report.failed)
    assert [row.row_id for row in rig.inbox.quarantined()] == [event_row.row_id, watch_row.row_id]
