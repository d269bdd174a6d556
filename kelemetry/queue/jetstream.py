"""The one module that talks to NATS: streams, buckets, publishing, partition readers and snapshots.

Both roles use it from asyncio. Every failure of the server or the connection surfaces as a
`kelemetry.errors.QueueError` (``QueueFull`` when the audit stream is at its size limit, so the
webhook can answer 429), never as a nats-py exception, so callers catch our hierarchy only.

The layout (`kelemetry.queue.layout`) is declared idempotently by whichever replica starts first;
a second declaration with the same settings is a no-op, and a replica started with a different
partition count is refused rather than left to read subjects nobody writes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.js import api
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from kelemetry import errors
from kelemetry.queue import layout

logger = logging.getLogger(__name__)

# Server error codes (nats-server's JetStream API errors) that mean "the stream is full".
_FULL_CODES = {10077, 10078}  # maximum bytes / maximum messages exceeded
_STATE_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Published:
    """JetStream's answer to one publish: the stream sequence, and whether it was a duplicate."""

    seq: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Message:
    """One message read back from a partition."""

    seq: int
    headers: Mapping[str, str]
    data: bytes
    time_us: int = 0
    """When JetStream stored it (0 where not read)."""
    subject: str = ""


@dataclass(frozen=True, slots=True)
class Entry:
    """A key-value entry and its revision (for compare-and-set)."""

    value: bytes
    revision: int


def _wrap(exc: BaseException, what: str) -> errors.QueueError:
    if isinstance(exc, nats.js.errors.APIError) and exc.err_code in _FULL_CODES:
        return errors.QueueFull(f"{what}: the audit stream is full ({exc.description})")
    text = getattr(exc, "description", None) or str(exc) or type(exc).__name__
    return errors.QueueError(f"{what}: {text}")


