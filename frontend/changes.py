"""Browsing what changed: the requests, Events and watched changes of a cluster or namespace over a
time range, newest first, as rows a person reads in an incident ("who did what to which object, and
what did it change?").

Pure: the backend finds the spans (``frontend.backend``); this module says what a query is, turns a
span into a row (the API's and ``kelemetry changes --format json``'s, byte for byte) or a line of
text, and pages with a cursor that stays put while new activity arrives (the start and span id of
the last row shown, not an offset).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Required, TypedDict
from urllib.parse import urlencode

from frontend.outcomes import OUTCOME
from frontend.spanfacts import ObjectJson, format_time
from kelemetry import errors
from kelemetry.model import tags
from kelemetry.model.events import TraceSource
from kelemetry.model.spans import SpanRecord

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
DIFF_LINES = 3
"""Diff lines a row carries; the count says how many there were."""
DETAIL_CHARS = 120
"""A text line's detail (diff line or message) is cut here; --format json has it whole."""
MINUTE_US = 60_000_000
MAX_BUCKETS = 720
"""A histogram over a long range widens its buckets (whole minutes) rather than send thousands."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page starts: just after the row with this start and span id."""

    start_us: int
    span_id: int

    def encode(self) -> str:
        return f"{self.start_us}-{self.span_id:016x}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        start, sep, span = text.strip().partition("-")
        try:
            if not sep or not start.isdigit() or len(span) != 16:
                raise ValueError(text)
            return cls(int(start), int(span, 16))
        except ValueError:
            raise errors.InputError(
                f"invalid cursor {text!r}: pass the 'next' value of the previous page as it was"
            ) from None


@dataclass(frozen=True, slots=True)
class ChangeQuery:
    """Filters of the changes list; None (or False) leaves a field unfiltered."""

    cluster: str | None = None
    group: str | None = None
    resource: str | None = None
    namespace: str | None = None
    user: str | None = None
    verb: str | None = None
    errors_only: bool = False
    start_us: int | None = None
    end_us: int | None = None
    limit: int = DEFAULT_LIMIT
    cursor: Cursor | None = None

    def checked(self) -> ChangeQuery:
        """The query, refused with a reason when it cannot be answered."""
        if self.start_us is not None and self.end_us is not None and self.start_us > self.end_us:
            raise errors.InputError("start is after end")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise errors.InputError(f"limit must be between 1 and {MAX_LIMIT}, not {self.limit}")
        return self


@dataclass(frozen=True, slots=True)
class ChangePage:
    spans: tuple[SpanRecord, ...]
    next: Cursor | None
    """Where the following page starts; None when this one is the last."""


@dataclass(frozen=True, slots=True)
class Bucket:
    start_us: int
    requests: int
    events: int
    changes: int
    warnings: int
    errors: int


