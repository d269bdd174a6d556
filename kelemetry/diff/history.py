"""Recent versions of each object, so an audit event's body can be diffed against the one before.

Bodies arrive already cleaned (managedFields dropped, secrets redacted). Each object keeps its
last few versions by resourceVersion: a re-delivered event (webhook retry, replay) finds the same
predecessor again and so produces the same diff. Memory is bounded by a count of objects, least
recently touched dropped first; a miss only means a diff is not shown.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from kelemetry.model.objects import ObjectKey

VERSIONS_PER_OBJECT = 3


def rv_order(resource_version: str) -> tuple[int, str]:
    """resourceVersions are opaque strings, in practice etcd revisions: compare numerically if so."""
    return (int(resource_version), "") if resource_version.isdigit() else (-1, resource_version)


class BodyHistory:
    def __init__(self, max_objects: int = 50_000) -> None:
        self.max_objects = max_objects
        self._versions: OrderedDict[ObjectKey, list[tuple[str, Mapping[str, Any]]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._versions)

    def previous(self, key: ObjectKey, resource_version: str) -> tuple[str, Mapping[str, Any]] | None:
        """The newest known version strictly older than ``resource_version``."""
        versions = self._versions.get(key)
        if not versions:
            return None
        order = rv_order(resource_version)
        older = [v for v in versions if rv_order(v[0]) < order]
        return max(older, key=lambda v: rv_order(v[0])) if older else None

    def latest(self, key: ObjectKey) -> tuple[str, Mapping[str, Any]] | None:
        versions = self._versions.get(key)
        return max(versions, key=lambda v: rv_order(v[0])) if versions else None

    def put(self, key: ObjectKey, resource_version: str, body: Mapping[str, Any]) -> None:
        versions = self._versions.setdefault(key, [])
        self._versions.move_to_end(key)
        if any(rv == resource_version for rv, _ in versions):
            return
        versions.append((resource_version, body))
        versions.sort(key=lambda v: rv_order(v[0]))
        del versions[:-VERSIONS_PER_OBJECT]
        while len(self._versions) > self.max_objects:
            self._versions.popitem(last=False)

    def forget(self, key: ObjectKey) -> None:
        self._versions.pop(key, None)
