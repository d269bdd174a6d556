"""What the stored spans say, read back as facts: diff lines split into path, old and new; the
request a span records (in the answer shape the explain, rollout and stuck answers share); the
object a span is about; moments as RFC 3339.

Diff values arrive as the collector rendered them (JSON, long ones abbreviated with
``...(N chars)``), so a value is only decoded when it is whole; callers fall back to the text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict

import orjson

from kelemetry.model import tags
from kelemetry.model.events import TraceSource
from kelemetry.model.objects import KnownObject
from kelemetry.model.spans import SpanRecord

ARROW = " -> "
_ABBREVIATED = re.compile(r"\.\.\.\(\d+ chars\)$")


@dataclass(frozen=True, slots=True)
class DiffLine:
    path: str
    old: str
    new: str

    @property
    def text(self) -> str:
        return f"{self.path} {self.old}{ARROW}{self.new}"

    def new_value(self) -> Any:
        return decode(self.new)

    def old_value(self) -> Any:
        return decode(self.old)


class RequestJson(TypedDict):
    """A request as every causal answer shows it. Text fields the audit event did not carry are
    ``""`` (no subresource, no user agent), never null: one request reads the same everywhere."""

    time: str
    time_us: int
    user: str
    user_agent: str
    verb: str
    subresource: str
    code: int | None
    audit_id: str
    span_id: str
    trace_id: str


class ObjectJson(TypedDict):
    cluster: str
    group: str
    resource: str
    namespace: str
    name: str
    kind: str
    uid: str


def decode(text: str) -> Any:
    """A rendered value as JSON; an abbreviated or unreadable value is None (so is ``null``)."""
    if _ABBREVIATED.search(text):
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _path_end(line: str) -> int:
    """Where the path of a diff line ends: the first space outside brackets and quotes (a quoted
    key such as ``["a b"]`` may hold spaces)."""
    depth = 0
    quoted = False
    escaped = False
    for i, char in enumerate(line):
        if quoted:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == " " and depth == 0:
            return i
    return -1


def parse_line(line: str) -> DiffLine | None:
    end = _path_end(line)
    if end <= 0:
        return None
    path, values = line[:end], line[end + 1 :]
    # A JSON value never holds " -> " outside a string, and the old value comes first: the first
    # arrow that leaves a decodable old value (or an abbreviated one) splits the two.
    start = 0
    while True:
        at = values.find(ARROW, start)
        if at < 0:
            return None
        old = values[:at]
        if decode(old) is not None or old == "null" or _ABBREVIATED.search(old):
            return DiffLine(path, old, values[at + len(ARROW) :])
        start = at + 1


def diff_lines(span: SpanRecord) -> Iterator[DiffLine]:
    for log in span.logs:
        if log.kind != "diff":
            continue
        for line in log.message.splitlines():
            parsed = parse_line(line)
            if parsed is not None:
                yield parsed


def format_time(time_us: int) -> str:
    moment = datetime.fromtimestamp(time_us / 1_000_000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def short_time(time_us: int) -> str:
    """``07:23:31.431`` — a moment within an answer whose date is said once."""
    moment = datetime.fromtimestamp(time_us / 1_000_000, tz=UTC)
    return moment.strftime("%H:%M:%S.%f")[:12]


def _text_tag(span: SpanRecord, key: str) -> str | None:
    value = span.tags.get(key)
    return None if value is None or value == "" else str(value)


def is_request(span: SpanRecord) -> bool:
    return span.source is TraceSource.AUDIT


def succeeded(span: SpanRecord) -> bool:
    code = span.tags.get(tags.AUDIT_CODE)
    return not span.error and (not isinstance(code, int) or code < 300)


def audit_code(span: SpanRecord) -> int | None:
    code = span.tags.get(tags.AUDIT_CODE)
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def request_json(span: SpanRecord) -> RequestJson:
    """The one builder of a request's JSON (the chain, blame, rollouts and stuck Pods all use it)."""
    return {
        "time": format_time(span.start_us),
        "time_us": span.start_us,
        "user": _text_tag(span, tags.AUDIT_USER) or "",
        "user_agent": _text_tag(span, tags.AUDIT_USER_AGENT) or "",
        "verb": _text_tag(span, tags.AUDIT_VERB) or "",
        "subresource": _text_tag(span, tags.AUDIT_SUBRESOURCE) or "",
        "code": audit_code(span),
        "audit_id": _text_tag(span, tags.AUDIT_ID) or "",
        "span_id": span.span_hex,
        "trace_id": span.trace_hex,
    }


def who(span: SpanRecord) -> str:
    """``admin (kubectl) patch/scale at 07:23:32.658`` — a request in a line of text."""
    user = _text_tag(span, tags.AUDIT_USER) or "an unknown user"
    agent = (_text_tag(span, tags.AUDIT_USER_AGENT) or "").split("/")[0]
    verb = _text_tag(span, tags.AUDIT_VERB) or "?"
    subresource = _text_tag(span, tags.AUDIT_SUBRESOURCE)
    what = f"{verb}/{subresource}" if subresource else verb
    via = f" ({agent})" if agent and agent != user else ""
    return f"{user}{via} {what} at {short_time(span.start_us)}"


def actor(span: SpanRecord) -> str:
    """``admin (kubectl) patch/scale`` — who made a request, and which."""
    return who(span).rsplit(" at ", 1)[0]


def object_of(span: SpanRecord) -> KnownObject:
    """The object a span is about, as the query side names objects."""
    return KnownObject(span.object_id, span.key, span.uid, span.kind, span.version)


def object_json(row: KnownObject) -> ObjectJson:
    key = row.key
    return {
        "cluster": key.cluster,
        "group": key.group,
        "resource": key.resource,
        "namespace": key.namespace,
        "name": key.name,
        "kind": row.kind,
        "uid": row.uid,
    }


def describe(row: KnownObject) -> str:
    """``Deployment default/demo``."""
    key = row.key
    where = f"{key.namespace}/" if key.namespace else ""
    return f"{row.kind or key.resource} {where}{key.name}"
