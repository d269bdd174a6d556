"""Objects seen by the object watch → what the pipeline needs of each version.

A watched version says which incarnation it is (key + uid), its controller owner, and — cleaned of
managedFields and redacted fields before anything keeps it — the body a diff or snapshot is made
from. Whether it is a change nobody has claimed yet is for the change tracker to say. No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kelemetry.diff.redact import Redactor
from kelemetry.kube.kinds import KindResolver
from kelemetry.linker.owners import owner_link
from kelemetry.model.objects import ObjectKey, ObjectRef, OwnerLink


@dataclass(frozen=True, slots=True)
class WatchedVersion:
    kind: str
    """``LIST`` (an item of a (re)list), ``ADDED``, ``MODIFIED`` or ``DELETED``."""
    ref: ObjectRef
    owner: OwnerLink | None
    body: Mapping[str, Any]


class WatchedObjectReceiver:
    def __init__(self, resolver: KindResolver, redactor: Redactor) -> None:
        self._resolver = resolver
        self._redactor = redactor

    def receive(
        self, kind: str, obj: Mapping[str, Any], cluster: str, target: tuple[str, str, str]
    ) -> WatchedVersion | None:
        """One watched object of resource ``target`` = (group, version, resource); None when it has
        no name (nothing to key it by)."""
        group, version, resource = target
        meta = obj.get("metadata")
        if not isinstance(meta, Mapping):
            return None
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            return None
        namespace = meta.get("namespace")
        key = ObjectKey.make(cluster, group, resource, namespace if isinstance(namespace, str) else "", name)
        uid = meta.get("uid")
        found_kind = obj.get("kind")
        ref = ObjectRef(
            key,
            uid if isinstance(uid, str) else "",
            found_kind
            if isinstance(found_kind, str) and found_kind
            else self._resolver.kind_of(group, resource),
            version,
        )
        return WatchedVersion(
            kind, ref, owner_link(ref, meta, self._resolver), self._redactor.clean(group, resource, obj)
        )
