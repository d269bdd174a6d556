"""The worker role against a real nats-server and the real Jaeger v2, as a user runs it.

The stream is published as the webhook publishes it (per partition, EventList bodies); what Jaeger's
API then shows is compared with the embedded mode's replay of the same events: every kept audit ID
exactly once, with the same trace, span and parent ids.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kelemetry.kube.kinds import KindResolver
from kelemetry.pipeline import build
from kelemetry.queue import layout
from kelemetry.queue.partition import Progress
from kelemetry.settings import TraceSettings
from kelemetry.store.sqlite import SpanStore
from tests.kelemetry.queue.workerkit import (
    Ids,
    Jaeger,
    Logs,
    WorkerProcess,
    audit_spans,
    http_status,
    partition_of,
    publish,
    replay,
    sample_events,
    wait_until,
    with_stream,
)
from tests.natsserver import NatsServer, nats_server  # noqa: F401


@pytest.fixture
def jaeger(tmp_path: Path) -> Iterator[Jaeger]:
    server = Jaeger(tmp_path / "jaeger").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    try:
        yield started
    finally:
        for worker in started:
            worker.ensure_stopped()


def expected(events: list[dict[str, object]], tmp_path: Path) -> dict[str, tuple[Ids, Logs]]:
    store = replay(events, tmp_path / "embedded.db")
    try:
        return audit_spans(store)
    finally:
        store.close()


def expected_in_parts(parts: list[list[dict[str, Any]]], path: Path) -> dict[str, tuple[Ids, Logs]]:
    """The embedded mode's spans of events arriving in ``parts`` (a batch is put in time order, so
    late events must come in a later batch to be late)."""
    store = SpanStore(path)
    try:
        pipeline = build(store, TraceSettings(), KindResolver())
        for part in parts:
            pipeline.process_audit(part, "default")
        return audit_spans(store)
    finally:
        store.close()


def assert_same_as_embedded(jaeger: Jaeger, want: dict[str, tuple[Ids, Logs]], timeout: float = 90) -> None:
    """Every kept audit ID is one span in Jaeger, with the embedded mode's trace, span and parent ids,
    and with the embedded mode's content among the versions Jaeger shows.

    Jaeger drops a byte-identical repeat of a span, so a redelivered batch adds nothing. It shows
    every *different* version of a span id, though: a write whose change the pipeline learns only
    from a later event is issued again with the fuller diff (the embedded mode does the same, and
    its OTLP follower sends both versions when the first was exported before the second was
    written), so an audit ID may show an earlier version beside the final one."""
    found: dict[str, list[tuple[Ids, Logs]]] = {}

    def complete() -> bool:
        nonlocal found
        found = jaeger.audit_spans({ids[0] for ids, _logs in want.values()})
        return set(found) >= set(want) and all(want[key] in found[key] for key in want)

    try:
        wait_until("every audit ID in Jaeger", complete, timeout, every=1.0)
    except AssertionError:
        missing = sorted(key for key in want if want[key] not in found.get(key, []))
        raise AssertionError(f"{len(missing)} of {len(want)} audit IDs missing, e.g. {missing[:3]}") from None
    assert set(found) == set(want)
    other_ids = {
        key: spans for key, spans in found.items() if {ids for ids, _logs in spans} != {want[key][0]}
    }
    assert not other_ids, f"audit IDs with other ids than the embedded mode's: {list(other_ids.items())[:3]}"
    twice = {key: spans for key, spans in found.items() if len(spans) != len(set(spans))}
    assert not twice, f"identical spans shown twice: {list(twice.items())[:3]}"


def progress_of(url: str, partitions: int) -> dict[int, Progress]:
    async def read(stream: object) -> dict[int, Progress]:
        from kelemetry.queue.jetstream import JetStream

        assert isinstance(stream, JetStream)
        found: dict[int, Progress] = {}
        for partition in range(partitions):
            entry = await stream.get(layout.PROGRESS_BUCKET, layout.progress_key(partition))
            if entry is not None:
                found[partition] = Progress.decode(entry.value)
        return found

    result: dict[int, Progress] = with_stream(url, partitions, read)
    return result


def test_one_worker_gives_the_embedded_tree_with_every_audit_id_once(
    nats_server: NatsServer,  # noqa: F811
    jaeger: Jaeger,
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    events = sample_events()
    want = expected(events, tmp_path)
    assert len(want) > 50
    publish(nats_server.url, events, partitions=4, chunk=7)
    worker = WorkerProcess(tmp_path / "w", nats_server.url, jaeger.endpoint, "w1", partitions=4)
    workers.append(worker.start())
    wait_until("the worker to own every partition", lambda: worker.owned() == 4)
    assert http_status(worker.url("/readyz")) == 200
    assert_same_as_embedded(jaeger, want)

    partition = partition_of(events[0], 4)
    wait_until(
        "progress recorded", lambda: progress_of(nats_server.url, 4).get(partition, Progress()).done > 0
    )
    metrics = worker.metrics()
    assert metrics["kelemetry_worker_events_total"] == len(events)
    assert metrics["kelemetry_worker_spans_exported_total"] > 0
    lag = f'kelemetry_worker_partition_lag_messages{{partition="{partition}"}}'
    wait_until("no lag", lambda: worker.metrics().get(lag) == 0, 10)
    assert http_status(worker.url("/nothing")) == 404
    assert worker.stop() == 0


def test_workers_share_the_partitions_and_rebalance_when_one_leaves_and_comes_back(
    nats_server: NatsServer,  # noqa: F811
    jaeger: Jaeger,
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    first = WorkerProcess(tmp_path / "w", nats_server.url, jaeger.endpoint, "wa", partitions=4, lease="1s")
    second = WorkerProcess(tmp_path / "w", nats_server.url, jaeger.endpoint, "wb", partitions=4, lease="1s")
    workers.extend([first.start(), second.start()])
    wait_until("a 2/2 split", lambda: (first.owned(), second.owned()) == (2, 2), 30)

    assert second.stop() == 0  # graceful: its partitions are released at once, not after a lease
    wait_until("the first worker to own all four", lambda: first.owned() == 4, 15)

    third = WorkerProcess(tmp_path / "w", nats_server.url, jaeger.endpoint, "wc", partitions=4, lease="1s")
    workers.append(third.start())
    wait_until("a 2/2 split again", lambda: (first.owned(), third.owned()) == (2, 2), 30)
    events = sample_events(copies=6)
    publish(nats_server.url, events, partitions=4)
    assert_same_as_embedded(jaeger, expected(events, tmp_path))
    assert first.metrics()["kelemetry_worker_events_total"] + third.metrics()[
        "kelemetry_worker_events_total"
    ] >= len(events)


def test_a_worker_killed_mid_stream_is_taken_over_with_nothing_lost_and_nothing_shown_twice(
    nats_server: NatsServer,  # noqa: F811
    jaeger: Jaeger,
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    events = sample_events(copies=40)
    want = expected(events, tmp_path)
    publish(nats_server.url, events, partitions=4, chunk=5)
    victim = WorkerProcess(
        tmp_path / "w",
        nats_server.url,
        jaeger.endpoint,
        "victim",
        partitions=4,
        lease="2s",
        snapshot_every="1s",
    )
    workers.append(victim.start())
    wait_until(
        "the victim to be part-way",
        lambda: 0 < victim.metrics().get("kelemetry_worker_spans_exported_total", 0),
        60,
        every=0.05,
    )
    victim.kill()
    done_before = progress_of(nats_server.url, 4)
    heir = WorkerProcess(tmp_path / "w", nats_server.url, jaeger.endpoint, "heir", partitions=4, lease="2s")
    workers.append(heir.start())
    started = time.monotonic()
    wait_until("the heir to own every partition", lambda: heir.owned() == 4, 30)
    assert time.monotonic() - started < 10
    assert_same_as_embedded(jaeger, want, timeout=180)
    metrics = heir.metrics()
    assert metrics["kelemetry_worker_takeovers_total"] == 4
    assert sum(1 for progress in done_before.values() if progress.owner == "victim") > 0


def test_snapshot_trim_and_takeover_keep_the_diffs(
    nats_server: NatsServer,  # noqa: F811
    jaeger: Jaeger,
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    events = sample_events()
    half = len(events) // 2
    first = WorkerProcess(
        tmp_path / "w", nats_server.url, jaeger.endpoint, "early", partitions=2, snapshot_every="1s"
    )
    workers.append(first.start())
    publish(nats_server.url, events[: half // 2], partitions=2, chunk=5)
    wait_until(
        "a first snapshot", lambda: first.metrics().get("kelemetry_worker_snapshots_total", 0) >= 1, 30
    )
    publish(nats_server.url, events[half // 2 : half], partitions=2, chunk=5)
    wait_until(
        "the first half exported", lambda: first.metrics()["kelemetry_worker_events_total"] == half, 30
    )
    assert first.stop() == 0  # a final snapshot, and the stream trimmed below the one before it

    partition = partition_of(events[0], 2)
    progress = progress_of(nats_server.url, 2)[partition]
    assert progress.snap == progress.done > 0
    first_seq = with_stream(nats_server.url, 2, lambda stream: _first_seq(stream, partition))
    assert first_seq > 1, "the stream was not trimmed below the snapshot before the last"

    publish(nats_server.url, events[half:], partitions=2, chunk=5)
    second = WorkerProcess(tmp_path / "w", nats_server.url, jaeger.endpoint, "late", partitions=2)
    workers.append(second.start())
    want = expected(events, tmp_path)
    assert_same_as_embedded(jaeger, want)
    # Only the second half was processed: the first came back from the snapshot, diffs and all.
    assert second.metrics()["kelemetry_worker_events_total"] == len(events) - half
    diffed = _diff_lines(jaeger, want, events[half:])
    assert diffed, "no write after the takeover shows a diff line"


async def _first_seq(stream: object, partition: int) -> int:
    from kelemetry.queue.jetstream import JetStream

    assert isinstance(stream, JetStream)
    reader = await stream.reader(partition, 1)
    try:
        found = await reader.fetch(1, 5.0)
    finally:
        await reader.close()
    return found[0].seq if found else 0


def _diff_lines(
    jaeger: Jaeger, want: dict[str, tuple[str, str, str | None]], later: list[dict[str, object]]
) -> list[str]:
    """Audit IDs of the later events whose span in Jaeger carries a diff log."""
    later_ids = {str(event["auditID"]) for event in later} & set(want)
    found: list[str] = []
    for trace in {want[audit_id][0][0] for audit_id in later_ids}:
        for span in jaeger.trace(trace):
            values = {tag["key"]: tag["value"] for tag in span.get("tags", [])}
            if values.get("audit.id") not in later_ids:
                continue
            for log in span.get("logs", []):
                fields = {field["key"]: field["value"] for field in log.get("fields", [])}
                if fields.get("event") == "diff":
                    found.append(str(values["audit.id"]))
    return found


def test_jaeger_down_then_back_loses_nothing(
    nats_server: NatsServer,  # noqa: F811
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    jaeger = Jaeger(tmp_path / "jaeger")  # not started: the backend is down
    events = sample_events(copies=3)
    want = expected(events, tmp_path)
    publish(nats_server.url, events, partitions=2)
    worker = WorkerProcess(
        tmp_path / "w", nats_server.url, jaeger.endpoint, "patient", partitions=2, lease="1s"
    )
    workers.append(worker.start())
    wait_until(
        "export failures", lambda: worker.metrics().get("kelemetry_worker_export_failures_total", 0) >= 2, 60
    )
    time.sleep(3)  # several lease times: the leases must outlive the outage
    assert worker.owned() == 2
    assert all(progress.done == 0 for progress in progress_of(nats_server.url, 2).values())
    try:
        jaeger.start()
        assert_same_as_embedded(jaeger, want)
    finally:
        jaeger.stop()
    assert worker.metrics()["kelemetry_worker_leases_lost_total"] == 0


def test_a_nats_server_restart_mid_stream_loses_nothing(
    nats_server: NatsServer,  # noqa: F811
    jaeger: Jaeger,
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    events = sample_events(copies=4)
    half = len(events) // 2
    worker = WorkerProcess(
        tmp_path / "w", nats_server.url, jaeger.endpoint, "steady", partitions=4, lease="3s"
    )
    workers.append(worker.start())
    publish(nats_server.url, events[:half], partitions=4)
    wait_until(
        "the first half processed", lambda: worker.metrics()["kelemetry_worker_events_total"] == half, 30
    )
    nats_server.restart()
    publish(nats_server.url, events[half:], partitions=4)
    assert_same_as_embedded(jaeger, expected(events, tmp_path))
    wait_until("readiness again", lambda: http_status(worker.url("/readyz")) == 200, 30)


# -- settling: a span reaches Jaeger once, in its final form


def assert_once_as_embedded(
    jaeger: Jaeger, want: dict[str, tuple[Ids, Logs]], traces: set[str], timeout: float = 90
) -> dict[str, list[tuple[Ids, Logs]]]:
    """Every kept audit ID is exactly one span over ``traces`` (the final ones and any a span was in
    before it moved), with the embedded mode's final ids and content: no earlier version, no other
    trace. Waits for the final versions, then looks again after Jaeger's batching."""
    found: dict[str, list[tuple[Ids, Logs]]] = {}

    def complete() -> bool:
        nonlocal found
        found = jaeger.audit_spans(traces)
        return set(found) >= set(want) and all(want[key] in found[key] for key in want)

    try:
        wait_until("every audit ID in Jaeger", complete, timeout, every=1.0)
    except AssertionError:
        missing = sorted(key for key in want if want[key] not in found.get(key, []))
        raise AssertionError(f"{len(missing)} of {len(want)} audit IDs missing, e.g. {missing[:3]}") from None
    time.sleep(1.5)
    found = jaeger.audit_spans(traces)
    assert set(found) == set(want)
    more = {key: spans for key, spans in found.items() if spans != [want[key]]}
    assert not more, f"{len(more)} audit IDs shown otherwise than once as embedded: {list(more.items())[:2]}"
    return found