class JetStream:
    """A connection to NATS with the scaled mode's streams and buckets."""

    def __init__(self, nc: Any, settings: layout.QueueSettings) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self.settings = settings
        self._kv: dict[str, KeyValue] = {}
        self._state: ObjectStore | None = None
        self.reconnects = 0
        """Times the connection came back: a restarted server has forgotten our (in-memory,
        ephemeral) consumers, and a pull on a forgotten consumer only ever times out."""

    @classmethod
    async def connect(cls, settings: layout.QueueSettings, name: str, *, declare: bool = True) -> JetStream:
        """Connect (retrying for ever while the server is away, as a long-running replica should)
        and declare the layout (a tool that only reads what the replicas declared passes False)."""

        async def closed() -> None:
            logger.info("NATS connection closed")

        async def disconnected() -> None:
            logger.warning("NATS connection lost; reconnecting")

        connections: list[JetStream] = []

        async def reconnected() -> None:
            logger.info("NATS connection back")
            for connection in connections:
                connection.reconnects += 1

        async def error(exc: Exception) -> None:
            logger.warning("NATS: %s", exc)

        try:
            nc = await nats.connect(
                servers=settings.servers(),
                name=name,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                connect_timeout=5,
                closed_cb=closed,
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
                error_cb=error,
            )
        except Exception as exc:
            raise errors.QueueError(f"cannot connect to NATS at {settings.url}: {exc}") from None
        stream = cls(nc, settings)
        connections.append(stream)
        try:
            if declare:
                await stream.declare()
        except BaseException:
            await nc.close()
            raise
        return stream

    @property
    def max_payload(self) -> int:
        return int(self._nc.max_payload)

    @property
    def connected(self) -> bool:
        return bool(self._nc.is_connected)

    async def declare(self) -> None:
        s = self.settings
        subjects = [f"{layout.AUDIT_SUBJECT}.*"]
        try:
            try:
                info = await self._js.stream_info(layout.AUDIT_STREAM)
            except nats.js.errors.NotFoundError:
                info = None
            if info is None:
                await self._js.add_stream(
                    api.StreamConfig(
                        name=layout.AUDIT_STREAM,
                        subjects=subjects,
                        retention=api.RetentionPolicy.LIMITS,
                        storage=api.StorageType.FILE,
                        discard=api.DiscardPolicy.NEW,
                        max_bytes=s.max_stream_bytes,
                        num_replicas=s.replicas,
                        duplicate_window=layout.DEFAULT_DUPLICATE_WINDOW_SECONDS,
                        description=f"kelemetry audit events; partitions={s.partitions}",
                    )
                )
            else:
                declared = (info.config.description or "").rpartition("partitions=")[2]
                if declared and declared != str(s.partitions):
                    raise errors.QueueError(
                        f"the audit stream was declared with {declared} partitions, this replica was started "
                        f"with --partitions {s.partitions}: every replica must use the same count"
                    )
            await self._ensure_stream(
                api.StreamConfig(
                    name=layout.QUARANTINE_STREAM,
                    subjects=[f"{layout.QUARANTINE_SUBJECT}.*"],
                    retention=api.RetentionPolicy.LIMITS,
                    storage=api.StorageType.FILE,
                    max_age=30 * 86_400,
                    num_replicas=s.replicas,
                )
            )
            self._kv[layout.LEASES_BUCKET] = await self._bucket(layout.LEASES_BUCKET, ttl=s.lease_seconds)
            self._kv[layout.PROGRESS_BUCKET] = await self._bucket(layout.PROGRESS_BUCKET, ttl=None)
            try:
                self._state = await self._js.object_store(layout.STATE_STORE)
            except nats.js.errors.NotFoundError:
                self._state = await self._js.create_object_store(
                    layout.STATE_STORE,
                    config=api.ObjectStoreConfig(
                        bucket=layout.STATE_STORE, storage=api.StorageType.FILE, replicas=s.replicas
                    ),
                )
        except errors.QueueError:
            raise
        except Exception as exc:
            raise _wrap(exc, "cannot declare the JetStream layout") from None

    async def _ensure_stream(self, config: api.StreamConfig) -> None:
        try:
            await self._js.stream_info(config.name)
        except nats.js.errors.NotFoundError:
            await self._js.add_stream(config)

    async def _bucket(self, name: str, ttl: float | None) -> KeyValue:
        try:
            bucket: KeyValue = await self._js.key_value(name)
            return bucket
        except nats.js.errors.NotFoundError:
            created: KeyValue = await self._js.create_key_value(
                api.KeyValueConfig(
                    bucket=name,
                    history=1,
                    ttl=ttl,
                    storage=api.StorageType.FILE,
                    replicas=self.settings.replicas,
                )
            )
            return created

    async def close(self) -> None:
        """Drain and close; never raises (a replica stopping while NATS is away must still exit)."""
        try:
            await self._nc.drain()
        except Exception:
            try:
                await self._nc.close()
            except Exception as exc:
                logger.warning("NATS connection closed uncleanly: %s", exc)

    # -- publishing

    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        msg_id: str | None,
        headers: Mapping[str, str],
        timeout: float = 5.0,
    ) -> Published:
        """Publish and wait until JetStream has it (stored on its replicas)."""
        all_headers = dict(headers)
        if msg_id is not None:
            all_headers["Nats-Msg-Id"] = msg_id
        try:
            ack = await self._js.publish(subject, data, timeout=timeout, headers=all_headers)
        except Exception as exc:
            raise _wrap(exc, f"cannot publish to {subject}") from None
        return Published(int(ack.seq), bool(ack.duplicate))

    # -- key-value (leases, progress)

    def _bucket_of(self, bucket: str) -> KeyValue:
        return self._kv[bucket]

    async def get(self, bucket: str, key: str) -> Entry | None:
        try:
            entry = await self._bucket_of(bucket).get(key)
        except nats.js.errors.KeyNotFoundError:
            return None
        except Exception as exc:
            raise _wrap(exc, f"cannot read {bucket}/{key}") from None
        if entry.value is None:
            return None
        return Entry(bytes(entry.value), int(entry.revision or 0))

    async def create(self, bucket: str, key: str, value: bytes) -> int | None:
        """Write ``key`` only if it does not exist (or was deleted); its revision, or None if it exists."""
        try:
            return int(await self._bucket_of(bucket).create(key, value))
        except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.BadRequestError):
            return None
        except Exception as exc:
            raise _wrap(exc, f"cannot create {bucket}/{key}") from None

    async def update(self, bucket: str, key: str, value: bytes, revision: int) -> int | None:
        """Compare-and-set: write ``key`` if it is still at ``revision``; the new revision, or None."""
        try:
            return int(await self._bucket_of(bucket).update(key, value, last=revision))
        except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.BadRequestError):
            return None
        except Exception as exc:
            raise _wrap(exc, f"cannot update {bucket}/{key}") from None

    async def put(self, bucket: str, key: str, value: bytes) -> int:
        """Write ``key`` whatever it holds (a worker's own membership entry); its new revision."""
        try:
            return int(await self._bucket_of(bucket).put(key, value))
        except Exception as exc:
            raise _wrap(exc, f"cannot write {bucket}/{key}") from None

    async def delete(self, bucket: str, key: str, revision: int | None = None) -> bool:
        try:
            await self._bucket_of(bucket).delete(key, last=revision)
        except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.BadRequestError):
            return False
        except Exception as exc:
            raise _wrap(exc, f"cannot delete {bucket}/{key}") from None
        return True

    async def keys(self, bucket: str, prefix: str) -> list[str]:
        try:
            found = await self._bucket_of(bucket).keys()
        except nats.js.errors.NoKeysError:
            return []
        except Exception as exc:
            raise _wrap(exc, f"cannot list {bucket}") from None
        return sorted(key for key in found if key.startswith(prefix))

    # -- reading a partition

    async def reader(self, partition: int, start_seq: int) -> PartitionReader:
        """Messages of ``partition`` from stream sequence ``start_seq`` on, in order."""
        reader = PartitionReader(self, partition, start_seq)
        await reader.open()
        return reader

    async def last_seq(self, partition: int) -> int:
        """The newest stream sequence holding a message of ``partition`` (0: none)."""
        try:
            message = await self._js.get_last_msg(layout.AUDIT_STREAM, layout.audit_subject(partition))
        except nats.js.errors.NotFoundError:
            return 0
        except Exception as exc:
            raise _wrap(exc, f"cannot read partition {partition}") from None
        return int(message.seq or 0)

    async def trim(self, partition: int, below_seq: int) -> None:
        """Remove ``partition``'s messages with a stream sequence under ``below_seq``."""
        try:
            await self._js.purge_stream(
                layout.AUDIT_STREAM, seq=below_seq, subject=layout.audit_subject(partition)
            )
        except Exception as exc:
            raise _wrap(exc, f"cannot trim partition {partition}") from None

    # -- snapshots

    async def put_state(self, name: str, data: bytes) -> None:
        assert self._state is not None
        try:
            await self._state.put(name, data)
        except Exception as exc:
            raise _wrap(exc, f"cannot save the state {name}") from None

    async def get_state(self, name: str) -> bytes | None:
        assert self._state is not None
        try:
            result = await self._state.get(name)
        except (
            nats.js.errors.NotFoundError,
            nats.js.errors.ObjectNotFoundError,
            nats.js.errors.ObjectDeletedError,
        ):
            return None
        except Exception as exc:
            raise _wrap(exc, f"cannot read the state {name}") from None
        return bytes(result.data or b"")

    # -- quarantine

    async def quarantine(
        self, partition: int, data: bytes, headers: Mapping[str, str], msg_id: str | None = None
    ) -> None:
        """Set input aside; ``msg_id`` lets a worker that repeats a batch after a crash not set the
        same input aside twice."""
        await self.publish(layout.quarantine_subject(partition), data, msg_id=msg_id, headers=headers)

    async def quarantined(self, limit: int = 1000) -> list[Message]:
        """What workers set aside, oldest first (at most ``limit``)."""
        found: list[Message] = []
        try:
            sub = await self._js.pull_subscribe(
                f"{layout.QUARANTINE_SUBJECT}.*",
                stream=layout.QUARANTINE_STREAM,
                config=api.ConsumerConfig(
                    ack_policy=api.AckPolicy.NONE,
                    deliver_policy=api.DeliverPolicy.ALL,
                    inactive_threshold=30.0,
                ),
            )
        except Exception as exc:
            raise _wrap(exc, "cannot read the quarantine") from None
        try:
            while len(found) < limit:
                try:
                    batch = await sub.fetch(min(256, limit - len(found)), timeout=1.0)
                except (TimeoutError, nats.errors.TimeoutError):  # nats-py raises either, by path
                    break
                for msg in batch:
                    stamp = msg.metadata.timestamp
                    found.append(
                        Message(
                            int(msg.metadata.sequence.stream),
                            dict(msg.headers or {}),
                            msg.data,
                            int(stamp.timestamp() * 1_000_000) if stamp is not None else 0,
                            str(msg.subject),
                        )
                    )
        finally:
            await sub.unsubscribe()
        return found

    async def declared_partitions(self) -> int:
        """The partition count the audit stream was declared with."""
        try:
            info = await self._js.stream_info(layout.AUDIT_STREAM)
        except nats.js.errors.NotFoundError:
            raise errors.QueueError(
                "no audit stream: no replica of the scaled mode ran on this NATS"
            ) from None
        except Exception as exc:
            raise _wrap(exc, "cannot read the audit stream") from None
        declared = (info.config.description or "").rpartition("partitions=")[2]
        if not declared.isdigit():
            raise errors.QueueError(
                f"the audit stream does not say its partitions: {info.config.description!r}"
            )
        return int(declared)

    async def quarantine_size(self) -> tuple[int, int]:
        """Messages and bytes in the quarantine."""
        try:
            info = await self._js.stream_info(layout.QUARANTINE_STREAM)
        except Exception as exc:
            raise _wrap(exc, "cannot read the quarantine") from None
        return int(info.state.messages or 0), int(info.state.bytes or 0)

    async def unquarantine(self, seq: int) -> None:
        """Remove one message from the quarantine (retried or purged)."""
        try:
            await self._js.delete_msg(layout.QUARANTINE_STREAM, seq)
        except nats.js.errors.NotFoundError:
            pass  # removed already
        except Exception as exc:
            raise _wrap(exc, f"cannot remove quarantined message {seq}") from None

    async def purge_quarantine(self) -> None:
        try:
            await self._js.purge_stream(layout.QUARANTINE_STREAM)
        except Exception as exc:
            raise _wrap(exc, "cannot purge the quarantine") from None