def bucket_us_for(start_us: int | None, end_us: int | None) -> int:
    """One minute, or as many whole minutes as keep a range within ``MAX_BUCKETS``."""
    if start_us is None or end_us is None or end_us <= start_us:
        return MINUTE_US
    minutes = -(-(end_us - start_us) // (MINUTE_US * MAX_BUCKETS))
    return max(1, minutes) * MINUTE_US


# -- rows


class DiffJson(TypedDict):
    lines: list[str]
    count: int


class ChangeRow(TypedDict):
    time: int
    """Start of the request, Event or change, µs since the epoch."""
    timestamp: str
    cluster: str
    object: ObjectJson
    source: str
    user: str | None
    verb: str | None
    subresource: str | None
    code: int | None
    eventType: str | None
    reason: str | None
    result: str
    error: bool
    outcome: str | None
    """``benign`` for a failure that is Kubernetes working as designed (``frontend.outcomes``)."""
    diff: DiffJson | None
    message: str | None
    spanId: str
    link: str


class BucketJson(TypedDict):
    start: int
    requests: int
    events: int
    changes: int
    warnings: int
    errors: int


class ChangesJson(TypedDict, total=False):
    data: Required[list[ChangeRow]]
    next: Required[str | None]
    """The cursor of the next page; null on the last one."""
    bucket: int
    """The histogram's bucket length, µs (a minute, or whole minutes over a long range)."""
    histogram: list[BucketJson]


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def _logs(span: SpanRecord, kind: str) -> list[str]:
    return [log.message for log in span.logs if log.kind == kind]


def _result(span: SpanRecord, code: int | None, event_type: str | None, reason: str | None) -> str:
    if span.source is TraceSource.EVENT:
        return " ".join(part for part in (event_type, reason) if part) or "Event"
    if code is not None:
        return str(code)
    if span.source is TraceSource.GAP:
        return f"gap {_text(span.tags.get(tags.GAP_REASON)) or ''}".rstrip()
    return "watched" if span.source is TraceSource.CHANGE else ""


def link_of(span: SpanRecord) -> str:
    """The page of the object's trace around the moment of this row (``/redirect``)."""
    key = span.key
    params = {
        "cluster": key.cluster,
        "group": key.group,
        "resource": key.resource,
        "namespace": key.namespace,
        "name": key.name,
        "ts": str(span.start_us),
    }
    if span.uid:
        # A name deleted and created again: the trace of the object this row happened to.
        params["uid"] = span.uid
    return "/redirect?" + urlencode(params)


def row_of(span: SpanRecord) -> ChangeRow:
    key = span.key
    code_tag = span.tags.get(tags.AUDIT_CODE)
    code = code_tag if isinstance(code_tag, int) and not isinstance(code_tag, bool) else None
    event_type = _text(span.tags.get(tags.EVENT_TYPE))
    reason = _text(span.tags.get(tags.EVENT_REASON))
    verb = _text(span.tags.get(tags.AUDIT_VERB) or span.tags.get(tags.CHANGE_VERB))
    diff_lines = [line for message in _logs(span, "diff") for line in message.splitlines() if line]
    # An Event's message, else why a request failed.
    message = next(iter(_logs(span, "message") + _logs(span, "error") + _logs(span, "response")), None)
    outcome = _text(span.tags.get(OUTCOME))
    return {
        "time": span.start_us,
        "timestamp": format_time(span.start_us),
        "cluster": key.cluster,
        "object": {
            "cluster": key.cluster,
            "group": key.group,
            "resource": key.resource,
            "namespace": key.namespace,
            "name": key.name,
            "uid": span.uid,
            "kind": span.kind,
        },
        "source": span.source.value,
        "user": _text(span.tags.get(tags.AUDIT_USER)),
        "verb": verb,
        "subresource": _text(span.tags.get(tags.AUDIT_SUBRESOURCE)),
        "code": code,
        "eventType": event_type,
        "reason": reason,
        "result": _result(span, code, event_type, reason) + (f" {outcome}" if outcome else ""),
        "error": span.error,
        "outcome": outcome,
        "diff": {"lines": diff_lines[:DIFF_LINES], "count": len(diff_lines)} if diff_lines else None,
        "message": message,
        "spanId": span.span_hex,
        "link": link_of(span),
    }


def bucket_json(bucket: Bucket) -> BucketJson:
    return {
        "start": bucket.start_us,
        "requests": bucket.requests,
        "events": bucket.events,
        "changes": bucket.changes,
        "warnings": bucket.warnings,
        "errors": bucket.errors,
    }


def object_text(row: ChangeRow) -> str:
    obj = row["object"]
    resource = f"{obj['resource']}.{obj['group']}" if obj["group"] else obj["resource"]
    where = f"{obj['namespace']}/" if obj["namespace"] else ""
    return f"{resource} {where}{obj['name']}"


def line_of(row: ChangeRow) -> str:
    """One line of ``kelemetry changes``: time, cluster, object, who, what, result, first detail."""
    verb = row["verb"] or ("event" if row["source"] == TraceSource.EVENT.value else row["source"])
    if row["subresource"]:
        verb += f"/{row['subresource']}"
    who = row["user"] or ("(watched)" if row["source"] == TraceSource.CHANGE.value else "-")
    if row["diff"]:
        more = row["diff"]["count"] - 1
        detail = row["diff"]["lines"][0] + (f" (+{more} more)" if more else "")
    else:
        detail = " ".join((row["message"] or "").split())
    if len(detail) > DETAIL_CHARS:
        detail = detail[: DETAIL_CHARS - 1] + "…"
    fields = [row["timestamp"], row["cluster"], object_text(row), who, verb, row["result"] or "-", detail]
    return "  ".join(field for field in fields if field)
