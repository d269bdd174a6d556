"""What a decoded input document holds: audit Events, Kubernetes Events, or neither (and why).

Audit logs and Events reach people in many wrappings: a bare audit Event, an audit ``EventList``,
``kubectl get events`` output (a ``List`` of Events, or an ``EventList`` whose items carry no kind),
watch events, GKE Cloud Logging entries, and arrays of any of these. One document may hold many
records; each record is an audit Event, a Kubernetes Event, or a record that cannot be read, with
a hint of what it looked like. This module does no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kelemetry import errors
from kelemetry.receivers import gkelog
from kelemetry.receivers.auditwire import AUDIT_API_VERSIONS, AuditEvent, from_mapping
from kelemetry.receivers.events import EVENT_API_VERSIONS, is_kube_event, unwrap


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A record that is neither an audit Event nor a Kubernetes Event; ``hint`` says what it looked like."""

    hint: str
    item: int | None = None
    """Its place in the document's list (None: the document itself)."""


@dataclass(frozen=True, slots=True)
class KubeEvent:
    obj: Mapping[str, Any]
    deleted: bool = False
    """A watch DELETED event: read, but it says nothing new about the object."""


Record = AuditEvent | KubeEvent | Unreadable


def _describe(document: Any) -> str:
    """A hint for a document that holds no record."""
    if isinstance(document, str):
        return "plain text, not a JSON or YAML object"
    if not isinstance(document, dict):
        return f"a JSON {type(document).__name__ if document is not None else 'null'}, not an object"
    kind = document.get("kind")
    api_version = document.get("apiVersion")
    if "logName" in document or "insertId" in document:
        payload = "jsonPayload" if "jsonPayload" in document else "textPayload"
        return f"a Cloud Logging entry with a {payload}, not an audit log entry"
    if isinstance(kind, str) and kind.endswith("List") and isinstance(document.get("items"), list):
        return f"a {kind} of {_item_kinds(document['items'])}, not audit events or Kubernetes Events"
    if isinstance(kind, str) and kind:
        return f"a {kind} ({api_version or 'no apiVersion'}) object, not an audit event or a Kubernetes Event"
    return "not an audit event: missing auditID"


def _item_kinds(items: list[Any]) -> str:
    kinds = sorted({str(i.get("kind")) for i in items if isinstance(i, dict) and i.get("kind")})
    return " and ".join(kinds[:3]) + " objects" if kinds else "untyped items"


def _reason(message: str) -> str:
    # from_mapping names the record "event"; here the hint already says which record it is.
    message = message.removeprefix("event").lstrip(": ")
    return message[:1].lower() + message[1:]


def _text(value: Any) -> str:
    """A field that should be a string, or '' (a list or an object cannot be looked up in a set)."""
    return value if isinstance(value, str) else ""


def _one(document: Any) -> Record:
    if not isinstance(document, dict):
        return Unreadable(_describe(document))
    if gkelog.is_log_entry(document):
        try:
            return gkelog.to_audit_event(document)
        except errors.InputError as exc:
            return Unreadable(str(exc))
    found = unwrap(document)
    if found is not None and is_kube_event(document):
        return KubeEvent(found[1], deleted=found[0] not in ("ADDED", "MODIFIED"))
    kind, api_version = document.get("kind"), _text(document.get("apiVersion"))
    if "auditID" in document or (kind == "Event" and api_version in AUDIT_API_VERSIONS):
        try:
            return from_mapping(document)
        except errors.InputError as exc:
            return Unreadable(f"not an audit event: {_reason(str(exc))}")
    return Unreadable(_describe(document))


def records(document: Any) -> Iterator[Record]:
    """The records of one document, in order; a list's unreadable items name their place."""
    items: Any = None
    item_defaults: dict[str, Any] = {}
    if isinstance(document, list):
        items = document
    elif isinstance(document, dict) and isinstance(document.get("items"), list):
        kind, api_version = document.get("kind"), _text(document.get("apiVersion"))
        if kind == "EventList" and api_version in AUDIT_API_VERSIONS:
            items = document["items"]
        elif kind == "EventList" and api_version in EVENT_API_VERSIONS:
            # The API's own list of Events leaves kind and apiVersion off its items.
            items = document["items"]
            item_defaults = {"kind": "Event", "apiVersion": api_version}
        elif kind == "List" or (isinstance(kind, str) and kind.endswith("EventList")):
            items = document["items"]
    if items is None:
        yield _one(document)
        return
    for i, item in enumerate(items):
        if item_defaults and isinstance(item, dict) and "kind" not in item:
            item = {**item_defaults, **item}
        record = _one(item)
        yield Unreadable(record.hint, i) if isinstance(record, Unreadable) else record
