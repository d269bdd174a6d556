"""Display modes as transforms from an assembled trace to the view tree every output format renders.

An assembled (and scoped) trace becomes a tree of ``ViewSpan`` in ``tree`` form: object spans
with their requests, Events and watched changes as child spans. Each base mode is a short chain
of steps over that tree (each reworks the tree it is given and returns it):

- ``tree``: as is;
- ``timeline``: owned objects removed, every request and Event lifted flat under the root;
- ``tracing``: requests and Events folded into logs of their object's span, durations compacted;
- ``grouped``: as ``tracing``, then the request logs moved into one child span per source
  (Events stay on the object).

Folded log fields follow Go Kelemetry's names (``audit``, ``diff``, ``verbose diff``,
``snapshot``, ``error``, ``event``...), so jq checks written against its output read ours.
"""

from __future__ import annotations

from datetime import UTC, datetime
from hashlib import blake2b

from frontend import outcomes
from frontend.modes import Base
from frontend.types import AssembledTrace, SpanNode, ViewLog, ViewSpan
from kelemetry.model import tags
from kelemetry.model.events import TagValue, TraceSource
from kelemetry.model.spans import SpanRecord, span_tags

GROUP_SOURCE = "group"
# Diff lines of these fields are bookkeeping: shown apart as "verbose diff", or not at all.
_VERBOSE_PATHS = ("metadata.resourceVersion", "metadata.generation")
_HIDDEN_PATHS = ("metadata.managedFields",)
_LOG_PAD_US = 1_000_000


# -- building the tree


def _plain_logs(record: SpanRecord) -> list[ViewLog]:
    return [ViewLog(record.start_us, (("event", log.kind), ("message", log.message))) for log in record.logs]


def _view_span(record: SpanRecord) -> ViewSpan:
    return ViewSpan(
        span_id=record.span_id,
        source=record.source.value,
        operation=record.name,
        start_us=record.start_us,
        end_us=record.end_us,
        tags=span_tags(record),
        logs=_plain_logs(record),
        record=record,
    )


def from_assembled(trace: AssembledTrace) -> ViewSpan:
    """Object spans only; each holds its requests and Events as ``pending`` until a step shows them
    (building spans that folding would throw away cost more than the rest of a view)."""

    def build(node: SpanNode) -> ViewSpan:
        span = _view_span(node.span)
        for child in node.children:
            if child.span.source is TraceSource.OBJECT:
                span.children.append(build(child))
            else:
                span.pending.append(child.span)
        # Here, before any mode shows them, so every mode and output format agrees on what failed.
        span.pending = outcomes.classify(span.pending)
        return span

    root = build(trace.root)
    root.warnings.extend(trace.warnings)
    return root


def expand(root: ViewSpan) -> ViewSpan:
    """Requests and Events become child spans of their object span, before the owned objects."""
    for span in root.walk():
        if span.pending:
            span.children = [*(_view_span(record) for record in span.pending), *span.children]
            span.pending = []
    return root


# -- steps


def _under(path: str, fields: tuple[str, ...]) -> bool:
    return any(path == f or path.startswith((f + ".", f + "[")) for f in fields)


def _split_diff(text: str) -> tuple[str, str]:
    if "metadata." not in text:
        return text, ""
    shown: list[str] = []
    verbose: list[str] = []
    for line in text.splitlines():
        path = line.split(" ", 1)[0]
        if _under(path, _HIDDEN_PATHS):
            continue
        if _under(path, _VERBOSE_PATHS):
            verbose.append(line)
        else:
            shown.append(line)
    return "\n".join(shown), "\n".join(verbose)


def _log_fields(record: SpanRecord) -> list[tuple[str, TagValue]]:
    fields: list[tuple[str, TagValue]] = []
    for log in record.logs:
        if log.kind == "diff":
            shown, verbose = _split_diff(log.message)
            if shown:
                fields.append(("diff", shown))
            if verbose:
                fields.append(("verbose diff", verbose))
        elif log.kind == "verbose":
            fields.append(("note", log.message))
        elif log.kind == "unattributed":
            # Changes that showed up at this request but that it cannot have made (writer unseen).
            fields.append(("unattributed diff", log.message))
        else:
            fields.append((log.kind, log.message))
    return fields


