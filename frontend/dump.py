"""The row formats of ``kelemetry dump``: JSON lines and Parquet, one row per span of a view.

The only user of pyarrow. Parquet has one row per span with the object key as columns, so a
review can load it into DuckDB or pandas and filter by namespace, user or verb. The other formats
render the same view: ``tree`` in ``frontend.text``, ``json`` in ``frontend.jaegerjson``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

import orjson

from frontend.types import View
from kelemetry.model.spans import span_tags

FORMATS = ("tree", "json", "jsonl", "parquet")


def _flat_rows(view: View) -> Iterator[dict[str, Any]]:
    """One row per stored span of the view, parents first. The trace id is the stored trace's (of
    the root object's first window), so rows join with what the collector exported."""
    root = view.root.record
    trace_hex = f"{root.trace_id:032x}" if root is not None else view.view_id
    for node, parent in view.root.walk_with_parents():
        span = node.record
        if span is None:
            continue  # made up by a display mode; the row formats take the tree mode (every span stored)
        key = span.key
        yield {
            "trace_id": trace_hex,
            "span_id": span.span_hex,
            "parent_span_id": f"{parent.span_id:016x}" if parent is not None else None,
            "trace_source": span.source.value,
            "operation": span.name,
            "start_us": span.start_us,
            "end_us": span.end_us,
            "duration_us": span.end_us - span.start_us,
            "cluster": key.cluster,
            "group": key.group,
            "version": span.version,
            "resource": key.resource,
            "namespace": key.namespace,
            "name": key.name,
            "uid": span.uid,
            "kind": span.kind,
            "error": span.error,
            "tags": {k: _tag_text(v) for k, v in span_tags(span).items()},
            "logs": [{"kind": log.kind, "message": log.message} for log in span.logs],
        }


def _tag_text(value: object) -> str:
    # JSON spelling for booleans, so `tags['error'] = 'true'` works in DuckDB as it does in Jaeger.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_jsonl(view: View) -> bytes:
    return b"".join(orjson.dumps(row) + b"\n" for row in _flat_rows(view))


def _parquet_schema() -> Any:
    # pyarrow is imported here, not with the module: it costs a third of a second, and only a Parquet
    # dump needs it.
    import pyarrow as pa

    return pa.schema(
        [
            ("trace_id", pa.string()),
            ("span_id", pa.string()),
            ("parent_span_id", pa.string()),
            ("trace_source", pa.string()),
            ("operation", pa.string()),
            ("start", pa.timestamp("us", tz="UTC")),
            ("end", pa.timestamp("us", tz="UTC")),
            ("duration_us", pa.int64()),
            ("cluster", pa.string()),
            ("group", pa.string()),
            ("version", pa.string()),
            ("resource", pa.string()),
            ("namespace", pa.string()),
            ("name", pa.string()),
            ("uid", pa.string()),
            ("kind", pa.string()),
            ("error", pa.bool_()),
            ("tags", pa.map_(pa.string(), pa.string())),
            ("logs", pa.list_(pa.struct([("kind", pa.string()), ("message", pa.string())]))),
        ]
    )


def write_parquet(view: View, sink: str | IO[bytes]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _parquet_schema()
    rows = list(_flat_rows(view))
    columns: dict[str, list[Any]] = {name: [] for name in schema.names}
    for row in rows:
        for name in columns:
            if name == "start":
                columns[name].append(row["start_us"])
            elif name == "end":
                columns[name].append(row["end_us"])
            elif name == "tags":
                columns[name].append(list(row["tags"].items()))
            else:
                columns[name].append(row[name])
    table = pa.table(columns, schema=schema)
    pq.write_table(table, sink)
