"""Parents beyond ownerReferences: the linkers, one small module per system, behind one interface.

An object's place in a trace is under its parent. Within a cluster the parent is the controller
``ownerReference`` (`kelemetry.linker.owners`); when there is none, linkers may name one — possibly
in another cluster: a member cluster's Deployment under the federated Deployment of the host that
a federation controller (KubeAdmiral, Karmada, KubeFed) made it from, an offloaded Pod (Liqo) under
the Pod it stands for, or any object under what Kelemetry's ``parent-link`` annotation names.

A linker looks at one object (its key and its body as read: metadata, labels, annotations, spec)
and answers a parent, a refusal (a link that is malformed or points nowhere: counted and logged
once per object, never followed), or nothing. Linkers are chosen by name from an explicit registry
(`kelemetry.linker.registry`); nothing registers itself on import. No I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from kelemetry.model.objects import ObjectRef


@dataclass(frozen=True, slots=True)
class Refusal:
    """A link an object declares that is not followed, and why (bad JSON, an unknown cluster...)."""

    linker: str
    reason: str


@dataclass(frozen=True, slots=True)
class Clusters:
    """What linkers know of the fleet.

    ``names``: the clusters of this collector (configured, or seen in the store); empty means any
    name is accepted (a replay that cannot know the others yet). ``aliases``: a federation system's
    name of a member cluster → ours; by default the names are the same, which needs no configuration.
    """

    names: frozenset[str] = frozenset()
    aliases: Mapping[str, str] = field(default_factory=dict)

    def ours(self, name: str) -> str | None:
        """Our name of a cluster a system named; None when it is not one of ours."""
        mapped = self.aliases.get(name, name)
        if self.names and mapped not in self.names:
            return None
        return mapped


@dataclass(frozen=True, slots=True)
class Marks:
    """The label and annotation keys a linker needs to see before it can answer anything but None.

    Most objects carry none of any linker's keys; the pipeline checks the union once per object
    instead of asking every linker (`MarkIndex`). A linker that can fire on any object (user rules
    that select by resource alone) has no marks (``None``) and is always asked.
    """

    labels: frozenset[str] = frozenset()
    annotations: frozenset[str] = frozenset()


class MarkIndex:
    """The union of the linkers' marks: whether an object body may interest any linker at all."""

    def __init__(self, linkers: list[Linker]) -> None:
        marks = [linker.marks for linker in linkers]
        self.always = not linkers or any(m is None for m in marks)
        self.labels = frozenset().union(*(m.labels for m in marks if m is not None))
        self.annotations = frozenset().union(*(m.annotations for m in marks if m is not None))

    def may_link(self, body: Mapping[str, Any]) -> bool:
        if self.always:
            return True
        meta = body.get("metadata")
        if not isinstance(meta, dict | Mapping):
            return False
        labels, annotations = meta.get("labels"), meta.get("annotations")
        # isdisjoint runs in C over the smaller side: a few hash lookups per object.
        return bool(
            (isinstance(labels, dict | Mapping) and not self.labels.isdisjoint(labels))
            or (isinstance(annotations, dict | Mapping) and not self.annotations.isdisjoint(annotations))
        )


class Linker(Protocol):
    name: str

    @property
    def marks(self) -> Marks | None:
        """The keys this linker needs (`Marks`); None when it may answer for any object."""

    def parent(
        self, obj: ObjectRef, body: Mapping[str, Any], clusters: Clusters
    ) -> ObjectRef | Refusal | None:
        """The parent ``obj`` (as its ``body`` shows it) declares through this system, if any."""


LinkerFactory = Callable[[], Linker]
