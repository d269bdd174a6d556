"""One thing that happened to one object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from kelemetry.model.objects import ObjectRef, OwnerLink


class TraceSource(StrEnum):
    OBJECT = "object"
    AUDIT = "audit"
    EVENT = "event"
    CHANGE = "change"
    """A change seen only by the object watch (no audit event claimed it): who made it is unknown."""


TagValue = str | int | bool


@dataclass(frozen=True, slots=True)
class Log:
    """A log line on a span; ``kind`` says what it carries (message, error, diff, snapshot)."""

    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class Event:
    """An audit request or Kubernetes Event attributed to one object.

    ``event_id`` is stable for the same input (the audit ID), so re-ingesting the same event
    yields the same span. ``owner`` is the controller owner the event's body declared, if any.
    """

    object: ObjectRef
    source: TraceSource
    event_id: str
    title: str
    start_us: int
    end_us: int
    tags: dict[str, TagValue] = field(default_factory=dict)
    logs: tuple[Log, ...] = ()
    error: bool = False
    owner: OwnerLink | None = None
    body: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    """The object as the request left it (already redacted), for diffs and snapshots."""
