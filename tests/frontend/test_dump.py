"""Dump formats for incident reviews, each rendered from the view of the classic dump (the tree mode
of the whole hierarchy) over a store filled through the real pipeline: the text tree
(frontend.text), Jaeger JSON (frontend.jaegerjson), JSON lines and Parquet (frontend.dump).

Covers: the text tree (object lines with kind, version, namespace, uid and the looked-up marker;
request lines with time, verb, subresource, user, code, duration, ERROR and their log lines; the
tree drawing; warnings), Jaeger JSON ({"data": [trace], ...} as the API answers it), JSON lines
(one object per span) and the Parquet round trip through pyarrow (one row per span, map and list
columns).
"""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aggregators import ids
from frontend import jaegerjson, modes
from frontend.assemble import merge
from frontend.dump import FORMATS, render_jsonl, write_parquet
from frontend.query import present
from frontend.text import format_time, render_tree
from frontend.types import AssembledTrace, ObjectQuery, View
from kelemetry import cli
from kelemetry.model import tags
from kelemetry.model.events import TraceSource
from kelemetry.model.objects import Incarnation, KnownObject, ObjectKey
from kelemetry.model.spans import SpanRecord
from kelemetry.store.sqlite import SpanStore
from tests.conftest import REPO_ROOT
from tests.factories import audit_event, new_pipeline, owner_ref
from tests.lookups import assemble

CLUSTER = "c1"
RS_CONTROLLER = "system:serviceaccount:kube-system:rs-ctl"


def at(second: int, took_us: int = 10_000) -> dict[str, str]:
    return {
        "received": f"2024-05-01T10:00:{second:02d}.000000Z",
        "completed": f"2024-05-01T10:00:{second:02d}.{took_us:06d}Z",
    }


HISTORY = [
    audit_event(resource="replicasets", group="apps", name="web-1", uid="r-1", namespace="prod", **at(0)),
    audit_event(
        name="web-1-a",
        uid="p-a",
        namespace="prod",
        owner=owner_ref("ReplicaSet", "web-1", uid="r-1"),
        user=RS_CONTROLLER,
        **at(1),
    ),
    audit_event(
        verb="update",
        resource="replicasets",
        group="apps",
        name="web-1",
        uid="r-1",
        namespace="prod",
        code=409,
        **at(3),
    ),
    audit_event(
        verb="patch",
        name="web-1-a",
        uid="p-a",
        namespace="prod",
        code=409,
        subresource="status",
        **at(5, 2_500),
    ),
]

TREE = """\
replicasets.apps/web-1  [ReplicaSet, v1, namespace prod, uid r-1]
├── 2024-05-01T10:00:00.000Z  create  by admin  -> 201  (10.0 ms)
├── 2024-05-01T10:00:03.000Z  update  by admin  -> 409  (10.0 ms)  ERROR
│       error: Conflict
└── pods/web-1-a  [Pod, v1, namespace prod, uid p-a]  <- looked up
    ├── 2024-05-01T10:00:01.000Z  create  by system:serviceaccount:kube-system:rs-ctl  -> 201  (10.0 ms)
    └── 2024-05-01T10:00:05.000Z  patch status  by admin  -> 409  (2.5 ms)  ERROR
            error: Conflict
"""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SpanStore]:
    opened = SpanStore(tmp_path / "k.db")
    pipeline = new_pipeline(opened)
    assert pipeline.process_audit(HISTORY, CLUSTER).failed == 0
    yield opened
    opened.close()


VIEW_ID = "ff01ff0000e1e3e70123456789abcdef"


def dumped(trace: AssembledTrace) -> View:
    """The view ``kelemetry dump`` renders without --mode."""
    return present(trace, modes.DUMP, VIEW_ID)


@pytest.fixture
def trace(store: SpanStore) -> AssembledTrace:
    return assemble(store, ObjectQuery(cluster=CLUSTER, resource="pods", name="web-1-a"))


@pytest.fixture
def view(trace: AssembledTrace) -> View:
    return dumped(trace)


def test_the_formats_offered_are_the_ones_the_readme_documents() -> None:
    # The README's `--format` table: one row per format, the format in backticks in the first cell.
    readme = (REPO_ROOT / "README.md").read_text()
    table = readme[readme.index("| `--format` | what you get |") :].split("\n\n", 1)[0]
    documented = [line.split("`")[1] for line in table.splitlines()[2:]]
    assert documented == list(FORMATS)


@pytest.mark.parametrize(
    ("time_us", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1_714_557_600_012_999, "2024-05-01T10:00:00.012Z"),
        (1_714_557_601_999_999, "2024-05-01T10:00:01.999Z"),
    ],
)
def test_format_time_is_utc_with_milliseconds(time_us: int, text: str) -> None:
    assert format_time(time_us) == text


