"""The audit.k8s.io wire format, decoded once and typed at the edge.

Every field the collector reads is declared here with its type, so a batch with ``"user":
"alice"`` or a list where a string belongs is refused with the path of the bad field before it
is acknowledged, instead of being stored and breaking later. Request and response bodies stay
undecoded (`msgspec.Raw`, a view of the input) until a converted event needs them: most of an
audit stream is never looked inside, and decoding the envelope alone is an order of magnitude
cheaper than decoding whole events. The structs are not tracked by the garbage collector, so
batches waiting in the ingest queue do not slow its passes. Bodies of audit events are not checked
here; whatever they hold is judged when (and if) they are read.
"""

from __future__ import annotations

from typing import Annotated, Any, NamedTuple

import msgspec
import orjson

from kelemetry import errors
from kelemetry.model.times import now_us, parse_time_us

AUDIT_API_VERSIONS = frozenset({"audit.k8s.io/v1", "audit.k8s.io/v1beta1"})
EMPTY = msgspec.Raw()
# How far ahead of this collector's clock an event may be dated: clocks drift, but an event dated
# 9999-12-31 would open a trace window nobody can reach and outlive every query.
FUTURE_SKEW_US = 24 * 3600 * 1_000_000

# Bounds of what the pipeline reads (Kubernetes' own limits, with room): a value past them is a
# faulty or hostile sender, refused with its path rather than stored and carried into every view.
Name = Annotated[str, msgspec.Meta(max_length=253)]
Short = Annotated[str, msgspec.Meta(max_length=64)]
Ident = Annotated[str, msgspec.Meta(max_length=1024)]
Text = Annotated[str, msgspec.Meta(max_length=4096)]
Message = Annotated[str, msgspec.Meta(max_length=65536)]
Time = Annotated[str, msgspec.Meta(max_length=64)]
Groups = Annotated[tuple[Text, ...], msgspec.Meta(max_length=1024)]


class ObjectReference(msgspec.Struct, gc=False, omit_defaults=True):
    resource: Name = ""
    namespace: Name = ""
    name: Name = ""
    uid: Name = ""
    apiGroup: Name = ""
    apiVersion: Name = ""
    resourceVersion: Name = ""
    subresource: Name = ""


class UserInfo(msgspec.Struct, gc=False, omit_defaults=True):
    username: Text = ""
    uid: Text = ""
    groups: Groups = ()


class StatusDetails(msgspec.Struct, gc=False, omit_defaults=True):
    name: Text = ""
    kind: Name = ""
    uid: Name = ""


class ResponseStatus(msgspec.Struct, gc=False, omit_defaults=True):
    code: Annotated[int, msgspec.Meta(ge=0, le=999)] | None = None
    status: Name = ""
    reason: Name = ""
    message: Message = ""
    details: StatusDetails | None = None


class AuditEvent(msgspec.Struct, gc=False, omit_defaults=True):
    """One audit Event (v1 and v1beta1 share every field read here; v1beta1 adds ``timestamp``)."""

    auditID: Ident
    stage: Short
    verb: Short
    kind: Short = ""
    apiVersion: Short = ""
    user: UserInfo | None = None
    impersonatedUser: UserInfo | None = None
    userAgent: Text = ""
    requestURI: Text = ""
    sourceIPs: Annotated[tuple[Short, ...], msgspec.Meta(max_length=256)] = ()
    objectRef: ObjectReference | None = None
    responseStatus: ResponseStatus | None = None
    requestObject: msgspec.Raw = EMPTY
    responseObject: msgspec.Raw = EMPTY
    requestReceivedTimestamp: Time = ""
    stageTimestamp: Time = ""
    timestamp: Time = ""

    def request(self) -> Any:
        """The request body decoded (None when absent or unreadable)."""
        return body_of(self.requestObject)

    def response(self) -> Any:
        """The response body decoded (None when absent or unreadable)."""
        return body_of(self.responseObject)


