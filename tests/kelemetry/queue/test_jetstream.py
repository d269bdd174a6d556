"""The one module that talks to NATS, against a real nats-server."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from kelemetry import errors
from kelemetry.queue import layout
from kelemetry.queue.jetstream import JetStream
from tests.natsserver import MAX_PAYLOAD, NatsServer

T = TypeVar("T")


def run(server: NatsServer, body: Callable[[JetStream], Awaitable[T]], **settings: int) -> T:
    async def main() -> T:
        stream = await JetStream.connect(layout.QueueSettings(url=server.url, **settings), "test")
        try:
            return await body(stream)
        finally:
            await stream.close()

    return asyncio.run(main())


def test_a_message_id_published_twice_is_stored_once(nats_server: NatsServer) -> None:
    async def body(stream: JetStream) -> list[tuple[int, bool]]:
        found = []
        for data in (b"one", b"one", b"two"):
            published = await stream.publish(
                layout.audit_subject(2), data, msg_id=data.decode(), headers={layout.HEADER_CLUSTER: "c"}
            )
            found.append((published.seq, published.duplicate))
        return found

    assert run(nats_server, body) == [(1, False), (1, True), (2, False)]


def test_a_reader_returns_a_partitions_messages_in_order_with_their_headers(nats_server: NatsServer) -> None:
    async def body(stream: JetStream) -> list[tuple[int, str, bytes]]:
        for i in range(5):
            await stream.publish(
                layout.audit_subject(i % 2),
                f"m{i}".encode(),
                msg_id=None,
                headers={layout.HEADER_CLUSTER: "c"},
            )
        reader = await stream.reader(0, 1)
        try:
            messages = await reader.fetch(10, timeout=2.0)
        finally:
            await reader.close()
        assert await stream.last_seq(0) == 5
        assert await stream.last_seq(7) == 0
        return [(m.seq, m.headers[layout.HEADER_CLUSTER], m.data) for m in messages]

    assert run(nats_server, body) == [(1, "c", b"m0"), (3, "c", b"m2"), (5, "c", b"m4")]


def test_a_full_stream_refuses_with_queue_full(nats_server: NatsServer) -> None:
    async def body(stream: JetStream) -> None:
        await stream.publish(layout.audit_subject(0), b"x" * 3000, msg_id=None, headers={})
        with pytest.raises(errors.QueueFull, match="full"):
            for _ in range(10):
                await stream.publish(layout.audit_subject(0), b"x" * 3000, msg_id=None, headers={})

    run(nats_server, body, max_stream_bytes=8192)


def test_the_connection_knows_the_servers_message_limit(nats_server: NatsServer) -> None:
    async def body(stream: JetStream) -> tuple[int, bool]:
        return stream.max_payload, stream.connected

    assert run(nats_server, body) == (MAX_PAYLOAD, True)


def test_a_replica_with_another_partition_count_is_refused(nats_server: NatsServer) -> None:
    async def nothing(stream: JetStream) -> None:
        return None

    run(nats_server, nothing, partitions=16)
    with pytest.raises(errors.QueueError, match="declared with 16 partitions"):
        run(nats_server, nothing, partitions=8)


def test_compare_and_set_on_the_progress_bucket(nats_server: NatsServer) -> None:
    async def body(stream: JetStream) -> None:
        bucket = layout.PROGRESS_BUCKET
        first = await stream.create(bucket, "part.1", b"a")
        assert first is not None
        assert await stream.create(bucket, "part.1", b"b") is None
        second = await stream.update(bucket, "part.1", b"c", first)
        assert second is not None
        assert await stream.update(bucket, "part.1", b"d", first) is None  # a stale revision is fenced
        entry = await stream.get(bucket, "part.1")
        assert entry is not None and (entry.value, entry.revision) == (b"c", second)
        assert await stream.keys(bucket, "part.") == ["part.1"]

    run(nats_server, body)
