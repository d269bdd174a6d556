"""Recent versions of each object, so a write can be diffed against the version before it.

Bodies arrive already cleaned (managedFields dropped, secrets redacted). Each incarnation keeps its
last few versions by resourceVersion: a re-delivered event (webhook retry, replay) finds the same
predecessor again and so produces the same diff. Memory is bounded by a count of objects, least
recently touched dropped first; a miss only means a diff is not shown.

A version may be *partial*: made up from a response that showed only part of the object (a Scale
says ``spec.replicas``), on top of the version before it. It stands in until a complete version
follows, and is never taken as proof of what an object looked like. A *listed* version came from a
(re)list of the watch, so the watch may have missed the versions right before it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

VERSIONS_PER_OBJECT = 3


def rv_order(resource_version: str) -> tuple[int, str]:
    """resourceVersions are opaque strings, in practice etcd revisions: compare numerically if so."""
    return (int(resource_version), "") if resource_version.isdigit() else (-1, resource_version)


@dataclass(frozen=True, slots=True)
class Version:
    rv: str
    body: Mapping[str, Any]
    complete: bool = True
    listed: bool = False
    writer: str = field(default="", compare=False)
    """The audit event that made this version, when known."""


class BodyHistory:
    def __init__(self, max_objects: int = 50_000, versions_per_object: int = VERSIONS_PER_OBJECT) -> None:
        self.max_objects = max_objects
        self.versions_per_object = versions_per_object
        self._versions: OrderedDict[Hashable, list[Version]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._versions)

    def get(self, obj: Hashable, resource_version: str) -> Version | None:
        for version in self._versions.get(obj, ()):
            if version.rv == resource_version:
                return version
        return None

    def previous(self, obj: Hashable, resource_version: str) -> Version | None:
        """The newest known version strictly older than ``resource_version``."""
        order = rv_order(resource_version)
        found: Version | None = None
        # Versions are kept sorted, so the last older one is the newest older one.
        for version in self._versions.get(obj, ()):
            if rv_order(version.rv) >= order:
                break
            found = version
        return found

    def latest(self, obj: Hashable) -> Version | None:
        versions = self._versions.get(obj)
        return versions[-1] if versions else None

    def put(
        self,
        obj: Hashable,
        resource_version: str,
        body: Mapping[str, Any],
        *,
        complete: bool = True,
        listed: bool = False,
        writer: str = "",
    ) -> None:
        versions = self._versions.setdefault(obj, [])
        self._versions.move_to_end(obj)
        for i, known in enumerate(versions):
            if known.rv == resource_version:
                if complete and not known.complete:
                    versions[i] = Version(resource_version, body, complete, listed, writer or known.writer)
                return
        versions.append(Version(resource_version, body, complete, listed, writer))
        versions.sort(key=lambda v: rv_order(v.rv))
        del versions[: -self.versions_per_object]
        while len(self._versions) > self.max_objects:
            self._versions.popitem(last=False)

    def forget(self, obj: Hashable) -> None:
        self._versions.pop(obj, None)
