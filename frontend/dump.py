"""Dump formats for incident reviews: a readable tree, Jaeger JSON, JSON lines and Parquet.

The only user of pyarrow. Parquet has one row per span with the object key as columns, so a
review can load it into DuckDB or pandas and filter by namespace, user or verb.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from frontend.assemble import AssembledTrace, SpanNode, to_jaeger
from frontend.transform import ViewLog, ViewSpan
from jaeger import model as jaeger_model
from kelemetry.model import tags
from kelemetry.model.events import TraceSource
from kelemetry.model.spans import span_tags

FORMATS = ("tree", "json", "jsonl", "parquet")
# A change that showed up at a request but that the request cannot have made (its writer was not seen).
LOG_LABELS = {"unattributed": "changed before it, not by it"}


def format_time(time_us: int) -> str:
    moment = datetime.fromtimestamp(time_us / 1_000_000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def render_tree(trace: AssembledTrace) -> str:
    lines: list[str] = []

    def describe(node: SpanNode) -> str:
        span = node.span
        if span.source is TraceSource.OBJECT:
            details = [d for d in (span.kind, span.version) if d]
            if span.key.namespace:
                details.append(f"namespace {span.key.namespace}")
            if span.uid:
                details.append(f"uid {span.uid}")
            marker = "  <- looked up" if span.object_id == trace.target.object_id else ""
            return f"{span.key.display}  [{', '.join(details)}]{marker}"
        if span.source is TraceSource.CHANGE:
            verb = span.tags.get(tags.CHANGE_VERB, "change")
            text = f"{format_time(span.start_us)}  {verb}  seen by the watch (no audit event)"
            for log in span.logs:
                text += f"\n{log.kind}: {log.message}"
            return text
        if span.source is TraceSource.EVENT:
            count = span.tags.get(tags.EVENT_COUNT, 1)
            times = f" x{count}" if isinstance(count, int) and count > 1 else ""
            origin = span.tags.get(tags.EVENT_SOURCE)
            text = (
                f"{format_time(span.start_us)}  Event {span.name} ({span.tags.get(tags.EVENT_TYPE, 'Normal')}"
                f"{times}){' from ' + str(origin) if origin else ''}"
            )
            if span.error:
                text += "  WARNING"
            for log in span.logs:
                text += f"\n{log.kind}: {log.message}"
            return text
        user = span.tags.get(tags.AUDIT_USER, "")
        verb = span.tags.get(tags.AUDIT_VERB, span.name)
        sub = span.tags.get(tags.AUDIT_SUBRESOURCE)
        code = span.tags.get(tags.AUDIT_CODE, "")
        took = (span.end_us - span.start_us) / 1000
        action = f"{verb} {sub}" if sub else str(verb)
        text = f"{format_time(span.start_us)}  {action}  by {user}  -> {code}  ({took:.1f} ms)"
        if span.error:
            text += "  ERROR"
        for log in span.logs:
            text += f"\n{LOG_LABELS.get(log.kind, log.kind)}: {log.message}"
        return text

    def visit(node: SpanNode, prefix: str, is_last: bool, is_root: bool) -> None:
        text = describe(node).split("\n")
        if is_root:
            lines.append(text[0])
            child_prefix = ""
        else:
            lines.append(f"{prefix}{'└── ' if is_last else '├── '}{text[0]}")
            child_prefix = prefix + ("    " if is_last else "│   ")
        for extra in text[1:]:
            lines.append(f"{child_prefix}    {extra}")
        for i, child in enumerate(node.children):
            visit(child, child_prefix, i == len(node.children) - 1, False)

    visit(trace.root, "", True, True)
    for warning in trace.warnings:
        lines.append(f"warning: {warning}")
    return "\n".join(lines) + "\n"


def render_json(trace: AssembledTrace) -> bytes:
    response = jaeger_model.traces_response([to_jaeger(trace)])
    return orjson.dumps(response, option=orjson.OPT_INDENT_2) + b"\n"


def _flat_rows(trace: AssembledTrace) -> Iterator[dict[str, Any]]:
    trace_hex = f"{trace.trace_id:032x}"
    for node, parent in trace.walk_with_parents():
        span = node.span
        key = span.key
        yield {
            "trace_id": trace_hex,
            "span_id": span.span_hex,
            "parent_span_id": f"{parent:016x}" if parent is not None else None,
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


def render_jsonl(trace: AssembledTrace) -> bytes:
    return b"".join(orjson.dumps(row) + b"\n" for row in _flat_rows(trace))


_PARQUET_SCHEMA = pa.schema(
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


def write_parquet(trace: AssembledTrace, sink: str | IO[bytes]) -> None:
    rows = list(_flat_rows(trace))
    columns: dict[str, list[Any]] = {name: [] for name in _PARQUET_SCHEMA.names}
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
    table = pa.table(columns, schema=_PARQUET_SCHEMA)
    pq.write_table(table, sink)


_HEADLINE_FIELDS = ("audit", "event", "change")
_SKIPPED_FIELDS = ("kelemetry.trace_source",)


def _view_log_lines(log: ViewLog) -> list[str]:
    fields = dict(log.fields)
    headline = next((str(fields[k]) for k in _HEADLINE_FIELDS if k in fields), "")
    if not headline and "event" not in fields:
        headline = str(fields.get("message", ""))
    lines = [f"{format_time(log.timestamp)}  {headline}".rstrip()]
    for key, value in log.fields:
        if key in _SKIPPED_FIELDS or str(value) == headline:
            continue
        text = str(value)
        if "\n" in text:
            lines.append(f"  {key}:")
            lines.extend(f"    {line}" for line in text.splitlines())
        else:
            lines.append(f"  {key}: {text}")
    return lines


def render_view_text(root: ViewSpan) -> str:
    """A display mode's view as indented text: each span, then its logs (folded requests, Events)."""
    lines: list[str] = []
    stack: list[tuple[ViewSpan, int]] = [(root, 0)]
    while stack:
        span, depth = stack.pop()
        pad = "    " * depth
        if span.is_object and span.record is not None:
            record = span.record
            details = ", ".join(d for d in (record.kind, record.uid and f"uid {record.uid}") if d)
            head = f"{record.key.display}  [{details}]" if details else record.key.display
        else:
            head = f"{format_time(span.start_us)}  {span.service}: {span.operation}"
        lines.append(pad + head)
        for warning in span.warnings:
            lines.append(f"{pad}  warning: {warning}")
        for log in span.logs:
            lines.extend(f"{pad}  {line}" for line in _view_log_lines(log))
        stack.extend((child, depth + 1) for child in reversed(span.children))
    return "\n".join(lines) + "\n"
