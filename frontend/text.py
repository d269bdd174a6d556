"""The ``tree`` dump format: a view as readable text.

Two layouts of the same view tree: ``render_tree``, the classic drawing that ``kelemetry dump``
prints without ``--mode`` (the ``tree`` mode of the full hierarchy), and ``render_outline``, what it
prints with ``--mode`` (any display mode, folded logs included).

Both are meant to be read, so by default they abbreviate what would drown the story: a snapshot
(the whole object, on delete) becomes a one-line summary, long diff values and messages are cut
with "…", and a long diff shows its first lines and how many more there are. ``full=True``
(``dump --full``) prints everything as stored.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from frontend import outcomes
from frontend.types import View, ViewLog, ViewSpan
from kelemetry.model import tags
from kelemetry.model.events import TraceSource

# A change that showed up at a request but that the request cannot have made (its writer was not seen).
LOG_LABELS = {"unattributed": "changed before it, not by it"}


# Abbreviation limits of the readable layouts (characters, lines).
VALUE_CHARS = 80
LINE_CHARS = 200
DIFF_LINES = 12
ELLIPSIS = "…"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def _short_diff_line(line: str) -> str:
    """``path old -> new`` with each value cut to ``VALUE_CHARS``; the path is always kept whole."""
    if len(line) <= LINE_CHARS // 2:
        return line
    path, _, values = line.partition(" ")
    old, arrow, new = values.partition(" -> ")
    if not arrow:
        return _cut(line, LINE_CHARS)
    return f"{path} {_cut(old, VALUE_CHARS)} -> {_cut(new, VALUE_CHARS)}"


def _short_diff(text: str) -> list[str]:
    lines = [_short_diff_line(line) for line in text.splitlines()]
    if len(lines) > DIFF_LINES:
        hidden = len(lines) - (DIFF_LINES - 1)
        lines = [*lines[: DIFF_LINES - 1], f"{ELLIPSIS} {hidden} more lines (--full shows them)"]
    return lines


def _dig(body: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(body, dict):
            return None
        body = body.get(part)
    return body


def snapshot_summary(text: str) -> str:
    """One line for a snapshot: what the object was when it went (kind, name, version, phase, the
    deletion it was waiting for), and the size of what ``--full`` shows."""
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError:
        return _cut(text.replace("\n", " "), LINE_CHARS)
    if not isinstance(body, dict):
        return _cut(text, LINE_CHARS)
    found = body.get("metadata")
    meta: dict[str, Any] = found if isinstance(found, dict) else {}
    name = str(meta.get("name", ""))
    if meta.get("namespace"):
        name = f"{meta['namespace']}/{name}"
    parts = [f"{body.get('kind', 'object')} {name}".strip()]
    for label, value in (
        ("resourceVersion", meta.get("resourceVersion")),
        ("generation", meta.get("generation")),
        ("deletionTimestamp", meta.get("deletionTimestamp")),
        ("phase", _dig(body, "status", "phase")),
        ("node", _dig(body, "spec", "nodeName")),
        ("replicas", _dig(body, "spec", "replicas")),
    ):
        if value not in (None, ""):
            parts.append(f"{label} {value}")
    return f"{', '.join(parts)} ({len(text):,} chars as JSON; --full shows it)"


def log_lines(kind: str, message: str, *, full: bool = False) -> list[str]:
    """A log's text as the readable layouts print it: as stored with ``full``, else abbreviated."""
    if full:
        return message.split("\n")
    if kind == "snapshot":
        return [snapshot_summary(message)]
    if kind in ("diff", "unattributed", "verbose diff", "unattributed diff"):
        return _short_diff(message)
    return [_cut(line, LINE_CHARS) for line in message.split("\n")]