# -- tree


def test_tree_shows_objects_and_requests_with_verb_user_code_and_errors(view: View) -> None:
    assert render_tree(view) == TREE


def test_tree_marks_the_object_that_was_looked_up(store: SpanStore) -> None:
    text = render_tree(
        dumped(assemble(store, ObjectQuery(cluster=CLUSTER, resource="replicasets", name="web-1")))
    )
    lines = text.splitlines()
    assert lines[0] == "replicasets.apps/web-1  [ReplicaSet, v1, namespace prod, uid r-1]  <- looked up"
    assert [line for line in lines if "looked up" in line] == [lines[0]]


def test_tree_of_a_cluster_scoped_object_has_no_namespace(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "k.db")
    try:
        pipeline = new_pipeline(store)
        pipeline.process_audit(
            [
                audit_event(
                    resource="namespaces", name="prod", namespace="", uid="n-1", kind="Namespace", **at(0)
                )
            ],
            CLUSTER,
        )
        text = render_tree(
            dumped(assemble(store, ObjectQuery(cluster=CLUSTER, resource="namespaces", name="prod")))
        )
    finally:
        store.close()
    assert text == (
        "namespaces/prod  [Namespace, v1, uid n-1]  <- looked up\n"
        "└── 2024-05-01T10:00:00.000Z  create  by admin  -> 201  (10.0 ms)\n"
    )


def _object_span(key: ObjectKey, window: int, root: ObjectKey, parent: ObjectKey | None) -> SpanRecord:
    return SpanRecord(
        trace_id=ids.trace_id(Incarnation(root, ""), window),
        span_id=ids.object_span_id(Incarnation(key, ""), window),
        parent_id=None if parent is None else ids.object_span_id(Incarnation(parent, ""), window),
        source=TraceSource.OBJECT,
        name=key.display,
        start_us=window * 1_800_000_000,
        end_us=(window + 1) * 1_800_000_000,
        key=key,
        object_id=ids.object_id(Incarnation(key, "")),
        window=window,
        uid="",
        kind="",
        version="",
        tags={tags.TRACE_SOURCE: "object", tags.PSEUDO: True},
    )


def test_tree_ends_with_the_merge_warnings() -> None:
    old = ObjectKey.make(CLUSTER, "apps", "replicasets", "prod", "web-0")
    new = ObjectKey.make(CLUSTER, "apps", "replicasets", "prod", "web-1")
    pod = ObjectKey.make(CLUSTER, "", "pods", "prod", "web-1-a")
    spans = [
        _object_span(old, 1, old, None),
        _object_span(pod, 1, old, old),
        _object_span(new, 2, new, None),
        _object_span(pod, 2, new, new),
    ]
    text = render_tree(dumped(merge(spans, KnownObject(ids.object_id(Incarnation(pod, "")), pod))))
    assert text.splitlines() == [
        "replicasets.apps/web-1  [namespace prod]",
        "├── pods/web-1-a  [namespace prod]  <- looked up",
        "└── replicasets.apps/web-0  [namespace prod]",
        "warning: replicasets.apps/web-0 was a separate root in an earlier window",
    ]


# -- JSON


def test_json_is_the_apis_traces_response(view: View) -> None:
    raw = jaegerjson.traces([view])
    assert raw.endswith(b"}\n") and raw.count(b"\n") == 1
    document = json.loads(raw)
    assert document == {"data": [document["data"][0]], "total": 1, "limit": 0, "offset": 0, "errors": None}
    (jaeger_trace,) = document["data"]
    assert jaeger_trace == json.loads(json.dumps(jaegerjson.trace(view)))
    assert jaeger_trace["traceID"] == VIEW_ID
    assert len(jaeger_trace["spans"]) == len(view.root.walk()) == 6


