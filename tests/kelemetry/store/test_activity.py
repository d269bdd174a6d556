"""Browsing the store by time (StoreReader.activity, activity_histogram, recent_objects,
activity_bounds) on a real SQLite file.

Covers: newest first without object spans; each filter alone (cluster, group, resource, namespace,
user, verb of a request or of a watched change, errors only, start and end inclusive); paging with
the (start, span id) cursor through ties at one start and span ids on both sides of 2^63, unmoved by
newer writes; per-minute histogram counts (requests, Events, changes, Warnings, errors) under the
same filters; recent objects ordered by last activity; and that SQLite answers the browsing
queries through the spans_by_time index rather than a table scan.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from kelemetry.model import tags
from kelemetry.model.events import Log, TagValue, TraceSource
from kelemetry.model.objects import KnownObject, ObjectKey
from kelemetry.model.spans import SpanRecord
from kelemetry.store.sqlite import SpanStore, StoreReader

MINUTE = 60_000_000
T0 = 1_714_557_600_000_000  # 2024-05-01T10:00:00Z, a whole minute
DEPLOY = ObjectKey.make("c1", "apps", "deployments", "default", "web")
POD = ObjectKey.make("c1", "", "pods", "default", "web-1")
OTHER_NS = ObjectKey.make("c1", "", "pods", "batch", "job-1")
OTHER_CLUSTER = ObjectKey.make("c2", "apps", "deployments", "default", "web")
OBJECT_IDS = {DEPLOY: 11, POD: 12, OTHER_NS: 13, OTHER_CLUSTER: 14}
HIGH = 2**63  # ids at and above this are negative in SQLite's integers


def span(
    span_id: int,
    key: ObjectKey,
    start_us: int,
    source: TraceSource = TraceSource.AUDIT,
    *,
    user: str = "admin",
    verb: str = "patch",
    code: int = 200,
    event_type: str = "Normal",
    error: bool = False,
) -> SpanRecord:
    span_tags: dict[str, TagValue] = {tags.TRACE_SOURCE: source.value}
    if source is TraceSource.AUDIT:
        span_tags.update({tags.AUDIT_USER: user, tags.AUDIT_VERB: verb, tags.AUDIT_CODE: code})
    elif source is TraceSource.EVENT:
        span_tags.update({tags.EVENT_TYPE: event_type, tags.EVENT_REASON: "Reason"})
    elif source is TraceSource.CHANGE:
        span_tags[tags.CHANGE_VERB] = verb
    return SpanRecord(
        trace_id=1,
        span_id=span_id,
        parent_id=None if source is TraceSource.OBJECT else 1000 + OBJECT_IDS[key],
        source=source,
        name=f"{source.value} {span_id}",
        start_us=start_us,
        end_us=start_us + 5_000,
        key=key,
        object_id=OBJECT_IDS[key],
        window=0,
        uid=f"uid-{key.name}",
        kind="Thing",
        version="v1",
        tags=span_tags,
        logs=(Log("diff", "spec.replicas 1 -> 2"),),
        error=error,
    )


SPANS = [
    # Object spans start at their window and are never listed.
    span(1011, DEPLOY, T0, TraceSource.OBJECT),
    span(1012, POD, T0, TraceSource.OBJECT),
    span(1, DEPLOY, T0 + 5_000_000, verb="create", code=201),
    span(
        2, POD, T0 + 20_000_000, user="system:serviceaccount:kube-system:replicaset-controller", verb="create"
    ),
    span(3, POD, T0 + 30_000_000, TraceSource.EVENT, event_type="Warning", error=True),
    span(4, POD, T0 + MINUTE + 1, TraceSource.CHANGE, verb="update"),
    # Three at one start, ids on both sides of 2^63: the id breaks the tie.
    span(HIGH + 7, DEPLOY, T0 + 2 * MINUTE, verb="patch"),
    span(5, DEPLOY, T0 + 2 * MINUTE, verb="patch", code=409, error=True),
    span(HIGH + 2, DEPLOY, T0 + 2 * MINUTE, TraceSource.EVENT),
    span(6, OTHER_NS, T0 + 3 * MINUTE, user="bob", verb="delete"),
    span(7, OTHER_CLUSTER, T0 + 4 * MINUTE, verb="delete"),
]
# Newest first, ties by the id as SQLite holds it (signed: ids from 2^63 up come after 5).
ORDER = [7, 6, 5, HIGH + 7, HIGH + 2, 4, 3, 2, 1]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SpanStore]:
    opened = SpanStore(tmp_path / "k.db")
    opened.write(
        SPANS,
        [
            KnownObject(object_id, key, f"uid-{key.name}", "Thing", "v1")
            for key, object_id in OBJECT_IDS.items()
        ],
    )
    yield opened
    opened.close()


def ids_of(spans: list[SpanRecord]) -> list[int]:
    return [s.span_id for s in spans]


def test_activity_lists_requests_events_and_changes_newest_first_without_object_spans(
    store: SpanStore,
) -> None:
    assert ids_of(store.activity(limit=100)) == ORDER
    assert ids_of(store.activity(limit=3)) == ORDER[:3]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"cluster": "c2"}, [7]),
        ({"cluster": "c1", "namespace": "batch"}, [6]),
        ({"resource": "pods"}, [6, 4, 3, 2]),
        ({"resource": "deployments", "group": "apps", "cluster": "c1"}, [5, HIGH + 7, HIGH + 2, 1]),
        ({"group": ""}, [6, 4, 3, 2]),
        ({"user": "admin"}, [7, 5, HIGH + 7, 1]),
        ({"user": "nobody"}, []),
        # A watched change has a verb but no user.
        ({"verb": "update"}, [4]),
        ({"verb": "delete"}, [7, 6]),
        ({"errors_only": True}, [5, 3]),
        ({"start_us": T0 + 2 * MINUTE, "end_us": T0 + 3 * MINUTE}, [6, 5, HIGH + 7, HIGH + 2]),
        ({"end_us": T0 + 20_000_000}, [2, 1]),
        ({"user": "admin", "verb": "patch", "errors_only": True}, [5]),
    ],
)
def test_each_filter_narrows_the_list(
    store: SpanStore, filters: dict[str, object], expected: list[int]
) -> None:
    assert ids_of(store.activity(limit=100, **filters)) == expected  # type: ignore[arg-type]


def test_paging_by_cursor_visits_every_row_once_in_order_through_ties(store: SpanStore) -> None:
    seen: list[int] = []
    before = None
    for _ in range(20):
        page = store.activity(limit=2, before=before)
        if not page:
            break
        seen.extend(ids_of(page))
        before = (page[-1].start_us, page[-1].span_id)
    assert seen == ORDER


def test_a_cursor_is_not_moved_by_activity_written_after_the_first_page(store: SpanStore) -> None:
    first = store.activity(limit=3)
    store.write([span(8, POD, T0 + 10 * MINUTE), span(9, POD, T0 + 90_000_000)])
    after = (first[-1].start_us, first[-1].span_id)
    # The newer row is not on the next page; the one written into the middle of the range is.
    assert ids_of(store.activity(limit=100, before=after)) == [HIGH + 7, HIGH + 2, 9, 4, 3, 2, 1]


def test_histogram_counts_per_minute_with_the_same_filters(store: SpanStore) -> None:
    rows = store.activity_histogram(bucket_us=MINUTE)
    assert rows == [
        # bucket, requests, Events, changes, Warnings, errors
        (T0, 2, 1, 0, 1, 1),
        (T0 + MINUTE, 0, 0, 1, 0, 0),
        (T0 + 2 * MINUTE, 2, 1, 0, 0, 1),
        (T0 + 3 * MINUTE, 1, 0, 0, 0, 0),
        (T0 + 4 * MINUTE, 1, 0, 0, 0, 0),
    ]
    assert store.activity_histogram(bucket_us=MINUTE, cluster="c1", user="admin") == [
        (T0, 1, 0, 0, 0, 0),
        (T0 + 2 * MINUTE, 2, 0, 0, 0, 1),
    ]
    assert store.activity_histogram(bucket_us=5 * MINUTE, resource="pods") == [(T0, 2, 1, 1, 1, 1)]


def test_recent_objects_are_ordered_by_their_last_activity(store: SpanStore) -> None:
    recent = store.recent_objects(limit=10)
    assert [(row.key, last) for row, last in recent] == [
        (OTHER_CLUSTER, T0 + 4 * MINUTE),
        (OTHER_NS, T0 + 3 * MINUTE),
        (DEPLOY, T0 + 2 * MINUTE),
        (POD, T0 + MINUTE + 1),
    ]
    assert [row.key for row, _ in store.recent_objects(cluster="c1", end_us=T0 + MINUTE, limit=10)] == [
        POD,
        DEPLOY,
    ]
    assert [row.key for row, _ in store.recent_objects(limit=1)] == [OTHER_CLUSTER]


def test_activity_bounds_are_the_first_and_last_listed_start(store: SpanStore, tmp_path: Path) -> None:
    assert store.activity_bounds() == (T0 + 5_000_000, T0 + 4 * MINUTE)
    empty = StoreReader(tmp_path / "empty.db", create=True)
    assert empty.activity_bounds() is None
    empty.close()


def test_browsing_queries_walk_the_time_index(store: SpanStore) -> None:
    """Every query of the list and the histogram, with and without filters, is planned on
    spans_by_time: none scans the spans table."""
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    store.activity(limit=5, before=(T0 + MINUTE, 4), cluster="c1", user="admin", errors_only=True)
    store.activity(limit=5, start_us=T0, end_us=T0 + MINUTE)
    store.activity_histogram(bucket_us=MINUTE, namespace="default")
    store.activity_histogram(bucket_us=MINUTE)
    store.activity_bounds()
    store._db.set_trace_callback(None)
    probe = sqlite3.connect(store.path)
    try:
        for sql in statements:
            plan = " / ".join(row[3] for row in probe.execute(f"EXPLAIN QUERY PLAN {sql}"))
            assert "spans_by_time" in plan, (sql, plan)
            # A scan of the table itself names no index; walking the whole index (no range) is allowed.
            for step in plan.split(" / "):
                if step.startswith("SCAN"):
                    assert "spans_by_time" in step, (sql, plan)
    finally:
        probe.close()
    assert len(statements) == 6


def test_user_and_verb_match_whatever_characters_they_hold_and_only_in_their_own_tag(
    store: SpanStore,
) -> None:
    odd = 'jürgen "the admin" \\ o\'brien'
    store.write(
        [span(20, POD, T0 + 9 * MINUTE, user=odd, verb="patch"), span(21, POD, T0 + 9 * MINUTE, user="patch")]
    )
    assert ids_of(store.activity(user=odd, limit=10)) == [20]
    # "patch" as a user is not "patch" as a verb, and the other way round.
    assert ids_of(store.activity(user="patch", limit=10)) == [21]
    assert 21 in ids_of(store.activity(verb="patch", limit=100))
    assert 20 not in ids_of(store.activity(user="admin", limit=100))
