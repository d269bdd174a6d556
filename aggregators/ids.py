"""Deterministic trace and span IDs (DESIGN §4).

The same input always yields the same IDs, so replays, webhook retries and restarts upsert
instead of duplicating. blake2b is used for its speed on short inputs; zero IDs are invalid in
OTLP and Jaeger, so a zero digest is mapped to 1.
"""

from __future__ import annotations

from functools import lru_cache
from hashlib import blake2b

from kelemetry.model.objects import Incarnation, ObjectKey

_SEP = "\x1f"


def _digest(text: str, size: int) -> int:
    value = int.from_bytes(blake2b(text.encode(), digest_size=size).digest(), "big")
    return value or 1


# Ids are per incarnation, not per name: a Deployment deleted and created again under the same name
# is a second object with its own spans and, as a root, its own traces.


@lru_cache(maxsize=131_072)
def object_id(obj: Incarnation) -> int:
    """A 64-bit id of an incarnation, used to index the store."""
    return _digest(f"o{_SEP}{obj.key}{_SEP}{obj.uid}", 8)


@lru_cache(maxsize=131_072)
def trace_id(root: Incarnation, window: int) -> int:
    """One trace per root object per window."""
    return _digest(f"t{_SEP}{root.key}{_SEP}{root.uid}{_SEP}{window}", 16)


@lru_cache(maxsize=131_072)
def object_span_id(obj: Incarnation, window: int) -> int:
    return _digest(f"s{_SEP}{obj.key}{_SEP}{obj.uid}{_SEP}{window}", 8)


def event_span_id(key: ObjectKey, source: str, event_id: str) -> int:
    """An event span id: the source's own id (audit ID, Event uid+version) scoped to the object."""
    return _digest(f"e{_SEP}{source}{_SEP}{key}{_SEP}{event_id}", 8)