def test_render_jsonl_is_one_object_per_span_parents_first(trace: AssembledTrace, view: View) -> None:
    lines = render_jsonl(view).decode().splitlines()
    rows = [json.loads(line) for line in lines]
    nodes = trace.walk()
    assert len(rows) == len(nodes)
    assert [row["span_id"] for row in rows] == [n.span.span_hex for n in nodes]

    root, *rest = rows
    assert root["parent_span_id"] is None and root["operation"] == "replicasets.apps/web-1"
    seen = {root["span_id"]}
    for row in rest:
        assert row["parent_span_id"] in seen
        seen.add(row["span_id"])
    assert {row["trace_id"] for row in rows} == {f"{trace.trace_id:032x}"}
    assert {row["source"] for row in rows} == {"object", "audit"}

    patch = next(row for row in rows if row["operation"].startswith("admin patch"))
    assert patch["error"] is True and patch["outcome"] == "error"
    assert patch["logs"] == [{"kind": "error", "message": "Conflict"}]
    # The same time columns as Parquet: UTC timestamps to the microsecond, and the duration in µs.
    assert (patch["started_at"], patch["ended_at"]) == (
        "2024-05-01T10:00:05.000000Z",
        "2024-05-01T10:00:05.002500Z",
    )
    assert patch["duration_us"] == 2_500
    assert (patch["resource"], patch["namespace"], patch["name"]) == ("pods", "prod", "web-1-a")
    assert (patch["user"], patch["verb"], patch["subresource"], patch["code"]) == (
        "admin",
        "patch",
        "status",
        409,
    )
    pod = next(row for row in rows if row["operation"] == "pods/web-1-a")
    assert (pod["uid"], pod["kind"], pod["api_version"], pod["api_group"]) == ("p-a", "Pod", "v1", "")
    assert (pod["user"], pod["verb"], pod["code"], pod["outcome"], pod["diff"]) == (
        None,
        None,
        None,
        None,
        [],
    )
    assert patch["tags"]["audit.code"] == "409" and patch["tags"]["audit.subresource"] == "status"
    assert all(isinstance(value, str) for row in rows for value in row["tags"].values())


# -- Parquet


def _read(sink: Any) -> pa.Table:
    return pq.read_table(sink)


def _utc(minute: int, second: int = 0, micros: int = 0) -> datetime:
    return datetime(2024, 5, 1, 10, minute, second, micros, tzinfo=UTC)


_RS = ("apps", "replicasets", "web-1", "r-1", "ReplicaSet")
_POD = ("", "pods", "web-1-a", "p-a", "Pod")
_CONFLICT = [{"kind": "error", "message": "Conflict"}]
_WINDOW = (_utc(0), _utc(30))  # object spans cover their 30-minute window
# The dump of pod web-1-a, parents first, as HISTORY makes it: operation, parent's operation, source,
# start, end, (group, resource, name, uid, kind), error, logs, some of the tags.
PARQUET_ROWS = [
    ("replicasets.apps/web-1", None, "object", *_WINDOW, _RS, False, [], {"kelemetry.pseudo": "true"}),
    (
        "admin create",
        "replicasets.apps/web-1",
        "audit",
        _utc(0),
        _utc(0, 0, 10_000),
        _RS,
        False,
        [],
        {"audit.verb": "create", "audit.code": "201", "audit.user": "admin"},
    ),
    (
        "admin update (Conflict)",
        "replicasets.apps/web-1",
        "audit",
        _utc(0, 3),
        _utc(0, 3, 10_000),
        _RS,
        True,
        _CONFLICT,
        {"audit.verb": "update", "audit.code": "409", "error": "true"},
    ),
    (
        "pods/web-1-a",
        "replicasets.apps/web-1",
        "object",
        *_WINDOW,
        _POD,
        False,
        [],
        {"kelemetry.pseudo": "true"},
    ),
    (
        f"{RS_CONTROLLER} create",
        "pods/web-1-a",
        "audit",
        _utc(0, 1),
        _utc(0, 1, 10_000),
        _POD,
        False,
        [],
        {"audit.verb": "create", "audit.user": RS_CONTROLLER},
    ),
    (
        "admin patch status (Conflict)",
        "pods/web-1-a",
        "audit",
        _utc(0, 5),
        _utc(0, 5, 2_500),
        _POD,
        True,
        _CONFLICT,
        {"audit.verb": "patch", "audit.subresource": "status", "audit.code": "409", "error": "true"},
    ),
]


