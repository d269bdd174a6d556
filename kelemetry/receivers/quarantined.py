"""What a quarantined body holds, per source, and what a person needs to recognise it.

``audit``: an audit ``EventList`` (as the inbox keeps batches, already scrubbed of secrets);
``event``: one Kubernetes Event object as the watch gave it; ``watch``: one watched object version
as ``{"type", "target": [group, version, resource], "object"}``, its body redacted as the store
would keep it. ``describe`` reads a body only as far as it can: a row whose body is unreadable (the
reason it was quarantined, perhaps) still lists, with what is missing left blank.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from kelemetry import errors
from kelemetry.receivers.auditwire import AuditEvent, EventList, cut, encode_batch

_OPTIONS = orjson.OPT_NON_STR_KEYS


@dataclass(frozen=True, slots=True)
class Described:
    """The audit id(s) and the object of a quarantined body; empty strings when it does not say."""

    audit_id: str
    object: str


def reason_kind(reason: str) -> str:
    """What a reason says before its details (``pipeline failed at linking``, ``store refused``): the
    key quarantined input is counted by."""
    kind, sep, _details = reason.partition(": ")
    return kind if sep else reason


def audit_body(item: AuditEvent | Mapping[str, Any]) -> bytes:
    """An ``EventList`` of one event; one given as plain values (tools) is kept as given."""
    if isinstance(item, AuditEvent):
        return encode_batch([item])
    return _dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [item]})


def event_body(obj: Mapping[str, Any]) -> bytes:
    return _dumps(obj)


def watch_body(kind: str, target: tuple[str, str, str], obj: Any) -> bytes:
    return _dumps({"type": kind, "target": list(target), "object": obj})


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value, default=str, option=_OPTIONS)
    except (orjson.JSONEncodeError, TypeError):
        pass
    # What orjson cannot write (an integer past 64 bits, nesting past 254 levels) the standard
    # library can: the input is kept as it came, not lost for its oddity.
    try:
        return json.dumps(value, default=str).encode()
    except (ValueError, RecursionError) as exc:
        return _dumps({"unwritable": cut(f"{type(exc).__name__}: {exc}")})


def read_event(body: bytes) -> Mapping[str, Any]:
    document = _json(body)
    if not isinstance(document, dict):
        raise errors.WrongKind("the quarantined Kubernetes Event is not a JSON object")
    return document


def read_watch(body: bytes) -> tuple[str, tuple[str, str, str], Mapping[str, Any]]:
    """(watch type, (group, version, resource), object) of a quarantined watched version."""
    document = _json(body)
    target = document.get("target") if isinstance(document, dict) else None
    if (
        not isinstance(document, dict)
        or not isinstance(document.get("type"), str)
        or not isinstance(target, list)
        or len(target) != 3
        or not all(isinstance(part, str) for part in target)
        or not isinstance(document.get("object"), dict)
    ):
        raise errors.WrongKind("the quarantined object version is not {type, target, object}")
    return document["type"], (target[0], target[1], target[2]), document["object"]


def describe(source: str, body: bytes) -> Described:
    try:
        if source == "audit":
            return _audit(body)
        if source == "event":
            return _event(read_event(body))
        if source == "watch":
            _kind, (group, _version, resource), obj = read_watch(body)
            return Described("", _object(group, resource, obj.get("metadata")))
    except (errors.InputError, ValueError):
        pass
    return Described("", "")


def _json(body: bytes) -> Any:
    # The standard library, not orjson: orjson reads an integer past 64 bits as a float, and a
    # retried input must be the one that was received.
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise errors.MalformedBody(f"the quarantined body is not JSON: {cut(str(exc))}") from None


def _audit(body: bytes) -> Described:
    try:
        events: list[AuditEvent] = msgspec.json.decode(body, type=EventList).items or []
    except (msgspec.DecodeError, RecursionError):
        return Described("", "")
    ids = sorted({event.auditID for event in events})
    refs = sorted(
        {
            _object(ref.apiGroup, ref.resource + (f"/{ref.subresource}" if ref.subresource else ""), ref)
            for event in events
            if (ref := event.objectRef) is not None
        }
    )
    return Described(_some(ids), _some(refs))


def _event(obj: Mapping[str, Any]) -> Described:
    involved = obj.get("involvedObject") or obj.get("regarding")
    if not isinstance(involved, dict):
        return Described("", "")
    kind = involved.get("kind")
    namespace, name = involved.get("namespace"), involved.get("name")
    shown = "/".join(str(part) for part in (namespace, name) if isinstance(part, str) and part)
    return Described("", f"{kind}/{shown}" if isinstance(kind, str) and kind else shown)


def _object(group: str, resource: str, meta: Any) -> str:
    """``resource[.group] namespace/name``: ``meta`` is an objectRef or an object's metadata."""
    if isinstance(meta, Mapping):
        namespace, name = meta.get("namespace"), meta.get("name")
    else:
        namespace, name = getattr(meta, "namespace", ""), getattr(meta, "name", "")
    where = "/".join(part for part in (namespace, name) if isinstance(part, str) and part)
    what = f"{resource}.{group}" if group else resource
    return f"{what} {where}".strip()


def _some(values: list[str]) -> str:
    """One value, or the first and how many more (a quarantined batch may hold many events)."""
    values = [value for value in values if value]
    if len(values) <= 1:
        return values[0] if values else ""
    return f"{values[0]} (+{len(values) - 1} more)"
