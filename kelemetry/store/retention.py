"""What a retention pass of the span store removed (or, in a dry run, would remove).

Retention counts from when data *arrived* in the store, never from timestamps inside the data:
a replayed incident from last year, a second cluster with older clocks, or one event dated
9999-12-31 by a faulty apiserver must not decide what else gets deleted. The pass itself lives in
``SpanStore.apply_retention`` (it needs the writer's connection); this module holds its result
and the words the CLI and the collector's log use for it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field


def wall_clock_us() -> int:
    """Now, in µs since the epoch: the store's default clock (tests pass their own)."""
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class Removed:
    """Counts of one cluster, or of all of them."""

    traces: int = 0
    spans: int = 0
    objects: int = 0

    def __add__(self, other: Removed) -> Removed:
        return Removed(self.traces + other.traces, self.spans + other.spans, self.objects + other.objects)

    def __bool__(self) -> bool:
        return bool(self.traces or self.spans or self.objects)

    def describe(self) -> str:
        return (
            f"{_count(self.traces, 'trace')}, {_count(self.spans, 'span')}, {_count(self.objects, 'object')}"
        )


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """The outcome of one pass: per cluster what was removed, and whether it was only a dry run."""

    by_cluster: Mapping[str, Removed] = field(default_factory=dict)
    dry_run: bool = False

    @property
    def total(self) -> Removed:
        return sum(self.by_cluster.values(), Removed())

    @property
    def verb(self) -> str:
        return "would be removed" if self.dry_run else "removed"

    def lines(self) -> list[str]:
        """``cluster C: 12 traces, 340 spans, 25 objects removed`` per cluster, then a total line."""
        if not self.total:
            return ["nothing to remove"]
        lines = [
            f"cluster {cluster}: {removed.describe()} {self.verb}"
            for cluster, removed in sorted(self.by_cluster.items())
            if removed
        ]
        lines.append(f"total: {self.total.describe()} {self.verb}")
        return lines


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
