"""A replica's connection to NATS, made in the background so the replica can start before NATS.

Until the first connection (and its layout declaration) succeeds, and whenever the connection is
lost, `Link.stream` refuses with the reason (the webhook answers 503, ``/readyz`` shows it); the
client reconnects by itself once connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from kelemetry import errors
from kelemetry.queue.jetstream import JetStream
from kelemetry.queue.layout import QueueSettings

logger = logging.getLogger(__name__)

RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0)


class Link:
    def __init__(self, settings: QueueSettings, name: str) -> None:
        self.settings = settings
        self.name = name
        self._stream: JetStream | None = None
        self._task: asyncio.Task[None] | None = None
        self._problem = f"connecting to NATS at {settings.url}"

    def start(self) -> None:
        """Begin connecting (on the running event loop)."""
        self._task = asyncio.get_running_loop().create_task(self._connect(), name="kelemetry-nats-connect")

    async def _connect(self) -> None:
        attempt = 0
        while True:
            try:
                stream = await JetStream.connect(self.settings, self.name)
            except errors.QueueError as exc:
                problem = str(exc)
                if problem != self._problem:
                    logger.warning("%s; retrying", problem)
                self._problem = problem
                await asyncio.sleep(RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)])
                attempt += 1
                continue
            self._stream = stream
            logger.info(
                "connected to NATS at %s (max message %d bytes)", self.settings.url, stream.max_payload
            )
            return

    def stream(self) -> JetStream:
        """The connected stream, or a `QueueError` saying why there is none now."""
        stream = self._stream
        if stream is None:
            raise errors.QueueError(self._problem)
        if not stream.connected:
            raise errors.QueueError(f"the connection to NATS at {self.settings.url} is lost; reconnecting")
        return stream

    def problems(self) -> list[str]:
        try:
            self.stream()
        except errors.QueueError as exc:
            return [str(exc)]
        return []

    @property
    def connected(self) -> bool:
        return not self.problems()

    async def stop(self) -> None:
        """Stop connecting, and drain the connection: what was sent is flushed before it closes."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.close()
