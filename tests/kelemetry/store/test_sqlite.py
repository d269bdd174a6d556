"""The embedded span store (kelemetry.store.sqlite) on real SQLite files.

Covers: the round trip of every SpanRecord field (unsigned 64-bit ids through SQLite's signed
integers), upsert by span id and the skipping of no-op rewrites (digest and write sequence stay
still), which uid an object span and an audit span keep, the objects upsert, every read query
(find_objects, windows_of, spans_of_objects, spans_of_traces, spans_after, children_of, counts),
retrace, retention (by arrival age and by size, whole traces, per-cluster reports, dry runs, which
objects go), reopening, the errors of opening a missing, foreign, older or newer file,
concurrent reading while a writer is open, and surviving SIGKILL right after a write.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from aggregators import ids
from kelemetry import errors
from kelemetry.model import tags
from kelemetry.model.events import Log, TraceSource
from kelemetry.model.objects import Incarnation, KnownObject, ObjectKey
from kelemetry.model.spans import SpanRecord
from kelemetry.store.retention import Removed, RetentionReport
from kelemetry.store.sqlite import SCHEMA_VERSION, SpanStore, StoreReader, to_signed, to_unsigned

REPO_ROOT = Path(__file__).resolve().parents[3]
WINDOW_US = 1_800_000_000
CLUSTER = "c1"
DEPLOY = ObjectKey.make(CLUSTER, "apps", "deployments", "default", "web")
RS = ObjectKey.make(CLUSTER, "apps", "replicasets", "default", "web-1")
POD = ObjectKey.make(CLUSTER, "", "pods", "default", "web-1-a")
POD_B = ObjectKey.make(CLUSTER, "", "pods", "default", "web-1-b")


def _inc(key: ObjectKey) -> Incarnation:
    # The store keeps whatever ids it is given; these tests name objects by key alone.
    return Incarnation(key, "")


def object_span(
    key: ObjectKey,
    window: int,
    *,
    root: ObjectKey | None = None,
    parent: ObjectKey | None = None,
    uid: str = "",
    kind: str = "",
    version: str = "",
) -> SpanRecord:
    start = window * WINDOW_US
    return SpanRecord(
        trace_id=ids.trace_id(_inc(root or key), window),
        span_id=ids.object_span_id(_inc(key), window),
        parent_id=None if parent is None else ids.object_span_id(_inc(parent), window),
        source=TraceSource.OBJECT,
        name=key.display,
        start_us=start,
        end_us=start + WINDOW_US,
        key=key,
        object_id=ids.object_id(_inc(key)),
        window=window,
        uid=uid,
        kind=kind,
        version=version,
        tags={tags.TRACE_SOURCE: "object", tags.PSEUDO: True},
    )


def audit_span(
    key: ObjectKey,
    window: int,
    audit_id: str,
    *,
    offset_us: int = 1_000,
    root: ObjectKey | None = None,
    uid: str = "",
) -> SpanRecord:
    start = window * WINDOW_US + offset_us
    return SpanRecord(
        trace_id=ids.trace_id(_inc(root or key), window),
        span_id=ids.event_span_id(key, "audit", audit_id),
        parent_id=ids.object_span_id(_inc(key), window),
        source=TraceSource.AUDIT,
        name="admin create",
        start_us=start,
        end_us=start + 10_000,
        key=key,
        object_id=ids.object_id(_inc(key)),
        window=window,
        uid=uid,
        kind="Pod",
        version="v1",
        tags={tags.TRACE_SOURCE: "audit", tags.AUDIT_ID: audit_id, tags.AUDIT_CODE: 201},
    )


def object_row(
    key: ObjectKey,
    *,
    uid: str = "",
    kind: str = "",
    version: str = "",
    owner_id: int | None = None,
    first_us: int | None = None,
    last_us: int | None = None,
) -> KnownObject:
    return KnownObject(ids.object_id(_inc(key)), key, uid, kind, version, owner_id, first_us, last_us)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SpanStore]:
    opened = SpanStore(tmp_path / "k.db")
    yield opened
    opened.close()


def _by_id(spans: list[SpanRecord]) -> dict[int, SpanRecord]:
    return {span.span_id: span for span in spans}


# -- ids and the round trip


@pytest.mark.parametrize("value", [0, 1, 2**63 - 1, 2**63, 2**63 + 1, 2**64 - 1])
def test_signed_conversion_round_trips_every_unsigned_64_bit_value(value: int) -> None:
    signed = to_signed(value)
    assert -(2**63) <= signed < 2**63
    assert to_unsigned(signed) == value


def test_round_trip_keeps_every_field_including_ids_above_2_63(store: SpanStore) -> None:
    key = ObjectKey.make(CLUSTER, "", "pods", "default", "big")
    span = SpanRecord(
        trace_id=2**128 - 1,
        span_id=2**64 - 1,
        parent_id=2**63,
        source=TraceSource.AUDIT,
        name="admin patch status (Conflict)",
        start_us=1_714_557_600_000_000,
        end_us=1_714_557_600_010_000,
        key=key,
        object_id=2**63 + 5,
        window=952_532,
        uid="uid-big",
        kind="Pod",
        version="v1",
        tags={"audit.verb": "patch", "audit.code": 409, "kelemetry.pseudo": False, "note": "ünïcode"},
        logs=(Log("error", "Conflict: the object has been modified"), Log("diff", "a 1 -> 2")),
        error=True,
    )
    store.write([span], [KnownObject(2**63 + 5, key, "uid-big", "Pod", "v1", 2**64 - 2, 1, 2)])

    (read,) = store.all_spans()
    assert read == span
    assert isinstance(read.tags["kelemetry.pseudo"], bool) and isinstance(read.tags["audit.code"], int)
    (row,) = store.objects()
    assert row == KnownObject(2**63 + 5, key, "uid-big", "Pod", "v1", 2**64 - 2, 1, 2)
    assert store.spans_of_objects([2**63 + 5]) == [span]
    assert store.spans_of_traces([2**128 - 1]) == [span]
    assert store.windows_of([2**63 + 5]) == {952_532}


def test_a_span_with_no_parent_reads_back_without_one(store: SpanStore) -> None:
    span = object_span(DEPLOY, 10, uid="d-1", kind="Deployment", version="v1")
    store.write([span], [object_row(DEPLOY)])
    assert store.all_spans() == [span]
    assert store.all_spans()[0].parent_id is None


# -- upsert


def test_the_same_span_written_twice_is_one_row_and_moves_nothing(store: SpanStore) -> None:
    spans = [object_span(POD, 10, uid="p-1"), audit_span(POD, 10, "a-1", uid="p-1")]
    store.write(spans, [object_row(POD, uid="p-1")])
    digest = store.digest_rows()
    seq = store.max_seq()

    store.write(spans, [object_row(POD, uid="p-1")])

    assert store.digest_rows() == digest
    assert store.max_seq() == seq
    assert store.spans_after(seq, 100) == []
    assert store.counts() == {"spans_object": 1, "spans_audit": 1, "objects": 1}


def test_a_changed_span_is_updated_in_place_with_a_new_seq(store: SpanStore) -> None:
    first = audit_span(POD, 10, "a-1")
    store.write([first], [object_row(POD)])
    seq = store.max_seq()

    changed = replace(first, end_us=first.end_us + 5, logs=(Log("message", "retried"),))
    store.write([changed], [object_row(POD)])

    assert store.all_spans() == [changed]
    assert store.max_seq() > seq
    assert [span for _seq, span in store.spans_after(seq, 100)] == [changed]


def test_an_object_span_keeps_its_first_non_empty_uid_kind_and_version(store: SpanStore) -> None:
    store.write([object_span(POD, 10)], [object_row(POD)])
    store.write([object_span(POD, 10, uid="old", kind="Pod", version="v1")], [object_row(POD)])
    seq = store.max_seq()

    # A recreated pod in the same window must not flip the window's span to the new incarnation.
    store.write([object_span(POD, 10, uid="new", kind="Other", version="v2")], [object_row(POD)])

    (span,) = store.all_spans()
    assert (span.uid, span.kind, span.version) == ("old", "Pod", "v1")
    assert store.max_seq() == seq


def test_an_audit_span_takes_the_uid_it_is_written_with(store: SpanStore) -> None:
    store.write([audit_span(POD, 10, "a-1", uid="old")], [object_row(POD)])
    store.write([audit_span(POD, 10, "a-1", uid="new")], [object_row(POD)])
    (span,) = store.all_spans()
    assert span.uid == "new"


def test_objects_upsert_keeps_latest_uid_known_owner_and_widest_times(store: SpanStore) -> None:
    owner = ids.object_id(_inc(RS))
    store.write([], [object_row(POD)])
    store.write([], [object_row(POD, uid="u1", kind="Pod", version="v1", owner_id=owner, first_us=100)])
    store.write([], [object_row(POD, uid="", kind="", version="", owner_id=None, first_us=50, last_us=150)])
    store.write([], [object_row(POD, uid="u2", first_us=80, last_us=300)])
    store.write([], [object_row(POD, first_us=None, last_us=200)])

    (row,) = store.objects()
    assert row == KnownObject(ids.object_id(_inc(POD)), POD, "u2", "Pod", "v1", owner, 50, 300)


def test_a_later_owner_replaces_the_earlier_one(store: SpanStore) -> None:
    store.write([], [object_row(RS, owner_id=ids.object_id(_inc(POD_B)))])
    store.write([], [object_row(RS, owner_id=ids.object_id(_inc(DEPLOY)))])
    (row,) = store.objects()
    assert row.owner_id == ids.object_id(_inc(DEPLOY))


def test_objects_and_spans_of_one_write_are_one_transaction(store: SpanStore) -> None:
    reader = StoreReader(store.path)
    try:
        store.write([object_span(POD, 10), audit_span(POD, 10, "a-1")], [object_row(POD)])
        assert len(reader.all_spans()) == 2
        assert [row.key for row in reader.objects()] == [POD]
    finally:
        reader.close()


# -- reads


def test_find_objects_by_name_with_and_without_namespace_and_group(store: SpanStore) -> None:
    web_a = ObjectKey.make(CLUSTER, "", "pods", "a", "web")
    web_b = ObjectKey.make(CLUSTER, "", "pods", "b", "web")
    web_crd = ObjectKey.make(CLUSTER, "example.com", "pods", "a", "web")
    other_cluster = ObjectKey.make("c2", "", "pods", "a", "web")
    other_resource = ObjectKey.make(CLUSTER, "", "services", "a", "web")
    store.write([], [object_row(k) for k in (web_a, web_b, web_crd, other_cluster, other_resource)])

    def keys(**query: str) -> set[ObjectKey]:
        return {row.key for row in store.find_objects(cluster=CLUSTER, resource="pods", name="web", **query)}

    assert keys() == {web_a, web_b, web_crd}
    assert keys(namespace="a") == {web_a, web_crd}
    assert keys(group="") == {web_a, web_b}
    assert keys(namespace="a", group="") == {web_a}
    assert keys(namespace="c") == set()
    assert store.find_objects(cluster=CLUSTER, resource="pods", name="nope") == []


def test_windows_of(store: SpanStore) -> None:
    store.write(
        [object_span(POD, 10), object_span(POD, 11), audit_span(POD, 11, "a"), object_span(POD_B, 15)],
        [object_row(POD), object_row(POD_B)],
    )
    assert store.windows_of([ids.object_id(_inc(POD))]) == {10, 11}
    assert store.windows_of([ids.object_id(_inc(POD)), ids.object_id(_inc(POD_B))]) == {10, 11, 15}
    assert store.windows_of([ids.object_id(_inc(DEPLOY))]) == set()
    assert store.windows_of([]) == set()


def test_spans_of_objects_with_time_bounds_is_an_inclusive_overlap(store: SpanStore) -> None:
    early = audit_span(POD, 10, "early", offset_us=1_000)  # 10W+1000 .. 10W+11000
    late = audit_span(POD, 10, "late", offset_us=100_000)  # 10W+100000 .. 10W+110000
    other = audit_span(POD_B, 10, "other", offset_us=1_000)
    store.write([early, late, other], [object_row(POD), object_row(POD_B)])
    pod = [ids.object_id(_inc(POD))]
    base = 10 * WINDOW_US

    def names(start: int | None, end: int | None) -> set[str]:
        return {str(s.tags[tags.AUDIT_ID]) for s in store.spans_of_objects(pod, start, end)}

    assert names(None, None) == {"early", "late"}
    assert names(base + 11_000, None) == {"early", "late"}  # touching the end counts
    assert names(base + 11_001, None) == {"late"}
    assert names(None, base + 100_000) == {"early", "late"}  # touching the start counts
    assert names(None, base + 99_999) == {"early"}
    assert names(base + 20_000, base + 90_000) == set()
    assert names(base + 20_000, base + 100_000) == {"late"}
    assert store.spans_of_objects([], None, None) == []


def test_spans_of_traces(store: SpanStore) -> None:
    in_deploy = [
        object_span(DEPLOY, 10),
        object_span(RS, 10, root=DEPLOY, parent=DEPLOY),
        audit_span(RS, 10, "rs", root=DEPLOY),
    ]
    elsewhere = [object_span(DEPLOY, 11), object_span(POD_B, 10)]
    store.write(in_deploy + elsewhere, [object_row(k) for k in (DEPLOY, RS, POD_B)])

    assert _by_id(store.spans_of_traces([ids.trace_id(_inc(DEPLOY), 10)])) == _by_id(in_deploy)
    both = store.spans_of_traces([ids.trace_id(_inc(DEPLOY), 10), ids.trace_id(_inc(DEPLOY), 11)])
    assert len(both) == 4
    assert store.spans_of_traces([ids.trace_id(_inc(POD), 99)]) == []
    assert store.spans_of_traces([]) == []


def test_spans_after_returns_writes_in_order_and_pages(store: SpanStore) -> None:
    batches = [
        [object_span(POD, 10), audit_span(POD, 10, "a")],
        [audit_span(POD, 10, "b")],
        [object_span(POD_B, 11), audit_span(POD_B, 11, "c")],
    ]
    for batch in batches:
        store.write(batch, [object_row(POD), object_row(POD_B)])
    written = [span for batch in batches for span in batch]

    rows = store.spans_after(0, 100)
    seqs = [seq for seq, _span in rows]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert [span for _seq, span in rows] == written
    assert store.max_seq() == seqs[-1]

    paged: list[SpanRecord] = []
    cursor = 0
    while page := store.spans_after(cursor, 2):
        assert len(page) <= 2
        paged.extend(span for _seq, span in page)
        cursor = page[-1][0]
    assert paged == written
    assert store.spans_after(store.max_seq(), 100) == []


def test_children_and_counts(store: SpanStore) -> None:
    assert store.max_seq() == 0
    store.write(
        [object_span(RS, 10), audit_span(POD, 10, "a", offset_us=7), audit_span(POD_B, 10, "b", offset_us=9)],
        [
            object_row(RS),
            object_row(POD, owner_id=ids.object_id(_inc(RS))),
            object_row(POD_B, owner_id=ids.object_id(_inc(RS))),
        ],
    )
    assert sorted(store.children_of([ids.object_id(_inc(RS))])) == sorted(
        [ids.object_id(_inc(POD)), ids.object_id(_inc(POD_B))]
    )
    assert store.children_of([ids.object_id(_inc(POD))]) == []
    assert store.counts() == {"spans_object": 1, "spans_audit": 2, "objects": 3}


# -- retrace


def test_retrace_moves_only_the_given_objects_in_the_given_window(store: SpanStore) -> None:
    spans = [
        object_span(RS, 10),
        audit_span(RS, 10, "rs-10"),
        object_span(POD, 10, root=RS, parent=RS),
        audit_span(POD, 10, "pod-10", root=RS),
        object_span(POD, 11, root=RS, parent=RS),
        audit_span(POD, 11, "pod-11", root=RS),
        object_span(POD_B, 10, root=RS, parent=RS),
    ]
    store.write(spans, [object_row(k) for k in (RS, POD, POD_B)])
    before = _by_id(store.all_spans())
    seq = store.max_seq()
    target = ids.trace_id(_inc(DEPLOY), 10)

    moved = store.retrace([ids.object_id(_inc(RS)), ids.object_id(_inc(POD))], 10, target)

    assert moved == 4
    after = _by_id(store.all_spans())
    for span_id, span in after.items():
        was = before[span_id]
        expect_moved = span.window == 10 and span.key in (RS, POD)
        assert span.trace_id == (target if expect_moved else was.trace_id)
        assert replace(span, trace_id=was.trace_id) == was
    assert {span.span_id for _seq, span in store.spans_after(seq, 100)} == {
        s.span_id for s in spans if s.window == 10 and s.key in (RS, POD)
    }
    # Already there: nothing to move, nothing new to export.
    seq = store.max_seq()
    assert store.retrace([ids.object_id(_inc(RS)), ids.object_id(_inc(POD))], 10, target) == 0
    assert store.spans_after(seq, 100) == []


def test_an_exporter_paging_with_a_small_limit_sees_every_retraced_span(store: SpanStore) -> None:
    pods = [ObjectKey.make(CLUSTER, "", "pods", "default", f"p{i}") for i in range(6)]
    store.write([object_span(p, 10, root=RS) for p in pods], [object_row(p) for p in pods])
    cursor = store.max_seq()
    store.retrace([ids.object_id(_inc(p)) for p in pods], 10, ids.trace_id(_inc(DEPLOY), 10))

    # The OTLP follower advances its cursor to the last seq of each page (export/otlp.py).
    exported: list[SpanRecord] = []
    while page := store.spans_after(cursor, 4):
        exported.extend(span for _seq, span in page)
        cursor = page[-1][0]

    assert sorted(s.span_id for s in exported) == sorted(ids.object_span_id(_inc(p), 10) for p in pods)
    assert all(s.trace_id == ids.trace_id(_inc(DEPLOY), 10) for s in exported)


# -- retention (ages count from arrival by the store's clock, never from the data's timestamps)

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
RETENTION_US = 7 * DAY_US
ARRIVAL_US = 1_750_000_000_000_000  # a wall-clock "now" in 2025, as µs since the epoch


class ManualClock:
    """The store's clock seam: tests set the time instead of sleeping."""

    def __init__(self, now_us: int = ARRIVAL_US) -> None:
        self.now_us = now_us

    def __call__(self) -> int:
        return self.now_us


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def timed(tmp_path: Path, clock: ManualClock) -> Iterator[SpanStore]:
    opened = SpanStore(tmp_path / "timed.db", clock=clock)
    yield opened
    opened.close()