def format_time(time_us: int) -> str:
    moment = datetime.fromtimestamp(time_us / 1_000_000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _spans_clusters(view: View) -> bool:
    """Whether the view's objects come from more than one cluster: only then do rows name theirs
    (two member copies of a federated Deployment otherwise read the same)."""
    clusters: set[str] = set()
    stack = [view.root]
    while stack:
        node = stack.pop()
        if node.is_object and node.record is not None:
            clusters.add(node.record.key.cluster)
            if len(clusters) > 1:
                return True
        stack.extend(node.children)
    return False


def render_tree(view: View, *, full: bool = False) -> str:
    """The classic layout: drawn as a tree, objects with their kind, version, namespace and uid (the
    looked-up one marked), requests, Events and changes one line each with their logs below; the
    merge warnings last. Meant for ``tree``-mode views, where every request is a span of its own.
    Long logs are abbreviated unless ``full``."""
    lines: list[str] = []
    name_cluster = _spans_clusters(view)

    def logs_text(kind: str, message: str, label: str) -> str:
        first, *rest = log_lines(kind, message, full=full)
        return "".join(f"\n{text}" for text in (f"{label}: {first}", *rest))

    def describe(node: ViewSpan) -> str:
        span = node.record
        if span is None:
            return f"{format_time(node.start_us)}  {node.service}: {node.operation}"
        if span.source is TraceSource.OBJECT:
            details = [d for d in (span.kind, span.version) if d]
            if span.key.namespace:
                details.append(f"namespace {span.key.namespace}")
            if span.uid:
                details.append(f"uid {span.uid}")
            if name_cluster:
                details.append(f"cluster {span.key.cluster}")
            marker = "  <- looked up" if span.object_id == view.target.object_id else ""
            return f"{span.key.display}  [{', '.join(details)}]{marker}"
        if span.source is TraceSource.GAP:
            message = next((log.message for log in span.logs if log.kind == "message"), span.name)
            return f"{format_time(span.start_us)}  GAP  {message}"
        if span.source is TraceSource.CHANGE:
            verb = span.tags.get(tags.CHANGE_VERB, "change")
            text = f"{format_time(span.start_us)}  {verb}  seen by the watch (no audit event)"
            for log in span.logs:
                text += logs_text(log.kind, log.message, log.kind)
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
                text += logs_text(log.kind, log.message, log.kind)
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
        elif outcomes.is_benign(span):
            text += f"\nbenign: {span.tags.get(outcomes.OUTCOME_REASON, '')}"
        for log in span.logs:
            text += logs_text(log.kind, log.message, LOG_LABELS.get(log.kind, log.kind))
        return text

    def visit(node: ViewSpan, prefix: str, is_last: bool, is_root: bool) -> None:
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

    visit(view.root, "", True, True)
    for warning in view.root.warnings:
        lines.append(f"warning: {warning}")
    return "\n".join(lines) + "\n"


_HEADLINE_FIELDS = ("audit", "event", "change")
_SKIPPED_FIELDS = ("kelemetry.trace_source",)


def _view_log_lines(log: ViewLog, full: bool) -> list[str]:
    fields = dict(log.fields)
    headline = next((str(fields[k]) for k in _HEADLINE_FIELDS if k in fields), "")
    if not headline and "event" not in fields:
        headline = str(fields.get("message", ""))
    lines = [f"{format_time(log.timestamp)}  {headline}".rstrip()]
    for key, value in log.fields:
        if key in _SKIPPED_FIELDS or str(value) == headline:
            continue
        # Tree and timeline views carry a log as event=<kind>, message=<text>.
        kind = str(fields["event"]) if key == "message" and "event" in fields else key
        shown = log_lines(kind, str(value), full=full)
        if len(shown) > 1:
            lines.append(f"  {key}:")
            lines.extend(f"    {line}" for line in shown)
        else:
            lines.append(f"  {key}: {shown[0] if shown else ''}")
    return lines


def render_outline(view: View, *, full: bool = False) -> str:
    """The layout of ``dump --mode``: each span indented under its parent, then its logs (in
    ``tracing`` and ``grouped``, the requests and Events folded into them), warnings after the span.
    Long values are abbreviated unless ``full``."""
    lines: list[str] = []
    name_cluster = _spans_clusters(view)
    stack: list[tuple[ViewSpan, int]] = [(view.root, 0)]
    while stack:
        span, depth = stack.pop()
        pad = "    " * depth
        if span.is_object and span.record is not None:
            record = span.record
            cluster = f"cluster {record.key.cluster}" if name_cluster else ""
            details = ", ".join(d for d in (record.kind, record.uid and f"uid {record.uid}", cluster) if d)
            head = f"{record.key.display}  [{details}]" if details else record.key.display
        else:
            head = f"{format_time(span.start_us)}  {span.service}: {span.operation}"
        lines.append(pad + head)
        for warning in span.warnings:
            lines.append(f"{pad}  warning: {warning}")
        for log in span.logs:
            lines.extend(f"{pad}  {line}" for line in _view_log_lines(log, full))
        stack.extend((child, depth + 1) for child in reversed(span.children))
    return "\n".join(lines) + "\n"
