"""Which fields a write request can have changed.

Two kinds of knowledge, used by `kelemetry.diff.attribution` to give every change to the request
that made it:

- **Hard scopes**: what the apiserver lets a request change at all. A write to the ``status``
  subresource changes only ``status``; a write to the object itself cannot change the status of a
  resource that has a status subresource (the apiserver resets it); ``scale`` changes
  ``spec.replicas``; the scheduler's ``binding`` sets ``spec.nodeName``, the binding's annotations and
  the ``PodScheduled`` condition; a graceful delete sets ``deletionTimestamp``. A change outside a
  request's hard scope was certainly not made by it.
- **What a patch names**: a merge or strategic-merge patch sets only the fields it lists (plus what
  the apiserver changes as a consequence, such as ``metadata.generation``), a JSON patch only its
  paths. A change to a field the patch does not name was probably made by someone else; this only
  chooses between candidates, it never takes a change away from the only request that could have
  made it (admission plugins and defaulting also write fields a patch does not name).

Paths are the `Segment` steps of `kelemetry.model.diffs.Diff`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from kelemetry.model.diffs import Diff, Segment


class _AnyItem:
    """A pattern step matching any one step (a map key, a position or a keyed item)."""

    def __repr__(self) -> str:
        return "ANY"


ANY: Final = _AnyItem()
Pattern = tuple[Segment | _AnyItem, ...]


def _starts_with(segments: Sequence[Segment], pattern: Pattern) -> bool:
    if len(segments) < len(pattern):
        return False
    return all(step is ANY or step == seg for step, seg in zip(pattern, segments, strict=False))


@dataclass(frozen=True, slots=True)
class Scope:
    """The fields under ``only`` (None: every field) minus those under ``never``."""

    only: tuple[Pattern, ...] | None = None
    never: tuple[Pattern, ...] = ()

    def allows(self, segments: Sequence[Segment]) -> bool:
        if any(_starts_with(segments, pattern) for pattern in self.never):
            return False
        return self.only is None or any(_starts_with(segments, pattern) for pattern in self.only)


EVERYTHING = Scope()
_GENERATION: Pattern = ("metadata", "generation")

_SUBRESOURCES: dict[str, Scope] = {
    # Status writes may also carry labels and annotations: the Deployment controller sets its
    # revision annotation through /status, and Pods' status strategy keeps metadata writable.
    "status": Scope(only=(("status",), ("metadata", "annotations"), ("metadata", "labels"))),
    "scale": Scope(only=(("spec", "replicas"), _GENERATION)),
    "binding": Scope(
        only=(
            ("spec", "nodeName"),
            ("metadata", "annotations"),
            ("status", "conditions", ("type", "PodScheduled")),
        )
    ),
    # An eviction is a graceful delete that a disruption budget allowed.
    "eviction": Scope(
        only=(
            ("metadata", "deletionTimestamp"),
            ("metadata", "deletionGracePeriodSeconds"),
            _GENERATION,
            ("status", "conditions", ("type", "DisruptionTarget")),
        )
    ),
    "ephemeralcontainers": Scope(only=(("spec", "ephemeralContainers"), _GENERATION)),
    "resize": Scope(
        only=(("spec", "containers"), ("spec", "initContainers"), _GENERATION, ("status", "resize"))
    ),
    "finalize": Scope(only=(("spec", "finalizers"),)),
    "approval": Scope(only=(("status", "conditions"),)),
}

# What a delete request changes on an object that is deleted gracefully (or kept by finalizers).
DELETION = Scope(
    only=(
        ("metadata", "deletionTimestamp"),
        ("metadata", "deletionGracePeriodSeconds"),
        ("metadata", "finalizers"),
        _GENERATION,
    )
)
_NOT_STATUS = Scope(never=(("status",),))

# Changes the apiserver makes as the consequence of any accepted write, named by no request body.
SIDE_EFFECTS: tuple[Pattern, ...] = (_GENERATION, ("metadata", "resourceVersion"))


def hard_scope(verb: str, subresource: str, *, has_status: bool) -> Scope:
    """What a write of ``verb`` to ``subresource`` ("" for the object itself) can change."""
    if subresource:
        return _SUBRESOURCES.get(subresource, EVERYTHING)
    if verb in ("delete", "deletecollection"):
        return DELETION
    return _NOT_STATUS if has_status else EVERYTHING


def named_by(request: Any, diff: Diff) -> bool | None:
    """Whether a patch document names the changed field; None when the document cannot tell (an
    apply configuration or a whole object, which may drop fields it does not list)."""
    if isinstance(request, list):
        return _json_patch_names(request, diff.segments)
    if isinstance(request, Mapping):
        if "apiVersion" in request and "kind" in request:
            return None
        return _merge_patch_names(request, diff)
    return None


def _merge_patch_names(patch: Mapping[str, Any], diff: Diff) -> bool:
    node: Any = patch
    segments = diff.segments
    for depth, seg in enumerate(segments):
        if isinstance(node, Mapping):
            if node.get("$patch") in ("replace", "delete"):
                return True
            if not isinstance(seg, str):
                return True  # a map in the patch where the object has a list: replaced whole
            if seg in node:
                node = node[seg]
                continue
            if f"$setElementOrder/{seg}" in node or f"$deleteFromPrimitiveList/{seg}" in node:
                return True
            retain = node.get("$retainKeys")
            return isinstance(retain, list) and seg not in retain
        if isinstance(node, list):
            if not isinstance(seg, tuple):
                return True  # positions: the patch replaces the list
            key, value = seg
            item = next((i for i in node if isinstance(i, Mapping) and str(i.get(key)) == value), None)
            if item is None:
                # A strategic merge leaves unlisted items alone; a JSON merge patch replaces the list,
                # which can only remove them. So an unlisted item was named only if it went away.
                return depth == len(segments) - 1 and diff.new is None
            node = item
            continue
        return True  # a scalar or null in the patch replaces everything below it
    return True


def _json_patch_names(operations: list[Any], segments: Sequence[Segment]) -> bool:
    for operation in operations:
        if not isinstance(operation, Mapping):
            continue
        for field in ("path", "from"):
            pointer = operation.get(field)
            if isinstance(pointer, str) and _pointer_covers(pointer, segments):
                return True
    return False


def _pointer_covers(pointer: str, segments: Sequence[Segment]) -> bool:
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]] if pointer else []
    for token, seg in zip(tokens, segments, strict=False):
        if isinstance(seg, str):
            if token != seg:
                return False
        elif not (token.isdigit() or token == "-"):
            return False
        # A position in the pointer cannot be matched to a keyed item: assume it may be this one.
    return True
