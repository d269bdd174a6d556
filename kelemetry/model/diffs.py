"""Field-level differences between two versions of one object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Diff:
    """One changed field: ``path`` as in ``spec.template.spec.containers[0].image``; a side that
    does not exist is None."""

    path: str
    old: Any
    new: Any
