"""Versions of an object as the store keeps them: what the object looked like after a write.

A version is keyed by its object (one incarnation) and resourceVersion, so the same input written
again replaces nothing. Its body is already cleaned (managedFields dropped, redacted fields
opaque). A *partial* version was reconstructed from a response that showed only part of the object
(a Scale's replicas on top of the version before); a complete version of the same resourceVersion
replaces it. A *deletion* marks the end of an incarnation: its body is the last state when the
source showed one (a watched DELETED), else None (a delete that answered with a Status).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DELETED_RV = "deleted"
"""The resourceVersion slot of a deletion: an incarnation is deleted once."""


@dataclass(frozen=True, slots=True)
class ObjectVersion:
    object_id: int
    uid: str
    resource_version: str
    time_us: int
    """When the version came to be: the start of the request that made it, or when the watch saw it."""
    source: str
    """``audit`` (a request's response) or ``watch`` (the object watch)."""
    verb: str = ""
    user: str = ""
    span_id: int | None = None
    """The request span that made it, when one did."""
    complete: bool = True
    deleted: bool = False
    body: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
