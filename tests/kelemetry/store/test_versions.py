"""Object versions in the store (the object at a moment): written with the spans in one
transaction, read back without and with bodies, idempotent on replay (one row per object and
resourceVersion; a complete body replaces a reconstructed one, a request's writer replaces what the
watch alone knew), and removed by retention with their traces and objects."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from aggregators import ids
from kelemetry import errors
from kelemetry.model.versions import DELETED_RV, ObjectVersion
from kelemetry.store import sqlite as sqlite_store
from kelemetry.store.sqlite import SpanStore
from tests.kelemetry.store.test_sqlite import (
    DAY_US,
    POD,
    RETENTION_US,
    RS,
    ManualClock,
    _inc,
    _retain,
    _rs_objects,
    _rs_trace,
    audit_span,
    object_row,
    object_span,
)

POD_ID = ids.object_id(_inc(POD))
BODY = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1-a", "resourceVersion": "10"}}


def version(rv: str, time_us: int, **fields: object) -> ObjectVersion:
    body = fields.pop("body", {**BODY, "metadata": {**BODY["metadata"], "resourceVersion": rv}})
    fields.setdefault("source", "audit")
    return ObjectVersion(POD_ID, "u1", rv, time_us, **fields, body=body)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> SpanStore:
    return SpanStore(tmp_path / "k.db")


def test_versions_are_written_with_the_spans_and_read_back_in_order(store: SpanStore) -> None:
    store.write(
        [audit_span(POD, 10, "a")],
        [object_row(POD)],
        [version("11", 2_000, source="watch"), version("9", 1_000, source="audit", verb="create", user="u")],
    )
    listed = store.versions_of(POD_ID)
    assert [(v.resource_version, v.time_us, v.source) for v in listed] == [
        ("9", 1_000, "audit"),
        ("11", 2_000, "watch"),
    ]
    assert listed[0].verb == "create" and listed[0].user == "u" and listed[0].body is None
    assert store.version_body(POD_ID, "11") == {
        **BODY,
        "metadata": {**BODY["metadata"], "resourceVersion": "11"},
    }
    assert store.version_body(POD_ID, "12") is None
    assert store.versions_of(POD_ID + 1) == []


def test_a_deletion_lists_last_and_may_have_no_body(store: SpanStore) -> None:
    store.write(
        [], [object_row(POD)], [version(DELETED_RV, 500, deleted=True, body=None), version("9", 1_000)]
    )
    listed = store.versions_of(POD_ID)
    assert [v.resource_version for v in listed] == ["9", DELETED_RV] and listed[-1].deleted
    assert store.version_body(POD_ID, DELETED_RV) is None


def test_numeric_versions_sort_as_numbers_at_the_same_time(store: SpanStore) -> None:
    store.write([], [object_row(POD)], [version("100", 5), version("99", 5)])
    assert [v.resource_version for v in store.versions_of(POD_ID)] == ["99", "100"]


def _raw(store: SpanStore) -> list[tuple[object, ...]]:
    db = sqlite3.connect(store.path)
    try:
        return db.execute("SELECT rowid, * FROM versions ORDER BY rowid").fetchall()
    finally:
        db.close()


def test_the_same_versions_written_again_change_no_row(store: SpanStore) -> None:
    batch = [version("9", 1_000, source="audit", span_id=7), version("10", 2_000, complete=False)]
    store.write([], [object_row(POD)], batch)
    before = _raw(store)
    store.write([], [object_row(POD)], batch)
    assert _raw(store) == before


def test_a_complete_body_replaces_a_reconstructed_one_but_not_the_reverse(store: SpanStore) -> None:
    partial = {"kind": "Pod", "spec": {"replicas": 4}}
    full = {"kind": "Pod", "spec": {"replicas": 4, "x": 1}}
    store.write([], [], [version("10", 1_000, complete=False, body=partial, span_id=5, verb="patch scale")])
    store.write([], [], [version("10", 3_000, body=full, source="watch")])
    (only,) = store.versions_of(POD_ID)
    assert only.complete and store.version_body(POD_ID, "10") == full
    # The request that made it still names it: its span, verb and start.
    assert (only.span_id, only.verb, only.time_us) == (5, "patch scale", 1_000)
    store.write([], [], [version("10", 1_000, complete=False, body=partial, span_id=5)])
    assert store.version_body(POD_ID, "10") == full


def test_a_request_names_a_version_the_watch_saw_first(store: SpanStore) -> None:
    store.write([], [], [version("10", 3_000, source="watch", verb="modified")])
    store.write([], [], [version("10", 1_000, source="audit", verb="update", user="admin", span_id=9)])
    (only,) = store.versions_of(POD_ID)
    assert (only.source, only.verb, only.user, only.span_id, only.time_us) == (
        "audit",
        "update",
        "admin",
        9,
        1_000,
    )


def _counting_compressions(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    packed: list[bytes] = []
    real = sqlite_store.compress

    def compress(raw: bytes, base: bytes | None = None) -> bytes:
        packed.append(raw)
        return real(raw, base)

    monkeypatch.setattr(sqlite_store, "compress", compress)
    return packed


def test_a_replay_in_a_new_process_compresses_nothing_and_changes_no_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = [version("9", 1_000, span_id=7), version("10", 2_000, complete=False), version("11", 3_000)]
    first = SpanStore(tmp_path / "k.db")
    first.write([], [object_row(POD)], batch)
    first.close()
    before = _raw(first)
    again = SpanStore(tmp_path / "k.db")  # nothing cached: what is held is read from the file
    packed = _counting_compressions(monkeypatch)
    again.write([], [object_row(POD)], batch)
    assert packed == [] and _raw(again) == before
    # What improves on a held version is still taken: its request, a complete body.
    again.write([], [], [version("11", 3_000, span_id=8), version("10", 2_000, body={"kind": "Pod", "x": 1})])
    assert len(packed) == 1 and again.version_body(POD_ID, "10") == {"kind": "Pod", "x": 1}
    assert {v.resource_version: v.span_id for v in again.versions_of(POD_ID)}["11"] == 8
    assert again.version_body(POD_ID, "11") == version("11", 0).body
    again.close()


def test_a_version_repeated_in_one_batch_is_compressed_once(
    store: SpanStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.write([], [], [version("1", 1, body=_big("1", 1))])
    packed = _counting_compressions(monkeypatch)
    store.write([], [], [version("2", 2, body=_big("2", 2)), version("2", 2, body=_big("2", 2))])
    assert len(packed) == 1 and store.version_body(POD_ID, "2") == _big("2", 2)


def test_the_first_version_is_its_base_and_is_stored_once(store: SpanStore) -> None:
    store.write([], [], [version("1", 1, body=_big("1", 1)), version("2", 2, body=_big("2", 2))])
    db = sqlite3.connect(store.path)
    sizes = dict(db.execute("SELECT rv, LENGTH(body) FROM versions").fetchall())
    db.close()
    assert sizes["1"] == 0 and sizes["2"] > 0
    assert store.version_body(POD_ID, "1") == _big("1", 1) and store.version_body(POD_ID, "2") == _big("2", 2)


def test_versions_age_out_with_their_traces_and_objects(tmp_path: Path) -> None:
    clock = ManualClock()
    store = SpanStore(tmp_path / "timed.db", clock=clock)
    span = _rs_trace(10)[3]  # the Pod's request
    store.write(_rs_trace(10), _rs_objects(), [version("9", 1_000, span_id=span.span_id)])
    clock.now_us += RETENTION_US - 1
    _retain(store)
    assert [v.resource_version for v in store.versions_of(POD_ID)] == ["9"]
    clock.now_us += DAY_US
    _retain(store)
    assert store.versions_of(POD_ID) == []
    store.close()


def test_a_trace_dropped_for_size_takes_its_requests_versions(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "k.db")
    old, new = _rs_trace(10), _rs_trace(11)
    store.write(old, _rs_objects(), [version("9", 1_000, span_id=old[3].span_id)])
    store.write(new, _rs_objects(), [version("12", 9_000, span_id=new[3].span_id)])
    store.apply_retention(max_age_us=None, max_bytes=1)
    # Every trace went (the size cannot be met); so did every version their requests made.
    assert store.versions_of(POD_ID) == []
    store.close()


def test_a_dry_run_keeps_the_versions(tmp_path: Path) -> None:
    clock = ManualClock()
    store = SpanStore(tmp_path / "k.db", clock=clock)
    store.write([object_span(RS, 10)], _rs_objects(), [version("9", 1_000)])
    clock.now_us += 30 * DAY_US
    _retain(store, dry_run=True)
    assert len(store.versions_of(POD_ID)) == 1
    store.close()


def test_a_failed_write_leaves_no_version(store: SpanStore) -> None:
    bad = version("9", 1_000)
    object.__setattr__(bad, "time_us", None)  # NOT NULL: the whole write must fail
    with pytest.raises(errors.StoreError):
        store.write([audit_span(POD, 10, "a")], [object_row(POD)], [bad])
    assert store.versions_of(POD_ID) == [] and store.all_spans() == []


def _big(rv: str, replicas: int) -> dict[str, object]:
    labels = {f"label-{i}": f"value-{i}-of-a-realistic-object" for i in range(40)}
    return {
        **BODY,
        "metadata": {"name": "web-1-a", "resourceVersion": rv, "labels": labels},
        "spec": {"replicas": replicas},
    }


def test_later_versions_are_stored_small_against_the_first_even_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    first = SpanStore(path)
    first.write([], [object_row(POD)], [version("1", 1, body=_big("1", 1))])
    first.close()
    again = SpanStore(path)  # nothing cached: the base is read back from the file
    again.write([], [], [version("2", 2, body=_big("2", 2))])
    assert again.version_body(POD_ID, "1") == _big("1", 1) and again.version_body(POD_ID, "2") == _big("2", 2)
    db = sqlite3.connect(path)
    sizes = dict(db.execute("SELECT rv, LENGTH(body) FROM versions").fetchall())
    (base,) = db.execute("SELECT LENGTH(body) FROM version_bases").fetchone()
    db.close()
    assert sizes["2"] * 4 < base, (sizes, base)
    again.close()


def test_retention_drops_a_base_with_its_last_version_and_a_new_one_is_made(tmp_path: Path) -> None:
    clock = ManualClock()
    store = SpanStore(tmp_path / "k.db", clock=clock)
    store.write([], [object_row(POD)], [version("1", 1, body=_big("1", 1))])
    clock.now_us += RETENTION_US + DAY_US
    _retain(store)
    db = sqlite3.connect(store.path)
    assert db.execute("SELECT COUNT(*) FROM version_bases").fetchone() == (0,)
    store.write([], [object_row(POD)], [version("2", 2, body=_big("2", 2))])
    assert db.execute("SELECT COUNT(*) FROM version_bases").fetchone() == (1,)
    db.close()
    assert store.version_body(POD_ID, "2") == _big("2", 2)
    store.close()


def test_after_a_failed_write_the_next_body_is_still_readable(store: SpanStore) -> None:
    bad = version("9", 1_000, body=_big("9", 9))
    object.__setattr__(bad, "time_us", None)
    with pytest.raises(errors.StoreError):
        store.write([], [], [bad])
    store.write([], [], [version("10", 2_000, body=_big("10", 10))])
    assert store.version_body(POD_ID, "10") == _big("10", 10)


def test_a_body_that_cannot_be_serialised_again_costs_only_that_versions_body(store: SpanStore) -> None:
    # A body read from input but not writable again (nested past orjson's limit, or anything else it
    # refuses) must not fail the write of the spans and versions beside it: the version stays known,
    # without a body, and the next write is untouched.
    store.write([audit_span(POD, 10, "a")], [object_row(POD)], [version("9", 1_000, body={"x": {1, 2}})])
    assert len(store.all_spans()) == 1
    assert [v.resource_version for v in store.versions_of(POD_ID)] == ["9"]
    store.write([audit_span(POD, 10, "b")], [object_row(POD)], [version("10", 2_000)])
    assert [v.resource_version for v in store.versions_of(POD_ID)] == ["9", "10"]
