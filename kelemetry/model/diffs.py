"""Field-level differences between two versions of one object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Segment = str | int | tuple[str, str]
"""One step of a path: a map key, a list position, or a list item named by its merge key
(``("type", "Available")`` for the condition whose ``type`` is ``Available``)."""


@dataclass(frozen=True, slots=True)
class Diff:
    """One changed field: ``path`` as in ``spec.template.spec.containers[name=nginx].image``; a side
    that does not exist is None. ``segments`` is the same path as steps, for code that reasons about
    which part of an object a change touched (attribution); it is empty only for hand-made diffs."""

    path: str
    old: Any
    new: Any
    segments: tuple[Segment, ...] = ()
