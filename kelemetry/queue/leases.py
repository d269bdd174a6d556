"""How many partitions each worker should own, and which free ones it tries first.

Every worker computes the same answer from the same membership list, without talking to the
others: members sorted by id, the first ``partitions % members`` of them own one more. So 3
workers on 16 partitions settle at 6/5/5 and no two workers keep wanting the same extra one.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Iterable


def share(members: Iterable[str], me: str, partitions: int) -> int:
    """The number of partitions ``me`` should own while ``members`` (``me`` among them) live."""
    everyone = sorted(set(members) | {me})
    base, extra = divmod(partitions, len(everyone))
    return base + (1 if everyone.index(me) < extra else 0)


def candidates(me: str, partitions: int, taken: Collection[int]) -> list[int]:
    """Free partitions in the order ``me`` tries them: from a point of its own, so workers starting
    together do not all race for partition 0."""
    start = zlib.crc32(me.encode()) % partitions
    ordered = [(start + step) % partitions for step in range(partitions)]
    return [p for p in ordered if p not in taken]


def extras(owned: Iterable[int], count: int) -> list[int]:
    """The ``count`` owned partitions to give up: the highest numbered, so the choice is stable."""
    return sorted(owned, reverse=True)[:count] if count > 0 else []