def published_in_two(
    url: str, worker: WorkerProcess, early: list[dict[str, object]], late: list[dict[str, object]]
) -> None:
    """``early`` processed by the worker, then ``late`` published (well within the settle time)."""
    publish(url, early, partitions=2, chunk=5)
    wait_until(
        "the early events processed",
        lambda: worker.metrics().get("kelemetry_worker_events_total", 0) == len(early),
        30,
        every=0.1,
    )
    publish(url, late, partitions=2, chunk=5)


def test_a_retrace_within_the_settle_time_reaches_jaeger_once_in_the_owners_trace(
    nats_server: NatsServer,  # noqa: F811
    jaeger: Jaeger,
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    events = sample_events()

    def creates(resource: str) -> list[dict[str, Any]]:
        return [e for e in events if e["verb"] == "create" and e["objectRef"].get("resource") == resource]

    rs_create = creates("replicasets")[0]
    # The ReplicaSet's create arrives after its first Pods were created, bound and started (a
    # refused batch retried later): they are placed in traces of their own first.
    rest = [e for e in events if e is not rs_create]
    first_pod = rest.index(creates("pods")[0])
    early, late = rest[: first_pod + 6], [rs_create, *rest[first_pod + 6 :]]
    want = expected_in_parts([early, late], tmp_path / "embedded.db")
    before = expected(early, tmp_path / "early")
    moved = [key for key in before if before[key][0][0] != want[key][0][0]]
    assert moved, "no span changed trace: the reordering tests nothing"

    worker = WorkerProcess(tmp_path / "w", nats_server.url, jaeger.endpoint, "w1", partitions=2, settle="8s")
    workers.append(worker.start())
    published_in_two(nats_server.url, worker, early, late)
    traces = {ids[0] for ids, _logs in want.values()} | {ids[0] for ids, _logs in before.values()}
    assert_once_as_embedded(jaeger, want, traces)
    # Nothing is left in the trace the moved spans were in first.
    for key in moved:
        assert not [s for s in jaeger.trace(before[key][0][0]) if s["spanID"] == before[key][0][1]]


def test_a_reissued_span_reaches_jaeger_once_with_the_fuller_diff(
    nats_server: NatsServer,  # noqa: F811
    jaeger: Jaeger,
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    events = sample_events()
    # The scheduler's binding of the first Pod is written with the diff it knows of; the kubelet's
    # status patch after it reveals the rest of the change and reissues the binding's span.
    binding = next(
        i
        for i, e in enumerate(events)
        if e["verb"] == "create" and e["objectRef"].get("subresource") == "binding"
    )
    early, late = events[: binding + 1], events[binding + 1 :]
    want = expected(events, tmp_path)
    before = expected(early, tmp_path / "early")
    audit_id = str(events[binding]["auditID"])
    assert before[audit_id] != want[audit_id], "the binding's span is not reissued: this tests nothing"
    assert before[audit_id][0] == want[audit_id][0]

    worker = WorkerProcess(tmp_path / "w", nats_server.url, jaeger.endpoint, "w1", partitions=2, settle="8s")
    workers.append(worker.start())
    published_in_two(nats_server.url, worker, early, late)
    found = assert_once_as_embedded(jaeger, want, {ids[0] for ids, _logs in want.values()})
    assert found[audit_id] == [want[audit_id]]


def test_a_takeover_from_a_snapshot_ahead_of_the_export_exports_what_was_settling(
    nats_server: NatsServer,  # noqa: F811
    jaeger: Jaeger,
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    events = sample_events(copies=3)
    want = expected(events, tmp_path)
    partitions = {partition_of(event, 2) for event in events}
    publish(nats_server.url, events, partitions=2, chunk=5)
    # A settle time far longer than the test: the victim snapshots everything and exports nothing.
    victim = WorkerProcess(
        tmp_path / "w",
        nats_server.url,
        jaeger.endpoint,
        "victim",
        partitions=2,
        snapshot_every="1s",
        settle="10m",
    )
    workers.append(victim.start())

    def snapshotted() -> bool:
        progress = progress_of(nats_server.url, 2)
        last = with_stream(nats_server.url, 2, lambda stream: _last_seqs(stream, partitions))
        return all(p in progress and progress[p].snap == last[p] for p in partitions)

    wait_until("snapshots of every message", snapshotted, 60, every=0.5)
    progress = progress_of(nats_server.url, 2)
    assert all(progress[p].done < progress[p].snap for p in partitions)
    assert victim.metrics()["kelemetry_worker_spans_exported_total"] == 0
    assert victim.metrics()["kelemetry_worker_settling_spans"] > 0
    victim.kill()

    heir = WorkerProcess(tmp_path / "w", nats_server.url, jaeger.endpoint, "heir", partitions=2)
    workers.append(heir.start())
    assert_once_as_embedded(jaeger, want, {ids[0] for ids, _logs in want.values()})
    # Nothing was processed again: the rows came from the snapshots, exported after the settle time.
    assert heir.metrics()["kelemetry_worker_events_total"] == 0
    wait_until(
        "progress past every message",
        lambda: all(progress_of(nats_server.url, 2)[p].done == progress[p].snap for p in partitions),
        30,
    )
    wait_until("nothing settling", lambda: heir.metrics()["kelemetry_worker_settling_spans"] == 0, 10)


async def _last_seqs(stream: object, partitions: set[int]) -> dict[int, int]:
    from kelemetry.queue.jetstream import JetStream

    assert isinstance(stream, JetStream)
    return {partition: await stream.last_seq(partition) for partition in partitions}


def test_settle_reaches_the_worker_settings_and_a_bad_one_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from kelemetry import cli
    from kelemetry.queue import worker

    seen: list[layout.WorkerSettings] = []
    monkeypatch.setattr(worker, "serve", lambda _queue, settings, *_rest: seen.append(settings) or 0)
    argv = ["serve", "--queue", "nats://127.0.0.1:1", "--role", "worker", "--otlp-endpoint", "grpc://h:4317"]
    assert cli.main([*argv, "--worker-id", "w"]) == 0
    assert cli.main([*argv, "--worker-id", "w", "--settle", "1500ms"]) == 0
    assert cli.main([*argv, "--worker-id", "w", "--settle", "0s"]) == 0
    assert [settings.settle_seconds for settings in seen] == [15.0, 1.5, 0.0]
    capsys.readouterr()
    assert cli.main([*argv, "--worker-id", "w", "--settle", "soon"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "kelemetry: error: invalid --settle 'soon': use a number and a unit, e.g. 30m, 2h, 7d"
    ]