def test_parquet_round_trip_has_one_row_per_span(trace: AssembledTrace, view: View, tmp_path: Path) -> None:
    target = tmp_path / "review.parquet"
    write_parquet(view, str(target))
    table = _read(target)

    assert table.column_names == [
        "trace_id",
        "span_id",
        "parent_span_id",
        "source",
        "operation",
        "started_at",
        "ended_at",
        "duration_us",
        "cluster",
        "api_group",
        "api_version",
        "resource",
        "subresource",
        "namespace",
        "name",
        "uid",
        "kind",
        "user",
        "verb",
        "code",
        "error",
        "outcome",
        "outcome_reason",
        "event_reason",
        "event_type",
        "diff",
        "tags",
        "logs",
    ]
    # The JSON lines dump has the same columns, in the same order.
    assert list(json.loads(render_jsonl(view).splitlines()[0])) == table.column_names
    assert pa.types.is_map(table.schema.field("tags").type)
    assert pa.types.is_list(table.schema.field("logs").type)
    assert table.schema.field("diff").type == pa.list_(pa.string())
    assert table.schema.field("code").type == pa.int32()
    assert table.schema.field("started_at").type == pa.timestamp("us", tz="UTC")

    rows = table.to_pylist()
    operation_of = {row["span_id"]: row["operation"] for row in rows}
    assert [
        (
            row["operation"],
            operation_of[row["parent_span_id"]] if row["parent_span_id"] is not None else None,
            row["source"],
            row["started_at"],
            row["ended_at"],
            (row["api_group"], row["resource"], row["name"], row["uid"], row["kind"]),
            row["error"],
            row["logs"],
            {key: value for key, value in row["tags"] if key in wanted},
        )
        for row, (*_, wanted) in zip(rows, PARQUET_ROWS, strict=True)
    ] == PARQUET_ROWS
    assert [row["duration_us"] for row in rows] == [
        1_800_000_000,
        10_000,
        10_000,
        1_800_000_000,
        10_000,
        2_500,
    ]
    assert [(row["user"], row["verb"], row["code"], row["subresource"]) for row in rows] == [
        (None, None, None, None),
        ("admin", "create", 201, None),
        ("admin", "update", 409, None),
        (None, None, None, None),
        (RS_CONTROLLER, "create", 201, None),
        ("admin", "patch", 409, "status"),
    ]
    assert {(row["trace_id"], row["cluster"], row["namespace"], row["api_version"]) for row in rows} == {
        (f"{trace.trace_id:032x}", CLUSTER, "prod", "v1")
    }


def test_parquet_to_a_file_object_and_its_columns_filter(view: View) -> None:
    sink = io.BytesIO()
    write_parquet(view, sink)
    table = _read(io.BytesIO(sink.getvalue()))
    errors = table.filter(table.column("error")).to_pylist()
    assert sorted(row["operation"] for row in errors) == [
        "admin patch status (Conflict)",
        "admin update (Conflict)",
    ]
    assert set(table.column("name").to_pylist()) == {"web-1", "web-1-a"}
    logs = table.column("logs").to_pylist()
    assert sum(len(entry) for entry in logs) == 2


# -- the columns query naturally


def _sample_rows(store: Path, tmp_path: Path) -> list[dict[str, Any]]:
    target = tmp_path / "demo.parquet"
    argv = ["dump", "--store", str(store), "--cluster", "tracetest", "--resource", "deployments"]
    assert cli.main([*argv, "--name", "demo", "--format", "parquet", "--output", str(target)]) == 0
    rows: list[dict[str, Any]] = pq.read_table(target).to_pylist()
    return rows


def test_the_obvious_questions_are_unquoted_sql(sample_store: Path, tmp_path: Path) -> None:
    """Who changed what, which requests failed, which diffs touched replicas: plain SQL over the
    dump's columns (SQLite here; DuckDB reads the same names), no column needing quotes."""
    rows = _sample_rows(sample_store, tmp_path)
    columns = list(rows[0])
    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE TABLE spans ({', '.join(columns)})")
    db.executemany(
        f"INSERT INTO spans VALUES ({', '.join('?' for _ in columns)})",
        [
            [
                json.dumps(v) if isinstance(v, list) else v.isoformat() if isinstance(v, datetime) else v
                for v in row.values()
            ]
            for row in rows
        ],
    )
    who = db.execute(
        "SELECT user, verb, subresource, count(*) FROM spans"
        " WHERE source = 'audit' AND user NOT LIKE 'system:%' AND resource = 'deployments'"
        " GROUP BY user, verb, subresource ORDER BY 4 DESC, 2"
    ).fetchall()
    assert who == [
        ("admin", "patch", "scale", 2),
        ("admin", "create", None, 1),
        ("admin", "delete", None, 1),
        ("admin", "patch", None, 1),
    ]
    failures = db.execute(
        "SELECT kind, name, verb, code, outcome FROM spans WHERE code >= 400 ORDER BY started_at"
    ).fetchall()
    assert failures and {row[4] for row in failures} == {"benign"}
    assert {(row[2], row[3]) for row in failures} == {("update", 409), ("delete", 404)}
    replicas = db.execute(
        "SELECT name, started_at, user, value FROM spans, json_each(spans.diff)"
        " WHERE value LIKE 'spec.replicas %' AND api_group = 'apps' ORDER BY started_at"
    ).fetchall()
    first = replicas[0]
    assert (first[0], first[2], first[3]) == ("demo", "admin", "spec.replicas 2 -> 4")
