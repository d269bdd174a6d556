"""A partition's state at a stream sequence: its working store and the pipeline's memory, as bytes.

A worker that takes a partition over starts from the last snapshot instead of from nothing: the
store file (spans, objects and object versions written so far, which a later owner change moves
and a later write's diff is computed against) and what the pipeline keeps only in memory — the
change tracker's recent versions and claimed changes, the owner graph, the aggregator's record of
object spans already written, the event placer and the kind resolver. Replaying the stream after
``seq`` onto that state gives the same spans, with the same ids and content, as the worker that
wrote the snapshot would have given.

Since format 2 a snapshot also carries the export position, because a worker exports a span only
once it has settled and so snapshots a store holding rows not yet sent: the follower's cursor and
the (stream sequence, store write sequence) pairs of the messages still settling. A format 1
snapshot was only ever taken once everything in it was exported, so it reads as "cursor at the
end, nothing pending". A format this worker does not know (written by a newer version) is refused
with `UnknownFormat`: guessing could skip spans never exported or trim what the newer one needs.
"""

from __future__ import annotations

import os
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kelemetry import errors
from kelemetry.kube.kinds import KindResolver
from kelemetry.pipeline import Pipeline
from kelemetry.store.sqlite import SpanStore

FORMAT = 2
_ALL_EXPORTED_FORMAT = 1
"""Taken only when every span in the store had been exported."""

Pending = tuple[tuple[int, int], ...]
"""(stream sequence, store write sequence after it) of the messages whose spans are still settling."""


class UnknownFormat(errors.QueueError):
    """The snapshot was written in a format this version cannot read."""


@dataclass(frozen=True, slots=True)
class Memory:
    """The pipeline's in-memory state. Pickled as one object, so the change tracker's references
    to the resolver still point at the resolver restored beside it."""

    resolver: KindResolver
    changes: Any
    graph: Any
    aggregator: Any
    placer: Any


@dataclass(frozen=True, slots=True)
class Restored:
    seq: int
    memory: Memory
    cursor: int | None
    """The export cursor at the snapshot; None: everything in the store had been exported."""
    pending: Pending = ()


def capture(store: SpanStore, pipeline: Pipeline, seq: int, cursor: int, pending: Pending = ()) -> bytes:
    """The snapshot of a partition whose stream is processed up to ``seq``, exported up to write
    sequence ``cursor``, with the ``pending`` messages' spans still settling."""
    memory = Memory(
        pipeline.converter.resolver, pipeline.changes, pipeline.graph, pipeline.aggregator, pipeline.placer
    )
    payload = {
        "format": FORMAT,
        "seq": seq,
        "store": store.image(),
        "memory": memory,
        "cursor": cursor,
        "pending": [list(pair) for pair in pending],
    }
    return zlib.compress(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL), 1)


def restore(data: bytes, store_path: Path) -> Restored:
    """Write the snapshot's store to ``store_path`` (replacing whatever was there) and give back its
    sequence and memory."""
    try:
        # Trusted input: snapshots are written only by our own workers, into the object store of the
        # operator's NATS, which no one else may write to (the same trust as the audit stream).
        payload = pickle.loads(zlib.decompress(data))
    except Exception as exc:
        raise errors.QueueError(f"the snapshot {store_path.name} is unreadable: {exc}") from None
    version = payload.get("format") if isinstance(payload, dict) else None
    if version not in (FORMAT, _ALL_EXPORTED_FORMAT):
        raise UnknownFormat(
            f"the snapshot {store_path.name} has format {version!r}, which this version does not read "
            f"(it writes {FORMAT}): run the version that wrote it"
        )
    discard(store_path)
    tmp = store_path.with_name(store_path.name + ".restoring")
    tmp.write_bytes(payload["store"])
    os.replace(tmp, store_path)
    if version == _ALL_EXPORTED_FORMAT:
        return Restored(int(payload["seq"]), payload["memory"], None)
    pending = tuple((int(message), int(written)) for message, written in payload["pending"])
    return Restored(int(payload["seq"]), payload["memory"], int(payload["cursor"]), pending)


def discard(store_path: Path) -> None:
    """Remove a working store and the files beside it (write-ahead log, export cursor)."""
    for suffix in ("", "-wal", "-shm", ".otlp-cursor"):
        Path(str(store_path) + suffix).unlink(missing_ok=True)


def apply(pipeline: Pipeline, memory: Memory) -> None:
    """Give a pipeline built on the restored store (with ``memory.resolver``) the snapshot's memory."""
    if pipeline.converter.resolver is not memory.resolver:
        raise ValueError("build the pipeline with the snapshot's resolver first")
    pipeline.changes = memory.changes
    pipeline.graph = memory.graph
    pipeline.aggregator = memory.aggregator
    pipeline.placer = memory.placer
