"""The webhook role of scaled mode: a stateless replica between kube-apiserver and JetStream.

It answers ``POST /audit/<cluster>`` (and ``/audit``) with the embedded webhook's router, so the
checks and answers are the same (token, media type, size, `decode_batch`, then `scrub_batch`:
Secret values and credentials never reach NATS). Instead of an inbox, an accepted batch goes to
the audit stream (`kelemetry.queue.publisher`), and 200 is answered only after JetStream
acknowledged every message of it. A full stream answers 429, NATS away answers 503 with the reason:
the apiserver retries, and the message ids make its retry a duplicate JetStream drops.

Backpressure: bytes of batches being published are bounded per replica (``--max-backlog``); past
the bound a batch is answered 429 at once, so a slow NATS never blocks the apiserver's webhook or
grows this process without bound (kubernetes/kubernetes#85489).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from frontend import access
from frontend.headers import SecurityHeaders
from frontend.timing import RequestTimer
from kelemetry import __version__, errors, metrics
from kelemetry.diff.redact import Redactor
from kelemetry.queue import publisher
from kelemetry.queue.layout import QueueSettings
from kelemetry.queue.link import Link
from kelemetry.receivers import webhook
from kelemetry.receivers.audit import scrub_batch
from kelemetry.receivers.auditwire import decode_batch
from kelemetry.settings import TlsSettings, WebhookSettings

logger = logging.getLogger(__name__)

PUBLISH_TIMEOUT_SECONDS = 5.0
# Ack latencies of a healthy JetStream are milliseconds; the tail shows a slow disk or a lost server.
PUBLISH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class WebhookReplica:
    """One webhook replica: its NATS link, its bound on bytes in flight, and what it counts."""

    def __init__(
        self,
        queue: QueueSettings,
        settings: WebhookSettings,
        redactor: Redactor,
        registry: metrics.Registry,
        *,
        name: str | None = None,
    ) -> None:
        self.queue = queue
        self.settings = settings
        self.redactor = redactor
        self.registry = registry
        self.link = Link(queue, name or f"kelemetry-webhook-{socket.gethostname()}-{os.getpid()}")
        self.counters: Counter[str] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._inflight_bytes = 0
        self._events = registry.counter(
            "kelemetry_queue_published_events_total", "Audit events published to the audit stream."
        )
        self._messages = registry.counter(
            "kelemetry_queue_published_messages_total",
            "Messages JetStream acknowledged, by whether it already had them (a re-sent batch).",
            ("duplicate",),
        )
        self._bytes = registry.counter(
            "kelemetry_queue_published_bytes_total", "Bytes of message bodies published to the audit stream."
        )
        self._latency = registry.histogram(
            "kelemetry_queue_publish_seconds",
            "From a batch's first publish to JetStream's last acknowledgement, by outcome.",
            ("outcome",),
            buckets=PUBLISH_BUCKETS,
        )
        registry.add_source(self.collect)

    # -- lifecycle (on the server's event loop)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.link.start()

    async def stop(self) -> None:
        await self.link.stop()

    # -- the webhook's accept (on a worker thread of the server)

    def accept(self, cluster: str, body: bytes) -> int:
        """Decode, scrub and publish one webhook body; the number of events, once JetStream has all."""
        received_us = time.time_ns() // 1000
        size = len(body)
        with self._lock:
            if self._inflight_bytes + size > self.settings.max_backlog_bytes and self._inflight_bytes > 0:
                raise errors.BacklogFull(self._at_limit())
            self._inflight_bytes += size
        try:
            return self._accept(cluster, body, received_us)
        finally:
            with self._lock:
                self._inflight_bytes -= size

    def _accept(self, cluster: str, body: bytes, received_us: int) -> int:
        events = decode_batch(body, max_skew_us=self.settings.max_clock_skew_seconds * 1_000_000)
        body, events = scrub_batch(body, events, self.redactor)
        del body  # the scrubbed events are what is published
        if not events:
            return 0
        stream = self.link.stream()
        limit = stream.max_payload - publisher.HEADROOM
        planned = publisher.plan(cluster, events, self.queue.partitions, limit)
        loop = self._loop
        if loop is None:
            raise errors.QueueError("the webhook replica is not started")
        started = time.perf_counter()
        future = asyncio.run_coroutine_threadsafe(
            publisher.publish(
                stream, planned, cluster=cluster, received_us=received_us, timeout=PUBLISH_TIMEOUT_SECONDS
            ),
            loop,
        )
        try:
            sent = future.result()
        except errors.QueueError as exc:
            outcome = "full" if isinstance(exc, errors.QueueFull) else "failed"
            self._latency.observe((outcome,), time.perf_counter() - started)
            raise
        self._latency.observe(("ok",), time.perf_counter() - started)
        self._events.inc((), sent.events)
        self._bytes.inc((), sent.bytes)
        self._messages.add(((("false",), sent.messages - sent.duplicates), (("true",), sent.duplicates)))
        if sent.duplicates:
            logger.info(
                "%d of %d messages of a batch of cluster %s were already in the stream (a re-sent batch)",
                sent.duplicates,
                sent.messages,
                cluster,
                extra={"cluster": cluster},
            )
        return len(events)

    # -- health and metrics

    @property
    def inflight_bytes(self) -> int:
        """Bytes of batches being decoded or published now."""
        return self._inflight_bytes

    def problems(self) -> list[str]:
        """Why a batch would not be acknowledged now (empty when ready)."""
        found = self.link.problems()
        if self._inflight_bytes >= self.settings.max_backlog_bytes:
            found.append(self._at_limit())
        return found

    def _at_limit(self) -> str:
        return (
            f"{self._inflight_bytes} bytes are being published, at the limit of "
            f"{self.settings.max_backlog_bytes} (--max-backlog)"
        )

    def collect(self) -> Iterator[metrics.Metric]:
        yield metrics.gauge("kelemetry_build_info", "The running version.", {(__version__,): 1}, ("version",))
        yield from webhook.counter_metrics(self.counters)
        yield metrics.gauge(
            "kelemetry_queue_connected", "1 while the connection to NATS is up.", int(self.link.connected)
        )
        yield metrics.gauge(
            "kelemetry_queue_inflight_bytes",
            "Bytes of accepted batches being published now (bounded by --max-backlog).",
            self.inflight_bytes,
        )


def create_app(replica: WebhookReplica) -> FastAPI:
    """The webhook replica's app: the audit webhook, ``/healthz``, ``/readyz`` and ``/metrics``. The
    webhook's token guards ``/metrics`` too (``frontend.access``)."""
    settings = replica.settings

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await replica.start()
        try:
            yield
        finally:
            await replica.stop()

    app = FastAPI(
        title="kelemetry webhook",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(access.TokenGuard, policy=access.AccessPolicy(token=settings.token))
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestTimer, histogram=RequestTimer.histogram_in(replica.registry))
    app.include_router(
        webhook.create_router(
            replica.accept,
            default_cluster=settings.default_cluster,
            max_body_bytes=settings.max_body_bytes,
            token=settings.token,
            counters=replica.counters,
        )
    )

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        """Whether a batch would be acknowledged now, and if not, why (503)."""
        problems = replica.problems()
        if problems:
            return JSONResponse({"status": "not ready", "reasons": problems}, status_code=503)
        return JSONResponse({"status": "ready", "reasons": []})

    @app.get("/metrics")
    def metrics_page() -> Response:
        return Response(replica.registry.render(), media_type=metrics.CONTENT_TYPE)

    return app


def banner(
    replica: WebhookReplica, host: str, port: int, tls: TlsSettings | None, token_env: str
) -> list[str]:
    """What the replica says on start."""
    shown_host = f"[{host}]" if ":" in host else host
    scheme = "https" if tls else "http"
    lines = [
        f"kelemetry {__version__} webhook replica listening on {scheme}://{shown_host}:{port}",
        f"  audit webhook: {scheme}://{shown_host}:{port}/audit/<cluster>",
        f"  queue:         {replica.queue.url} (JetStream, {replica.queue.partitions} partitions)",
        f"  max backlog:   {replica.settings.max_backlog_bytes} bytes in flight",
    ]
    if replica.settings.token:
        lines.append(f"  token:         required on the webhook and /metrics (${token_env})")
    return lines
