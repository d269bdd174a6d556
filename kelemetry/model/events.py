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
    GAP = "gap"
    """A stretch of time the collector could not see (``kelemetry.model.gaps``): data may be missing."""


TagValue = str | int | bool


@dataclass(frozen=True, slots=True)
class Log:
    """A log line on a span; ``kind`` says what it carries (message, error, diff, snapshot)."""

    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class WriteDetail:
    """What an audit write request said beyond its tags, for telling which change it made.

    ``request`` is the request body as logged (a patch document, a Binding, a Scale, a whole object),
    ``response`` a response that is not the object itself (a Scale, a Status); both are already
    redacted. ``resource_version`` is the object's version after the write ("" when the response did
    not say), ``precondition`` the version an update was based on (``objectRef.resourceVersion``).
    """

    verb: str
    subresource: str = ""
    resource_version: str = ""
    precondition: str = ""
    request: Any = field(default=None, compare=False, repr=False)
    response: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)


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
    body_bytes: int = field(default=0, compare=False, repr=False)
    """The body's length as JSON when it arrived (0: not known), so caches can count it without
    serialising it again."""
    write: WriteDetail | None = None
    """Audit writes only: what the request was, for attributing changes to it."""
    precision_us: int = 1
    """How precise ``start_us``/``end_us`` are: core/v1 Events carry whole seconds (1_000_000)."""
    order: int | None = None
    """The source's own resourceVersion (an etcd revision), which orders events within that precision."""