def _rs_trace(window: int, rs: ObjectKey = RS, pod: ObjectKey = POD) -> list[SpanRecord]:
    """One trace: a ReplicaSet's and its Pod's object spans and one request on each."""
    return [
        object_span(rs, window),
        audit_span(rs, window, f"{rs.name}-{window}"),
        object_span(pod, window, root=rs, parent=rs),
        audit_span(pod, window, f"{pod.name}-{window}", root=rs),
    ]


def _rs_objects(rs: ObjectKey = RS, pod: ObjectKey = POD) -> list[KnownObject]:
    return [object_row(rs), object_row(pod, owner_id=ids.object_id(_inc(rs)))]


def _retain(store: SpanStore, *, max_bytes: int | None = None, dry_run: bool = False) -> RetentionReport:
    return store.apply_retention(max_age_us=RETENTION_US, max_bytes=max_bytes, dry_run=dry_run)


def _keys(store: SpanStore) -> set[tuple[str, int]]:
    return {(span.key.name, span.window) for span in store.all_spans()}


def test_a_trace_is_kept_for_the_retention_after_it_arrived_then_removed_whole(
    timed: SpanStore, clock: ManualClock
) -> None:
    other_rs = ObjectKey.make(CLUSTER, "apps", "replicasets", "default", "api-1")
    other_pod = ObjectKey.make(CLUSTER, "", "pods", "default", "api-1-a")
    timed.write(_rs_trace(10), _rs_objects())
    clock.now_us += DAY_US
    timed.write(_rs_trace(10, other_rs, other_pod), _rs_objects(other_rs, other_pod))

    clock.now_us = ARRIVAL_US + RETENTION_US - 1
    assert _retain(timed) == RetentionReport({})
    assert len(timed.all_spans()) == 8 and len(list(timed.objects())) == 4

    clock.now_us = ARRIVAL_US + RETENTION_US + 1
    report = _retain(timed)

    # Object spans and request spans of the trace go together, and the objects left without spans.
    assert report == RetentionReport({CLUSTER: Removed(traces=1, spans=4, objects=2)})
    assert report.total == Removed(1, 4, 2)
    assert _keys(timed) == {("api-1", 10), ("api-1-a", 10)}
    assert {row.key for row in timed.objects()} == {other_rs, other_pod}
    assert _retain(timed) == RetentionReport({})


