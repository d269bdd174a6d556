"""The row formats of ``kelemetry dump``: JSON lines and Parquet, one row per span of a view.

The only user of pyarrow. Both formats have the same columns, named so the obvious queries need no
quoting in DuckDB, SQLite or pandas (``api_group``, not ``group``; ``started_at``/``ended_at``, not
``start``/``end``): the object key, the request's ``user``, ``verb``, ``subresource`` and ``code``
(an integer), the trace ``source``, the ``outcome`` (``error`` or ``benign``), an Event's reason
and type, the ``diff`` lines as a list, then every tag and log. Times are the same in both: UTC
timestamps with microseconds (RFC 3339 text in JSON lines, which DuckDB reads as timestamps) and
``duration_us``. The other formats render the same view: ``tree`` in ``frontend.text``, ``json``
in ``frontend.jaegerjson``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from frontend import outcomes
from frontend.types import View
from kelemetry.model import tags
from kelemetry.model.spans import SpanRecord, span_tags

FORMATS = ("tree", "json", "jsonl", "parquet")
TIME_COLUMNS = ("started_at", "ended_at")


def _code(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _text(span: SpanRecord, key: str) -> str | None:
    value = span.tags.get(key)
    return None if value in (None, "") else str(value)


def _outcome(span: SpanRecord) -> str | None:
    if span.error:
        return "error"
    return outcomes.BENIGN if outcomes.is_benign(span) else None


def _flat_rows(view: View) -> Iterator[dict[str, Any]]:
    """One row per stored span of the view, parents first, times in µs. The trace id is the stored
    trace's (of the root object's first window), so rows join with what the collector exported."""
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
            "source": span.source.value,
            "operation": span.name,
            "started_at": span.start_us,
            "ended_at": span.end_us,
            "duration_us": span.end_us - span.start_us,
            "cluster": key.cluster,
            "api_group": key.group,
            "api_version": span.version,
            "resource": key.resource,
            "subresource": _text(span, tags.AUDIT_SUBRESOURCE),
            "namespace": key.namespace,
            "name": key.name,
            "uid": span.uid,
            "kind": span.kind,
            "user": _text(span, tags.AUDIT_USER),
            "verb": _text(span, tags.AUDIT_VERB) or _text(span, tags.CHANGE_VERB),
            "code": _code(span.tags.get(tags.AUDIT_CODE)),
            "error": span.error,
            "outcome": _outcome(span),
            "outcome_reason": _text(span, outcomes.OUTCOME_REASON),
            "event_reason": _text(span, tags.EVENT_REASON),
            "event_type": _text(span, tags.EVENT_TYPE),
            "diff": [line for log in span.logs if log.kind == "diff" for line in log.message.splitlines()],
            "tags": {k: _tag_text(v) for k, v in span_tags(span).items()},
            "logs": [{"kind": log.kind, "message": log.message} for log in span.logs],
        }


def _tag_text(value: object) -> str:
    # JSON spelling for booleans, so `tags['error'] = 'true'` works in DuckDB as it does in Jaeger.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _rfc3339(time_us: int) -> str:
    return datetime.fromtimestamp(time_us / 1_000_000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def render_jsonl(view: View) -> bytes:
    lines = []
    for row in _flat_rows(view):
        for column in TIME_COLUMNS:
            row[column] = _rfc3339(row[column])
        lines.append(orjson.dumps(row) + b"\n")
    return b"".join(lines)


def _parquet_schema() -> Any:
    # pyarrow is imported here, not with the module: it costs a third of a second, and only a Parquet
    # dump needs it.
    import pyarrow as pa

    return pa.schema(
        [
            ("trace_id", pa.string()),
            ("span_id", pa.string()),
            ("parent_span_id", pa.string()),
            ("source", pa.string()),
            ("operation", pa.string()),
            ("started_at", pa.timestamp("us", tz="UTC")),
            ("ended_at", pa.timestamp("us", tz="UTC")),
            ("duration_us", pa.int64()),
            ("cluster", pa.string()),
            ("api_group", pa.string()),
            ("api_version", pa.string()),
            ("resource", pa.string()),
            ("subresource", pa.string()),
            ("namespace", pa.string()),
            ("name", pa.string()),
            ("uid", pa.string()),
            ("kind", pa.string()),
            ("user", pa.string()),
            ("verb", pa.string()),
            ("code", pa.int32()),
            ("error", pa.bool_()),
            ("outcome", pa.string()),
            ("outcome_reason", pa.string()),
            ("event_reason", pa.string()),
            ("event_type", pa.string()),
            ("diff", pa.list_(pa.string())),
            ("tags", pa.map_(pa.string(), pa.string())),
            ("logs", pa.list_(pa.struct([("kind", pa.string()), ("message", pa.string())]))),
        ]
    )


def write_parquet(view: View, sink: str | IO[bytes]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _parquet_schema()
    columns: dict[str, list[Any]] = {name: [] for name in schema.names}
    for row in _flat_rows(view):
        for name, values in columns.items():
            values.append(list(row["tags"].items()) if name == "tags" else row[name])
    table = pa.table(columns, schema=schema)
    pq.write_table(table, sink)
