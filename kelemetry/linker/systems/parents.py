"""Building the parent a linker answers, with the one check every linker needs.

A parent whose key is the object's own would make the object its own owner; the owner graph refuses
that too, but refusing it here names the linker and the reason in the count and the log.
"""

from __future__ import annotations

from kelemetry.linker.links import Refusal
from kelemetry.model.objects import ObjectKey, ObjectRef


def parent(
    linker: str,
    obj: ObjectRef,
    key: ObjectKey,
    *,
    kind: str = "",
    version: str = "",
    uid: str = "",
) -> ObjectRef | Refusal:
    """``key`` as a parent of ``obj`` (its kind and version when the system's data says them)."""
    if key == obj.key:
        return Refusal(linker, f"names the object itself as its parent: {key}")
    return ObjectRef(key, uid, kind, version)