def test_an_older_incident_replayed_next_to_newer_data_loses_nothing(
    timed: SpanStore, clock: ManualClock
) -> None:
    live_rs = ObjectKey.make("live", "apps", "replicasets", "default", "web-1")
    live_pod = ObjectKey.make("live", "", "pods", "default", "web-1-a")
    old_rs = ObjectKey.make("incident", "apps", "replicasets", "default", "web-1")
    old_pod = ObjectKey.make("incident", "", "pods", "default", "web-1-a")
    live_window = ARRIVAL_US // WINDOW_US
    incident_window = live_window - 120 * DAY_US // WINDOW_US  # four months before the live data
    timed.write(_rs_trace(live_window, live_rs, live_pod), _rs_objects(live_rs, live_pod))
    clock.now_us += HOUR_US
    timed.write(_rs_trace(incident_window, old_rs, old_pod), _rs_objects(old_rs, old_pod))

    clock.now_us += 1
    assert _retain(timed) == RetentionReport({})
    assert len(timed.all_spans()) == 8 and len(list(timed.objects())) == 4

    # A week after the live data arrived, only it has expired; the incident was replayed an hour later.
    clock.now_us = ARRIVAL_US + RETENTION_US + 1
    assert _retain(timed) == RetentionReport({"live": Removed(1, 4, 2)})
    assert {span.key.cluster for span in timed.all_spans()} == {"incident"}

    clock.now_us = ARRIVAL_US + HOUR_US + RETENTION_US + 1
    assert _retain(timed) == RetentionReport({"incident": Removed(1, 4, 2)})
    assert timed.all_spans() == [] and list(timed.objects()) == []


