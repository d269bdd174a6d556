"""The linkers by name: an explicit registry, consulted in order after the ownerReference."""

from __future__ import annotations

from kelemetry.linker.links import LinkerFactory
from kelemetry.linker.systems import annotation

DEFAULT = ("annotation",)


def registry() -> dict[str, LinkerFactory]:
    return {"annotation": annotation.ParentLinkAnnotation}
