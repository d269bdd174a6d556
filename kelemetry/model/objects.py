"""Identity of Kubernetes objects.

An object is keyed by (cluster, group, resource, namespace, name); the resource is the plural
("deployments") and the group is "" for the core API. The uid, kind and version travel beside the
key: a deleted-and-recreated object keeps its key but gets a new uid.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import NamedTuple

_intern = sys.intern


class ObjectKey(NamedTuple):
    """A NamedTuple rather than a dataclass: keys are hashed and compared on every event (graph,
    caches, id memos), and tuple hashing and equality run in C."""

    cluster: str
    group: str
    resource: str
    namespace: str
    name: str

    @classmethod
    def make(cls, cluster: str, group: str, resource: str, namespace: str, name: str) -> ObjectKey:
        # Interning the low-cardinality parts keeps thousands of keys from holding copies of
        # "default" or "pods"; the owner graph holds one key per object.
        return cls(_intern(cluster), _intern(group), _intern(resource), _intern(namespace), name)

    def __str__(self) -> str:
        return f"{self.cluster}/{self.group}/{self.resource}/{self.namespace}/{self.name}"

    @property
    def display(self) -> str:
        """``resource/name`` as kubectl users write it, with the group when it is not core."""
        resource = f"{self.resource}.{self.group}" if self.group else self.resource
        return f"{resource}/{self.name}"


class Incarnation(NamedTuple):
    """One object as opposed to one name: a key deleted and created again is a second incarnation,
    told apart by its uid. The uid is "" only when no input ever said it (requests about a name
    before any object had it, audit at Metadata level without a watch)."""

    key: ObjectKey
    uid: str


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """An object as one event saw it: its key plus what that event told about it."""

    key: ObjectKey
    uid: str = ""
    kind: str = ""
    version: str = ""
    incarnation: Incarnation = field(init=False, repr=False, compare=False)
    """(key, uid): built once, since the graph, the ids and the change tracker all look objects up by it."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "incarnation", Incarnation(self.key, self.uid))


@dataclass(frozen=True, slots=True)
class OwnerLink:
    """A controller ownerReference resolved to an object key: ``child`` is owned by ``owner``."""

    child: ObjectRef
    owner: ObjectRef


@dataclass(frozen=True, slots=True)
class KnownObject:
    """An incarnation as the store knows it: what inputs said of it, its controller owner (by object
    id), and the first and last moment anything happened to it (None when only referenced)."""

    object_id: int
    key: ObjectKey
    uid: str = ""
    kind: str = ""
    version: str = ""
    owner_id: int | None = None
    first_us: int | None = None
    last_us: int | None = None