def test_an_event_dated_9999_12_31_decides_nothing_about_other_data(
    timed: SpanStore, clock: ManualClock
) -> None:
    timed.write(_rs_trace(ARRIVAL_US // WINDOW_US), _rs_objects())
    far = ObjectKey.make(CLUSTER, "", "pods", "default", "from-a-broken-clock")
    far_window = 253_402_214_400_000_000 // WINDOW_US  # 9999-12-31T00:00:00Z
    clock.now_us += 1
    timed.write([object_span(far, far_window), audit_span(far, far_window, "far")], [object_row(far)])

    clock.now_us += HOUR_US
    assert _retain(timed) == RetentionReport({})
    assert len(timed.all_spans()) == 6

    # It is data like any other: gone a retention after it arrived, not at the end of time.
    clock.now_us = ARRIVAL_US + 1 + RETENTION_US + 1
    assert _retain(timed) == RetentionReport({CLUSTER: Removed(2, 6, 3)})


def test_a_trace_that_got_a_new_span_recently_is_kept_whole(timed: SpanStore, clock: ManualClock) -> None:
    timed.write(_rs_trace(10), _rs_objects())
    clock.now_us = ARRIVAL_US + RETENTION_US - HOUR_US
    timed.write([audit_span(POD, 10, "late", offset_us=50_000, root=RS)], [object_row(POD)])

    clock.now_us = ARRIVAL_US + RETENTION_US + 1
    assert _retain(timed) == RetentionReport({})
    assert len(timed.all_spans()) == 5

    clock.now_us = ARRIVAL_US + 2 * RETENTION_US
    assert _retain(timed) == RetentionReport({CLUSTER: Removed(1, 5, 2)})


def test_retrace_keeps_the_moved_spans_arrival(timed: SpanStore, clock: ManualClock) -> None:
    # The owner's trace arrived long ago; the pod's spans arrive a week later and are moved into it
    # when the pod's owner becomes known.
    timed.write([object_span(RS, 10), audit_span(RS, 10, "rs")], [object_row(RS)])
    clock.now_us = ARRIVAL_US + RETENTION_US - HOUR_US
    timed.write([object_span(POD, 10), audit_span(POD, 10, "pod")], [object_row(POD)])
    assert timed.retrace([ids.object_id(_inc(POD))], 10, ids.trace_id(_inc(RS), 10)) == 2
    timed.write(
        [object_span(POD, 10, root=RS, parent=RS)], [object_row(POD, owner_id=ids.object_id(_inc(RS)))]
    )
    # The pod's own trace, emptied by the move, is forgotten rather than left for retention to count.
    assert _trace_rows(timed.path) == [(f"{ids.trace_id(_inc(RS), 10):032x}", CLUSTER, 10, clock.now_us)]

    clock.now_us = ARRIVAL_US + RETENTION_US + 1
    assert _retain(timed) == RetentionReport({})
    assert _keys(timed) == {("web-1", 10), ("web-1-a", 10)}

    clock.now_us = ARRIVAL_US + 2 * RETENTION_US
    assert _retain(timed) == RetentionReport({CLUSTER: Removed(1, 4, 2)})
    assert _trace_rows(timed.path) == []


def test_retrace_alone_stamps_the_target_trace(timed: SpanStore, clock: ManualClock) -> None:
    timed.write([object_span(RS, 10)], [object_row(RS)])
    clock.now_us = ARRIVAL_US + RETENTION_US - HOUR_US
    timed.write([audit_span(POD, 10, "pod")], [object_row(POD)])
    timed.retrace([ids.object_id(_inc(POD))], 10, ids.trace_id(_inc(RS), 10))

    clock.now_us = ARRIVAL_US + RETENTION_US + 1
    assert _retain(timed) == RetentionReport({})
    assert len(timed.all_spans()) == 2


def test_a_trace_emptied_by_an_upsert_into_another_root_is_not_counted(
    timed: SpanStore, clock: ManualClock
) -> None:
    timed.write([object_span(POD, 10)], [object_row(POD)])
    timed.write([object_span(POD, 10, root=RS, parent=RS), object_span(RS, 10)], [object_row(RS)])

    clock.now_us += RETENTION_US + 1
    assert _retain(timed) == RetentionReport({CLUSTER: Removed(1, 2, 2)})
    assert _trace_rows(timed.path) == []


def test_objects_go_only_when_nothing_refers_to_them_and_they_were_not_seen_within_the_retention(
    timed: SpanStore, clock: ManualClock
) -> None:
    deploy_b = ObjectKey.make("c2", "apps", "deployments", "default", "api")
    rs_b = ObjectKey.make("c2", "apps", "replicasets", "default", "api-1")
    pod_b = ObjectKey.make("c2", "", "pods", "default", "api-1-a")
    lonely = ObjectKey.make("c2", "", "configmaps", "default", "lonely")
    timed.write(
        [object_span(DEPLOY, 10)],
        [
            object_row(DEPLOY),
            object_row(deploy_b),
            object_row(rs_b, owner_id=ids.object_id(_inc(deploy_b))),
            object_row(lonely),
        ],
    )
    clock.now_us += RETENTION_US - HOUR_US
    # The pod has spans and was noted recently; its owners were not, and have no spans.
    timed.write([object_span(pod_b, 10)], [object_row(pod_b, owner_id=ids.object_id(_inc(rs_b)))])

    clock.now_us = ARRIVAL_US + RETENTION_US + 1
    report = _retain(timed)

    assert report == RetentionReport({CLUSTER: Removed(1, 1, 1), "c2": Removed(0, 0, 1)})
    assert {row.key for row in timed.objects()} == {deploy_b, rs_b, pod_b}


def _trace_rows(path: Path) -> list[tuple[str, str, int, int]]:
    db = sqlite3.connect(path)
    try:
        return [tuple(row) for row in db.execute("SELECT trace_id, cluster, window, arrived_us FROM traces")]
    finally:
        db.close()


def _used_bytes(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        page_size, pages, free = (
            db.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("page_size", "page_count", "freelist_count")
        )
        return int((pages - free) * page_size)
    finally:
        db.close()


def _padded_trace(window: int) -> tuple[list[SpanRecord], list[KnownObject]]:
    pods = [ObjectKey.make(CLUSTER, "", "pods", "default", f"p{i}") for i in range(40)]
    # Large tags overflow to their own pages, so removing a trace frees whole pages.
    spans = [replace(object_span(p, window, root=RS, parent=RS), tags={"pad": "x" * 8000}) for p in pods]
    return [object_span(RS, window), *spans], [object_row(RS), *(object_row(p) for p in pods)]


def test_size_retention_removes_the_least_recently_arrived_traces_first(
    timed: SpanStore, clock: ManualClock
) -> None:
    # Arrival order differs from the order of the data's own times: window 12 arrived first.
    for window in (12, 10, 11):
        timed.write(*_padded_trace(window))
        clock.now_us += HOUR_US
    total = _used_bytes(timed.path)
    limit = int(total * 0.6)

    assert timed.apply_retention(max_age_us=None, max_bytes=total * 2) == RetentionReport({})
    report = timed.apply_retention(max_age_us=None, max_bytes=limit)

    assert report == RetentionReport({CLUSTER: Removed(traces=2, spans=82, objects=0)})
    assert timed.windows_of([ids.object_id(_inc(RS))]) == {11}
    assert _used_bytes(timed.path) <= limit
    # No age limit: objects are kept (they are what name suggestions offer).
    assert len(list(timed.objects())) == 41


def test_size_retention_stops_when_no_trace_is_left(timed: SpanStore) -> None:
    timed.write(_rs_trace(10), _rs_objects())
    assert timed.apply_retention(max_age_us=None, max_bytes=1) == RetentionReport({CLUSTER: Removed(1, 4, 0)})
    assert timed.all_spans() == []


def test_retention_with_no_limits_removes_nothing(timed: SpanStore, clock: ManualClock) -> None:
    timed.write(_rs_trace(10), _rs_objects())
    clock.now_us += 100 * RETENTION_US
    assert timed.apply_retention(max_age_us=None, max_bytes=None) == RetentionReport({})
    assert len(timed.all_spans()) == 4 and len(list(timed.objects())) == 2


def test_a_dry_run_removes_nothing_and_reports_what_the_real_pass_then_removes(
    timed: SpanStore, clock: ManualClock
) -> None:
    other_rs = ObjectKey.make("c2", "apps", "replicasets", "default", "api-1")
    other_pod = ObjectKey.make("c2", "", "pods", "default", "api-1-a")
    timed.write(_rs_trace(10), _rs_objects())
    timed.write(_rs_trace(10, other_rs, other_pod), _rs_objects(other_rs, other_pod))
    for window in (12, 13, 14):
        clock.now_us += HOUR_US
        timed.write(*_padded_trace(window))
    clock.now_us = ARRIVAL_US + RETENTION_US + 1
    limit = int(_used_bytes(timed.path) * 0.5)
    digest, objects, used = timed.digest_rows(), list(timed.objects()), _used_bytes(timed.path)

    dry = _retain(timed, max_bytes=limit, dry_run=True)

    assert timed.digest_rows() == digest and list(timed.objects()) == objects
    assert _used_bytes(timed.path) == used
    assert dry.dry_run and dry.lines()[-1].endswith("would be removed")
    real = _retain(timed, max_bytes=limit)
    assert not real.dry_run
    assert dry.by_cluster == real.by_cluster
    assert real.by_cluster[CLUSTER].traces >= 2 and real.by_cluster["c2"] == Removed(1, 4, 2)
    assert timed.digest_rows() != digest


def test_report_lines() -> None:
    assert RetentionReport({}).lines() == ["nothing to remove"]
    assert RetentionReport({"a": Removed()}, dry_run=True).lines() == ["nothing to remove"]
    report = RetentionReport({"b": Removed(12, 340, 25), "a": Removed(1, 1, 0)})
    assert report.lines() == [
        "cluster a: 1 trace, 1 span, 0 objects removed",
        "cluster b: 12 traces, 340 spans, 25 objects removed",
        "total: 13 traces, 341 spans, 25 objects removed",
    ]
    assert (
        replace(report, dry_run=True).lines()[0] == "cluster a: 1 trace, 1 span, 0 objects would be removed"
    )


# -- files


def test_reopening_keeps_data_and_continues_the_sequence(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    first = SpanStore(path)
    first.write([object_span(POD, 10), audit_span(POD, 10, "a")], [object_row(POD, uid="p")])
    digest = first.digest_rows()
    seq = first.max_seq()
    first.close()

    second = SpanStore(path)
    try:
        assert second.digest_rows() == digest
        assert second.max_seq() == seq
        assert [row.uid for row in second.objects()] == ["p"]
        second.write([audit_span(POD, 10, "b")], [object_row(POD)])
        ((new_seq, span),) = second.spans_after(seq, 100)
        assert new_seq > seq and span.tags[tags.AUDIT_ID] == "b"
    finally:
        second.close()


def test_a_store_is_created_with_its_parent_folders(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "k.db"
    SpanStore(path).close()
    reader = StoreReader(path)
    try:
        assert reader.all_spans() == [] and reader.max_seq() == 0
    finally:
        reader.close()


def test_reading_a_missing_store_says_how_to_make_one(tmp_path: Path) -> None:
    path = tmp_path / "none.db"
    with pytest.raises(errors.StoreError) as caught:
        StoreReader(path)
    message = str(caught.value)
    assert str(path) in message
    assert message.startswith("no store at ") and "kelemetry replay" in message
    assert not path.exists()


def test_opening_a_file_that_is_not_sqlite_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not a database\n" * 200)
    for open_store in (StoreReader, SpanStore):
        with pytest.raises(errors.StoreError, match=r"cannot open store .*notes\.txt"):
            open_store(path)
    assert path.read_text() == "this is not a database\n" * 200


def test_opening_another_apps_sqlite_file_is_refused_and_leaves_it_alone(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    other = sqlite3.connect(path)
    other.execute("CREATE TABLE things (a)")
    other.commit()
    other.close()

    with pytest.raises(errors.StoreError, match=r"other\.db"):
        StoreReader(path)

    # A reader pointed at the wrong file must not convert it (WAL mode is persistent in the file).
    check = sqlite3.connect(path)
    try:
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        check.close()


def test_a_store_of_a_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    SpanStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    for open_store in (StoreReader, SpanStore):
        with pytest.raises(
            errors.StoreError, match=f"written by a newer kelemetry .*schema {SCHEMA_VERSION + 1}"
        ):
            open_store(path)


def make_schema_1_store(path: Path) -> None:
    """A store as kelemetry wrote it before retention counted from arrival (abridged: the tables
    whose shape changed, with a span in them)."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1'), ('seq', '1');
        CREATE TABLE objects (object_id INTEGER PRIMARY KEY, cluster TEXT NOT NULL, grp TEXT NOT NULL,
            resource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL, uid TEXT NOT NULL,
            kind TEXT NOT NULL, version TEXT NOT NULL, owner_id INTEGER, first_us INTEGER, last_us INTEGER);
        CREATE TABLE spans (span_id INTEGER PRIMARY KEY, trace_id TEXT NOT NULL, end_us INTEGER NOT NULL);
        CREATE INDEX spans_by_end ON spans (end_us);
        INSERT INTO objects VALUES (1, 'c1', '', 'pods', 'default', 'web', 'u', 'Pod', 'v1', NULL, 1, 2);
        INSERT INTO spans VALUES (7, 'abc', 2);
        """
    )
    db.commit()
    db.close()


def test_a_store_written_by_an_older_kelemetry_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    make_schema_1_store(path)
    files = sorted(tmp_path.iterdir())
    before = {f: f.read_bytes() for f in files}

    for open_store in (StoreReader, SpanStore):
        with pytest.raises(errors.StoreError) as caught:
            open_store(path)
        message = str(caught.value)
        assert message.startswith(f"{path} was written by an older kelemetry (store schema 1")
        assert "replay the audit logs into a new store" in message and "\n" not in message

    assert sorted(tmp_path.iterdir()) == files
    assert {f: f.read_bytes() for f in files} == before


@pytest.mark.parametrize("open_store", [StoreReader, SpanStore])
def test_a_store_of_schema_2_is_upgraded_in_place_and_keeps_its_data(
    tmp_path: Path, open_store: type[StoreReader]
) -> None:
    path = tmp_path / "v2.db"
    store = SpanStore(path)
    store.write([audit_span(POD, 10, "a")], [object_row(POD)])
    store.close()
    db = sqlite3.connect(path)
    db.execute("DROP INDEX spans_by_time")
    db.execute("DROP TABLE versions")
    db.execute("DROP TABLE version_bases")
    db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    db.commit()
    db.close()

    upgraded = open_store(path)
    try:
        assert [s.tags[tags.AUDIT_ID] for s in upgraded.all_spans()] == ["a"]
    finally:
        upgraded.close()
    db = sqlite3.connect(path)
    indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    db.close()
    assert "spans_by_time" in indexes and version == str(SCHEMA_VERSION)
    assert {"versions", "version_bases"} <= tables and {
        "versions_by_object",
        "versions_by_arrival",
        "version_bases_by_object",
    } <= indexes


def test_a_reader_sees_what_an_open_writer_committed(store: SpanStore) -> None:
    reader = StoreReader(store.path)
    try:
        assert reader.all_spans() == []
        store.write([audit_span(POD, 10, "a")], [object_row(POD)])
        assert [s.tags[tags.AUDIT_ID] for s in reader.all_spans()] == ["a"]
        assert reader.max_seq() == store.max_seq()
    finally:
        reader.close()


_KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from aggregators import ids
    from kelemetry.model.events import TraceSource
    from kelemetry.model.objects import Incarnation, KnownObject, ObjectKey
    from kelemetry.model.spans import SpanRecord
    from kelemetry.store.sqlite import SpanStore

    store = SpanStore(sys.argv[1])
    key = ObjectKey.make("c1", "", "pods", "default", "survivor")
    _inc = lambda k: Incarnation(k, "u")  # noqa: E731
    spans = [
        SpanRecord(ids.trace_id(_inc(key), 10), ids.event_span_id(key, "audit", str(i)),
                   ids.object_span_id(_inc(key), 10), TraceSource.AUDIT, "admin create", 10 + i, 20 + i,
                   key, ids.object_id(_inc(key)), 10, "u", "Pod", "v1", {"audit.id": str(i)})
        for i in range(50)
    ]
    store.write(spans, [KnownObject(ids.object_id(_inc(key)), key, "u", "Pod", "v1")])
    print("acknowledged", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    result = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert result.stdout.strip() == "acknowledged"

    reader = StoreReader(path)
    try:
        spans = reader.all_spans()
        assert sorted(int(s.tags["audit.id"]) for s in spans) == list(range(50))
        assert [row.key.name for row in reader.objects()] == ["survivor"]
        assert reader.max_seq() == 50
    finally:
        reader.close()
    # The writer reopens it and carries on from the recovered sequence.
    writer = SpanStore(path)
    try:
        key = ObjectKey.make("c1", "", "pods", "default", "survivor")
        writer.write([audit_span(key, 10, "after")], [object_row(key)])
        assert writer.max_seq() == 51
    finally:
        writer.close()
