"""From an accepted audit batch to JetStream messages, and their publishing.

A batch is split by partition (`layout.partition_of` on each event's objectRef), keeping the order
of the events within each partition; each partition's events become one ``EventList`` body, cut
into chunks when it would pass the server's message limit. A chunk's ``Nats-Msg-Id`` is a hash of
the cluster, the partition, the chunk's index and its bytes, so the apiserver re-sending a batch
(its 200 lost, or a 503 after some chunks were stored) makes the same ids, and JetStream drops the
chunks it already holds.

The chunks of one partition are published one after the other (their order in the stream is the
order of the events); partitions are published concurrently. The batch counts as published only
when JetStream acknowledged every chunk.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from kelemetry import errors
from kelemetry.queue import jetstream, layout
from kelemetry.receivers.auditwire import AuditEvent, cut, encode_batch

# Room left under the server's max_payload for the headers (cluster, time, message id) and the
# protocol line: a chunk plus its headers must fit in one message.
HEADROOM = 4096
_EMPTY_LIST = len(encode_batch([]))


@dataclass(frozen=True, slots=True)
class Chunk:
    """One message to publish: part of a partition's events as an ``EventList`` body."""

    partition: int
    index: int
    data: bytes
    events: int
    msg_id: str


@dataclass(frozen=True, slots=True)
class Sent:
    """What publishing a batch did: messages stored, and those JetStream already had."""

    messages: int
    duplicates: int
    events: int
    bytes: int


class Publishes(Protocol):
    """The one call of `jetstream.JetStream` the publisher needs."""

    async def publish(
        self, subject: str, data: bytes, *, msg_id: str | None, headers: dict[str, str], timeout: float = ...
    ) -> jetstream.Published: ...


def partition_of_event(event: AuditEvent, partitions: int) -> int:
    """An event's partition; one without an objectRef goes where the empty key does."""
    ref = event.objectRef
    if ref is None:
        return layout.partition_of("", "", "", partitions)
    return layout.partition_of(ref.namespace, ref.resource, ref.name, partitions)


def split(events: Sequence[AuditEvent], partitions: int) -> dict[int, list[AuditEvent]]:
    """The events of each partition, in the batch's order."""
    found: dict[int, list[AuditEvent]] = {}
    for event in events:
        found.setdefault(partition_of_event(event, partitions), []).append(event)
    return found


def cut_list(events: list[AuditEvent], limit: int) -> list[list[AuditEvent]]:
    """``events`` in consecutive groups whose ``EventList`` body is at most ``limit`` bytes. An
    event that cannot fit alone is refused (413) by its auditID."""
    groups: list[list[AuditEvent]] = []
    group: list[AuditEvent] = []
    size = _EMPTY_LIST
    for event in events:
        alone = len(encode_batch([event]))
        if alone > limit:
            raise errors.BodyTooLarge(
                f"event {cut(event.auditID, 100)!r} is {alone} bytes, over the {limit}-byte message "
                "limit of the NATS server (its max_payload less room for headers)"
            )
        grown = size + (alone - _EMPTY_LIST) + (1 if group else 0)  # a comma between items
        if group and grown > limit:
            groups.append(group)
            group, grown = [], alone
        group.append(event)
        size = grown
    if group:
        groups.append(group)
    return groups


def message_id(cluster: str, partition: int, index: int, data: bytes) -> str:
    digest = hashlib.sha256()
    for part in (cluster.encode(), str(partition).encode(), str(index).encode()):
        digest.update(len(part).to_bytes(4, "big"))
        digest.update(part)
    digest.update(data)
    return digest.hexdigest()


def plan(cluster: str, events: Sequence[AuditEvent], partitions: int, limit: int) -> list[list[Chunk]]:
    """The chunks of a batch, one list per partition (in the order to publish them)."""
    planned: list[list[Chunk]] = []
    for partition, those in sorted(split(events, partitions).items()):
        whole = encode_batch(those)
        # Nearly always one chunk: only a partition's share over the message limit is measured and cut.
        bodies = (
            [(whole, len(those))]
            if len(whole) <= limit
            else [(encode_batch(group), len(group)) for group in cut_list(those, limit)]
        )
        planned.append(
            [
                Chunk(partition, index, data, count, message_id(cluster, partition, index, data))
                for index, (data, count) in enumerate(bodies)
            ]
        )
    return planned


async def _publish_partition(
    stream: Publishes, chunks: list[Chunk], headers: dict[str, str], timeout: float
) -> tuple[int, int]:
    duplicates = 0
    for chunk in chunks:
        published = await stream.publish(
            layout.audit_subject(chunk.partition),
            chunk.data,
            msg_id=chunk.msg_id,
            headers=headers,
            timeout=timeout,
        )
        duplicates += published.duplicate
    return len(chunks), duplicates


async def publish(
    stream: Publishes,
    planned: list[list[Chunk]],
    *,
    cluster: str,
    received_us: int,
    timeout: float = 5.0,
) -> Sent:
    """Publish every chunk and return when JetStream acknowledged them all. Any failure raises
    (``QueueFull`` first if the stream was full anywhere), after every partition's publishing has
    ended, so nothing runs on behind the answer."""
    headers = {layout.HEADER_CLUSTER: cluster, layout.HEADER_RECEIVED: str(received_us)}
    results = await asyncio.gather(
        *(_publish_partition(stream, chunks, headers, timeout) for chunks in planned),
        return_exceptions=True,
    )
    failures = [result for result in results if isinstance(result, BaseException)]
    if failures:
        full = next((f for f in failures if isinstance(f, errors.QueueFull)), None)
        raise full or failures[0]
    counts = [result for result in results if not isinstance(result, BaseException)]
    return Sent(
        messages=sum(messages for messages, _ in counts),
        duplicates=sum(duplicates for _, duplicates in counts),
        events=sum(chunk.events for chunks in planned for chunk in chunks),
        bytes=sum(len(chunk.data) for chunks in planned for chunk in chunks),
    )
