"""Recent versions of each object, so a write can be diffed against the version before it.

Bodies arrive already cleaned (managedFields dropped, secrets redacted). Each incarnation keeps its
last few versions by resourceVersion: a re-delivered event (webhook retry, replay) finds the same
predecessor again and so produces the same diff. Memory is bounded by bytes (each version counted
as the length of its body serialised as JSON, the figure a stream of large objects grows with) and
by a count of objects, least recently touched object dropped first; a miss only means a diff is not
shown.

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

import orjson

VERSIONS_PER_OBJECT = 3
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
# What an entry costs beyond its body's JSON: the version record, its list slot, the object's key
# and its place in the LRU order (361 bytes measured with tracemalloc for an object with one version);
# it keeps a flood of tiny objects bounded too.
ENTRY_OVERHEAD_BYTES = 360


def body_size(body: Mapping[str, Any]) -> int:
    """The approximate size of ``body``: its length as JSON."""
    try:
        return len(orjson.dumps(body))
    except (TypeError, orjson.JSONEncodeError):
        # Not JSON-able as it is (a key that is not a string, an integer past 64 bits): its text.
        return len(repr(body))


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
    size: int = field(default=0, compare=False)
    """Bytes this version is counted as (its body's JSON plus the entry's own overhead)."""


class BodyHistory:
    def __init__(
        self,
        max_objects: int = 50_000,
        versions_per_object: int = VERSIONS_PER_OBJECT,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.max_objects = max_objects
        self.versions_per_object = versions_per_object
        self.max_bytes = max_bytes
        self.bytes = 0
        """The bytes of every version held, as counted against ``max_bytes``."""
        self.evicted = 0
        """Objects dropped to stay within the caps."""
        self._versions: OrderedDict[Hashable, list[Version]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._versions)

    def get(self, obj: Hashable, resource_version: str) -> Version | None:
        versions = self._versions.get(obj)
        if versions is None:
            return None
        self._versions.move_to_end(obj)
        for version in versions:
            if version.rv == resource_version:
                return version
        return None

    def previous(self, obj: Hashable, resource_version: str) -> Version | None:
        """The newest known version strictly older than ``resource_version``."""
        versions = self._versions.get(obj)
        if versions is None:
            return None
        self._versions.move_to_end(obj)
        order = rv_order(resource_version)
        found: Version | None = None
        # Versions are kept sorted, so the last older one is the newest older one.
        for version in versions:
            if rv_order(version.rv) >= order:
                break
            found = version
        return found

    def latest(self, obj: Hashable) -> Version | None:
        versions = self._versions.get(obj)
        if not versions:
            return None
        self._versions.move_to_end(obj)
        return versions[-1]

    def put(
        self,
        obj: Hashable,
        resource_version: str,
        body: Mapping[str, Any],
        *,
        complete: bool = True,
        listed: bool = False,
        writer: str = "",
        size: int = 0,
    ) -> None:
        """``size``: the body's JSON length when the caller knows it (0: measured here)."""
        versions = self._versions.setdefault(obj, [])
        self._versions.move_to_end(obj)
        for i, known in enumerate(versions):
            if known.rv == resource_version:
                if complete and not known.complete:
                    size = (size or body_size(body)) + ENTRY_OVERHEAD_BYTES
                    self.bytes += size - known.size
                    versions[i] = Version(
                        resource_version, body, complete, listed, writer or known.writer, size
                    )
                    self._shrink()
                return
        size = (size or body_size(body)) + ENTRY_OVERHEAD_BYTES
        versions.append(Version(resource_version, body, complete, listed, writer, size))
        self.bytes += size
        versions.sort(key=lambda v: rv_order(v.rv))
        for dropped in versions[: -self.versions_per_object]:
            self.bytes -= dropped.size
        del versions[: -self.versions_per_object]
        self._shrink()

    def _shrink(self) -> None:
        # The object just written is the most recent: it goes last, and only if it alone is over.
        while len(self._versions) > self.max_objects or (
            self.bytes > self.max_bytes and len(self._versions) > 1
        ):
            _obj, evicted = self._versions.popitem(last=False)
            self.bytes -= sum(version.size for version in evicted)
            self.evicted += 1
        if self.bytes > self.max_bytes and self._versions:
            # One object larger than the whole cap keeps only its newest version.
            versions = next(iter(self._versions.values()))
            for older in versions[:-1]:
                self.bytes -= older.size
            del versions[:-1]

    def forget(self, obj: Hashable) -> None:
        forgotten = self._versions.pop(obj, None)
        if forgotten:
            self.bytes -= sum(version.size for version in forgotten)