class EventList(msgspec.Struct, gc=False, omit_defaults=True):
    kind: str = ""
    apiVersion: str = ""
    items: list[AuditEvent] | None = None


class _Head(msgspec.Struct, gc=False):
    kind: Any = None
    apiVersion: Any = None


_HEAD = msgspec.json.Decoder(_Head)
_ENCODE = msgspec.json.Encoder()
_EVENT = msgspec.json.Decoder(AuditEvent)
_LIST = msgspec.json.Decoder(EventList)


def body_of(raw: msgspec.Raw) -> Any:
    """A request/response body as Python values; None when absent. A body JSON cannot hold as
    Python values (a 5,000-digit number) is treated as absent: the event keeps its other facts."""
    if not raw:
        return None
    try:
        return orjson.loads(memoryview(raw))
    except orjson.JSONDecodeError:
        try:
            value = msgspec.json.decode(raw)
        except (msgspec.DecodeError, RecursionError):
            return None
    try:
        # What orjson could not read (an integer past 64 bits, deep nesting) it cannot write either,
        # and every body is written again (diffs, the store's versions): such a body is absent.
        orjson.dumps(value)
    except (orjson.JSONEncodeError, RecursionError):
        return None
    return value


def cut(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters, saying how many more there were."""
    return text if len(text) <= limit else f"{text[:limit]}…({len(text) - limit} more)"


def quoted(value: Any, limit: int = 200) -> str:
    """``value`` as it would be quoted in a reason, cut to ``limit`` characters: reasons are logged,
    and a log line must not carry a megabyte of someone else's input."""
    return cut(repr(value), limit)


def _refused(exc: msgspec.DecodeError, where: str) -> errors.InputError:
    text = str(exc)
    if isinstance(exc, msgspec.ValidationError):
        # "Expected `str`, got `int` - at `$.items[0].user`" → "items[0].user: expected str, got int"
        message, _, path = text.partition(" - at `$")
        field = path.rstrip("`").lstrip(".")
        place = f"{where} {field}" if where != "body" and field else field or where
        return errors.WrongKind(f"{place}: {cut(message.replace('`', ''))}")
    if "utf-8" in text.lower():
        return errors.MalformedBody(f"{where} is not valid UTF-8")
    return errors.MalformedBody(f"{where} is not valid JSON: {cut(text)}")


def _checked(event: AuditEvent, where: str, *, strict_version: bool) -> AuditEvent:
    if event.kind and event.kind != "Event":
        raise errors.WrongKind(f"{where} has kind {quoted(event.kind)}, expected an audit Event")
    if (event.apiVersion or strict_version) and event.apiVersion not in AUDIT_API_VERSIONS:
        raise errors.WrongKind(
            f"{where} has apiVersion {quoted(event.apiVersion)}, expected audit.k8s.io/v1 or v1beta1"
        )
    for name in ("auditID", "stage", "verb"):
        if not getattr(event, name):
            raise errors.WrongKind(f"{where} has no {name}")
    return event


class Limit(NamedTuple):
    """The latest time an event may carry (µs), and the skew it allows (for the reason)."""

    latest_us: int
    skew_us: int


def skew_text(skew_us: int) -> str:
    """A skew as ``--max-clock-skew`` takes it: ``24h``, ``90m``, ``45s``."""
    seconds = skew_us // 1_000_000
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s" if skew_us % 1_000_000 == 0 else f"{skew_us // 1000}ms"


def _dated(event: AuditEvent, where: str, limit: Limit) -> AuditEvent:
    """``event`` if its times can be read and none is later than the limit: an event the pipeline
    cannot place in time would be acknowledged and then dropped."""
    for name in ("requestReceivedTimestamp", "stageTimestamp", "timestamp"):
        value = getattr(event, name)
        if not value:
            continue
        try:
            moment = parse_time_us(value)
        except (ValueError, OverflowError):
            raise errors.WrongKind(f"{where}.{name}: {value!r} is not an RFC 3339 time") from None
        if moment > limit.latest_us:
            raise errors.WrongKind(
                f"{where}.{name}: {value} is more than {skew_text(limit.skew_us)} ahead of this "
                "collector's clock (--max-clock-skew); check the apiserver's clock"
            )
    if not (event.requestReceivedTimestamp or event.timestamp or event.stageTimestamp):
        raise errors.WrongKind(f"{where} has no requestReceivedTimestamp or stageTimestamp")
    return event


def _utf8(data: bytes, where: str) -> None:
    # The decoder skips what it does not read (unknown fields, bodies) without looking at it; text
    # that is not UTF-8 there would reach the inbox and every later reader.
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise errors.MalformedBody(f"{where} is not valid UTF-8") from None


def decode_batch(
    body: bytes, *, now: int | None = None, max_skew_us: int = FUTURE_SKEW_US
) -> list[AuditEvent]:
    """The events of a webhook body (an ``EventList``, or a lone ``Event``), all checked: the whole
    body is refused if any part is wrong, so nothing is ever half-ingested. No event may be dated
    more than ``max_skew_us`` after ``now`` (µs, default the wall clock)."""
    _utf8(body, "body")
    latest = Limit((now_us() if now is None else now) + max_skew_us, max_skew_us)
    try:
        head = _HEAD.decode(body)
        if not isinstance(head.apiVersion, str) or head.apiVersion not in AUDIT_API_VERSIONS:
            raise errors.WrongKind(
                f"apiVersion {quoted(head.apiVersion)} is not audit.k8s.io/v1 or audit.k8s.io/v1beta1"
            )
        if head.kind == "Event":
            return [_dated(_checked(_EVENT.decode(body), "body", strict_version=True), "body", latest)]
        if head.kind != "EventList":
            raise errors.WrongKind(f"kind {quoted(head.kind)} is not EventList or Event")
        items = _LIST.decode(body).items or []
    except msgspec.DecodeError as exc:
        raise _refused(exc, "body") from None
    except RecursionError:
        # The decoder descends into every array and object, read or skipped, on the C stack.
        raise errors.MalformedBody("body nests arrays or objects too deeply") from None
    return [
        _dated(_checked(item, f"items[{i}]", strict_version=False), f"items[{i}]", latest)
        for i, item in enumerate(items)
    ]


def decode_line(line: bytes, where: str) -> list[AuditEvent]:
    """The events of one line of an audit log: a bare Event (apiVersion optional) or an EventList."""
    _utf8(line, where)
    try:
        if b'"EventList"' in line:
            document = _LIST.decode(line)
            if document.kind == "EventList":
                items = document.items or []
                return [
                    _checked(item, f"{where} items[{i}]", strict_version=False)
                    for i, item in enumerate(items)
                ]
        return [_checked(_EVENT.decode(line), where, strict_version=False)]
    except msgspec.DecodeError as exc:
        raise _refused(exc, where) from None
    except RecursionError:
        raise errors.MalformedBody(f"{where} nests arrays or objects too deeply") from None


def encode_batch(events: list[AuditEvent]) -> bytes:
    """An ``EventList`` of ``events``, bodies carried over byte for byte. Fields the wire form does
    not declare are not kept: nothing reads them."""
    return _ENCODE.encode(EventList("EventList", "audit.k8s.io/v1", events))


def encode_body(value: Any) -> msgspec.Raw:
    """A body as it would have arrived."""
    return msgspec.Raw(_ENCODE.encode(value))


def from_mapping(document: Any) -> AuditEvent:
    """An event given as Python values (tests, tools) in its wire form; refused like a webhook's."""
    try:
        return _checked(_EVENT.decode(orjson.dumps(document)), "event", strict_version=False)
    except msgspec.DecodeError as exc:
        raise _refused(exc, "event") from None
    except TypeError as exc:  # orjson cannot encode it (a 5,000-digit int, an unknown type)
        raise errors.WrongKind(f"event: {exc}") from None