def fold_record(record: SpanRecord) -> ViewLog:
    """One request, Event or watched change as a log of its object's span."""
    t = record.tags
    source = record.source
    fields: list[tuple[str, TagValue]] = [("kelemetry.trace_source", source.value)]
    if source is TraceSource.AUDIT:
        action = f"{t.get(tags.AUDIT_USER, '')} {t.get(tags.AUDIT_VERB, '')}"
        if t.get(tags.AUDIT_SUBRESOURCE):
            action += f" {t[tags.AUDIT_SUBRESOURCE]}"
        fields.append(("audit", action))
        if outcomes.is_benign(record):
            fields.append((outcomes.BENIGN, t.get(outcomes.OUTCOME_REASON, "")))
        for key, name in (
            (tags.AUDIT_CODE, "code"),
            (tags.AUDIT_USER_AGENT, "userAgent"),
            (tags.AUDIT_SOURCE_IP, "sourceIP"),
            (tags.AUDIT_IMPERSONATOR, "impersonator"),
            (tags.AUDIT_ID, "auditId"),
            (tags.RESOURCE_VERSION, "resourceVersion"),
        ):
            if t.get(key) not in (None, ""):
                fields.append((name, t[key]))
        fields.extend(_log_fields(record))
    elif source is TraceSource.EVENT:
        message = next((log.message for log in record.logs if log.kind == "message"), "")
        reason = str(t.get(tags.EVENT_REASON, record.name))
        fields.append(("event", f"{reason}: {message}" if message else reason))
        for key, name in (
            (tags.EVENT_TYPE, "type"),
            (tags.EVENT_SOURCE, "source"),
            (tags.EVENT_COUNT, "count"),
        ):
            if t.get(key) not in (None, ""):
                fields.append((name, t[key]))
        count = t.get(tags.EVENT_COUNT, 1)
        if isinstance(count, int) and count > 1:
            fields.append(("lastSeen", _clock(record.end_us)))
        fields.extend((k, v) for k, v in _log_fields(record) if k != "message")
    else:
        fields.append(("change", record.name))
        fields.extend(_log_fields(record))
    if record.error and not any(key in ("error", "type") for key, _ in fields):
        fields.append(("error", "true"))
    return ViewLog(record.start_us, tuple(fields))


def fold(root: ViewSpan) -> ViewSpan:
    """Requests and Events become logs of the object span they hang under."""
    for span in root.walk():
        if span.pending:
            folded = [fold_record(record) for record in span.pending]
            span.logs = sorted([*span.logs, *folded], key=lambda log: log.timestamp)
            span.pending = []
    return root


def _group_id(parent: int, source: str) -> int:
    digest = blake2b(f"{parent:x}/{source}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") or 1


def group_by_source(root: ViewSpan) -> ViewSpan:
    """Folded request logs move into one child span per source; Events stay on the object."""
    for span in root.walk():
        if not span.is_object:
            continue
        by_source: dict[str, list[ViewLog]] = {}
        stay: list[ViewLog] = []
        for log in span.logs:
            source = str(dict(log.fields).get("kelemetry.trace_source", ""))
            if source and source != TraceSource.EVENT.value:
                by_source.setdefault(source, []).append(log)
            else:
                stay.append(log)
        groups = [
            ViewSpan(
                span_id=_group_id(span.span_id, source),
                source=GROUP_SOURCE,
                operation=source,
                start_us=span.start_us,
                end_us=span.end_us,
                tags={"kelemetry.trace_source": GROUP_SOURCE, "kelemetry.group": source},
                logs=logs,
                service=source,
            )
            for source, logs in by_source.items()
        ]
        span.logs = stay
        span.children = [*groups, *span.children]
    return root


def flatten(root: ViewSpan) -> ViewSpan:
    """Owned objects removed; their requests and Events lifted flat under the root."""
    lifted: list[ViewSpan] = []
    stack = list(root.children)
    while stack:
        span = stack.pop()
        if span.is_object:
            stack.extend(span.children)
        else:
            lifted.append(span)
    lifted.sort(key=lambda span: (span.start_us, span.span_id))
    root.children = lifted
    return root


def compact(root: ViewSpan) -> ViewSpan:
    """Object and group spans shrink from their windows to the time their content covers."""

    # Children before parents, without recursion: hierarchies can be deep and wide.
    order = root.walk()
    for span in reversed(order):
        if span.is_object or span.source == GROUP_SOURCE:
            bounds = [(c.start_us, c.end_us) for c in span.children]
            bounds.extend((log.timestamp, log.timestamp + _LOG_PAD_US) for log in span.logs)
            if bounds:
                span.start_us = min(start for start, _ in bounds)
                span.end_us = max(end for _, end in bounds)
    pad = (root.end_us - root.start_us) // 20
    root.start_us -= pad
    root.end_us += pad
    return root


def name_spans(root: ViewSpan) -> ViewSpan:
    """Service = resource (with the cluster where it changes), operation = namespace/name."""

    stack: list[tuple[ViewSpan, str]] = [(root, "")]
    while stack:
        span, parent_cluster = stack.pop()
        cluster = str(span.tags.get(tags.CLUSTER, parent_cluster))
        if span.is_object and span.record is not None:
            key = span.record.key
            span.service = key.resource if cluster == parent_cluster else f"{cluster} {key.resource}"
            span.operation = f"{key.namespace}/{key.name}" if key.namespace else key.name
        elif not span.service:
            span.service = span.source
        stack.extend((child, cluster) for child in span.children)
    return root


STEPS = {
    Base.TREE: (expand, name_spans),
    Base.TIMELINE: (expand, flatten, name_spans),
    Base.TRACING: (fold, compact, name_spans),
    Base.GROUPED: (fold, group_by_source, compact, name_spans),
}


def apply(trace: AssembledTrace, base: Base) -> ViewSpan:
    root = from_assembled(trace)
    for step in STEPS[base]:
        root = step(root)
    return root


def _clock(time_us: int) -> str:
    return datetime.fromtimestamp(time_us / 1_000_000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