class PartitionReader:
    """An ordered, unacknowledged reader of one partition (an ephemeral consumer). The worker keeps
    its own progress in the progress bucket, so the reader needs no acknowledgements and can be
    recreated at any sequence after a server restart."""

    def __init__(self, stream: JetStream, partition: int, start_seq: int) -> None:
        self._stream = stream
        self.partition = partition
        self.next_seq = max(1, start_seq)
        self._sub: Any = None
        self._opened_at = 0

    async def open(self) -> None:
        js = self._stream._js
        self._opened_at = self._stream.reconnects
        try:
            self._sub = await js.pull_subscribe(
                layout.audit_subject(self.partition),
                stream=layout.AUDIT_STREAM,
                config=api.ConsumerConfig(
                    ack_policy=api.AckPolicy.NONE,
                    deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                    opt_start_seq=self.next_seq,
                    inactive_threshold=60.0,
                    mem_storage=True,
                ),
            )
        except Exception as exc:
            raise _wrap(exc, f"cannot read partition {self.partition}") from None

    async def fetch(self, count: int, timeout: float) -> list[Message]:
        """Up to ``count`` messages, waiting at most ``timeout`` seconds for the first; [] if none.
        A reader that failed (server restarted, consumer gone) is reopened where it stopped."""
        if self._sub is not None and self._opened_at != self._stream.reconnects:
            await self.close()
        if self._sub is None:
            await self.open()
        try:
            batch = await self._sub.fetch(count, timeout=timeout)
        except (TimeoutError, nats.errors.TimeoutError):
            return []
        except Exception as exc:
            await self.close()
            raise _wrap(exc, f"cannot read partition {self.partition}") from None
        found: list[Message] = []
        for msg in batch:
            seq = int(msg.metadata.sequence.stream)
            if seq < self.next_seq:
                continue  # a consumer reopened at an older point repeats what we have
            found.append(Message(seq, dict(msg.headers or {}), msg.data))
            self.next_seq = seq + 1
        return found

    async def close(self) -> None:
        sub, self._sub = self._sub, None
        if sub is None:
            return
        try:
            await sub.unsubscribe()
        except Exception:
            pass
