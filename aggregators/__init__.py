"""Events + owner links → pseudo-span trees.

An aggregator turns one model Event into the spans that place it in a trace: the object spans of
its object and of every owner up to the root for the event's window, then the event's own span.
Aggregators are chosen by name from the explicit registry below; nothing registers itself on
import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from aggregators import hierarchy
from kelemetry.linker.graph import OwnerGraph
from kelemetry.model.events import Event
from kelemetry.model.objects import Incarnation
from kelemetry.model.spans import SpanRecord


class Aggregator(Protocol):
    window_us: int

    def aggregate(self, event: Event, graph: OwnerGraph) -> list[SpanRecord]:
        """Spans to upsert for ``event``: object spans it needs (if not known to be written) and its own."""

    def object_chain(self, obj: Incarnation, window: int, graph: OwnerGraph) -> list[SpanRecord]:
        """Object spans of ``obj`` and its owners in ``window``, written again after a hierarchy change."""

    def forget(self) -> None:
        """Drop the memory of what was written (the write it assumed did not happen)."""


AggregatorFactory = Callable[[int], Aggregator]


def registry() -> dict[str, AggregatorFactory]:
    """Aggregators by name; the factory takes the window length in seconds."""
    return {"hierarchy": hierarchy.HierarchyAggregator}


def create(name: str, window_seconds: int) -> Aggregator:
    factories = registry()
    if name not in factories:
        raise ValueError(f"unknown aggregator {name!r}; known: {', '.join(sorted(factories))}")
    return factories[name](window_seconds)
