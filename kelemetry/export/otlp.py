"""OTLP export: the store's spans, followed in write order, sent to an OTLP endpoint.

The exporter tails the embedded store by its write sequence instead of keeping its own queue:
spans that cannot be sent (endpoint down) simply wait on disk in the store, memory stays bounded
by one batch, and the position reached is saved beside the store so a restart resumes there.
Delivery is at-least-once; span ids are deterministic, so a backend sees repeats as the same span.

Spans are made through the OpenTelemetry SDK's public tracer API: a per-thread id source hands
the SDK our deterministic ids, parents are given as non-recording span contexts, and finished
spans are collected and handed to the SDK's OTLP exporter (gRPC or HTTP/protobuf) ourselves so
we know whether each batch arrived. The only module that imports opentelemetry.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

from opentelemetry import trace as trace_api
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

from kelemetry import __version__, errors
from kelemetry.model.events import TraceSource
from kelemetry.model.spans import SpanRecord, span_tags
from kelemetry.store.sqlite import StoreReader

logger = logging.getLogger(__name__)

# Short enough that spans reach a restarted backend within seconds (freshness target: 5 s).
MAX_BACKOFF_SECONDS = 5.0


def create_exporter(endpoint: str, timeout_seconds: float = 10.0) -> SpanExporter:
    """An OTLP span exporter for ``grpc://host:port``, ``http(s)://host:port[/path]`` or ``host:port``."""
    parsed = urlparse(endpoint if "://" in endpoint else f"grpc://{endpoint}")
    try:
        port = parsed.port
    except ValueError as exc:
        raise errors.ExportError(f"OTLP endpoint {endpoint!r} has an invalid port") from exc
    if not parsed.hostname or (port is None and parsed.scheme in ("grpc", "grpcs")):
        raise errors.ExportError(
            f"OTLP endpoint {endpoint!r} needs a host and port, e.g. grpc://127.0.0.1:4317"
        )
    if parsed.scheme in ("grpc", "grpcs"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        host = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
        return GrpcExporter(
            endpoint=f"{host}:{port}",
            insecure=parsed.scheme == "grpc",
            timeout=timeout_seconds,
        )
    if parsed.scheme in ("http", "https"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        path = parsed.path if parsed.path not in ("", "/") else "/v1/traces"
        return HttpExporter(endpoint=f"{parsed.scheme}://{parsed.netloc}{path}", timeout=timeout_seconds)
    raise errors.ExportError(f"OTLP endpoint {endpoint!r}: scheme must be grpc, grpcs, http or https")


class _PresetIds(IdGenerator):
    """Hands the SDK the ids we computed; set per thread just before a span starts."""

    def __init__(self) -> None:
        self._local = threading.local()

    def preset(self, trace_id: int, span_id: int) -> None:
        self._local.ids = (trace_id, span_id)

    def generate_span_id(self) -> int:
        return int(self._local.ids[1])

    def generate_trace_id(self) -> int:
        return int(self._local.ids[0])


class _Collect(SpanProcessor):
    def __init__(self) -> None:
        self.finished: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.finished.append(span)


class SpanConverter:
    """SpanRecords → SDK ReadableSpans, one tracer provider per trace source (= Jaeger service)."""

    def __init__(self) -> None:
        self._ids = _PresetIds()
        self._collect = _Collect()
        self._tracers: dict[TraceSource, trace_api.Tracer] = {}
        for source in TraceSource:
            provider = TracerProvider(
                resource=Resource.create({"service.name": source.value, "service.version": __version__}),
                id_generator=self._ids,
                shutdown_on_exit=False,
            )
            provider.add_span_processor(self._collect)
            self._tracers[source] = provider.get_tracer("kelemetry", __version__)

    def convert(self, records: Sequence[SpanRecord]) -> list[ReadableSpan]:
        self._collect.finished = []
        for record in records:
            context = None
            if record.parent_id is not None:
                parent = SpanContext(
                    trace_id=record.trace_id,
                    span_id=record.parent_id,
                    is_remote=True,
                    trace_flags=TraceFlags(TraceFlags.SAMPLED),
                )
                context = trace_api.set_span_in_context(NonRecordingSpan(parent))
            self._ids.preset(record.trace_id, record.span_id)
            span = self._tracers[record.source].start_span(
                record.name,
                context=context,
                start_time=record.start_us * 1000,
                attributes={k: v for k, v in span_tags(record).items()},
            )
            for log in record.logs:
                span.add_event(log.kind, {"message": log.message}, timestamp=record.start_us * 1000)
            if record.error:
                span.set_status(Status(StatusCode.ERROR, record.logs[0].message if record.logs else None))
            span.end(end_time=record.end_us * 1000)
        return self._collect.finished


class OtlpFollower:
    """Exports every span of a store, in write order, resuming where it stopped."""

    def __init__(
        self,
        store_path: str | Path,
        endpoint: str,
        *,
        batch_size: int = 512,
        poll_interval_seconds: float = 0.2,
        exporter: SpanExporter | None = None,
    ) -> None:
        self.store_path = Path(store_path)
        self.endpoint = endpoint
        self.batch_size = batch_size
        self.poll_interval = poll_interval_seconds
        self.exporter = exporter or create_exporter(endpoint)
        self.cursor_path = self.store_path.with_name(self.store_path.name + ".otlp-cursor")
        self.cursor = self._load_cursor()
        self.exported = 0
        self.failures = 0
        self._converter = SpanConverter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _load_cursor(self) -> int:
        try:
            saved = json.loads(self.cursor_path.read_text())
        except (OSError, ValueError):
            return 0
        # A new endpoint has seen nothing yet: start from the beginning of the store.
        return int(saved.get("seq", 0)) if saved.get("endpoint") == self.endpoint else 0

    def _save_cursor(self) -> None:
        tmp = self.cursor_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"endpoint": self.endpoint, "seq": self.cursor}))
        os.replace(tmp, self.cursor_path)

    def export_once(self, reader: StoreReader) -> int:
        """Send the next batch; returns the number of spans sent (0: nothing new). Raises on failure."""
        rows = reader.spans_after(self.cursor, self.batch_size)
        if not rows:
            return 0
        spans = self._converter.convert([record for _seq, record in rows])
        result = self.exporter.export(spans)
        if result is not SpanExportResult.SUCCESS:
            raise errors.ExportError(f"OTLP export to {self.endpoint} failed")
        self.cursor = rows[-1][0]
        self._save_cursor()
        self.exported += len(rows)
        return len(rows)

    def drain(self, timeout_seconds: float) -> bool:
        """Export until the store is caught up (used after a replay); False on timeout."""
        reader = StoreReader(self.store_path)
        deadline = time.monotonic() + timeout_seconds
        backoff = 0.5
        try:
            while time.monotonic() < deadline:
                try:
                    if self.export_once(reader) == 0:
                        return True
                    backoff = 0.5
                except errors.ExportError as exc:
                    self.failures += 1
                    logger.warning("%s; retrying in %.1fs", exc, backoff)
                    time.sleep(min(backoff, max(deadline - time.monotonic(), 0)))
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            return False
        finally:
            reader.close()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kelemetry-otlp", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.exporter.shutdown()

    def _run(self) -> None:
        reader = StoreReader(self.store_path)
        backoff = 0.5
        try:
            while not self._stop.is_set():
                try:
                    if self.export_once(reader) == 0:
                        self._stop.wait(self.poll_interval)
                    backoff = 0.5
                except errors.ExportError as exc:
                    self.failures += 1
                    logger.warning("%s; spans wait in the store, retrying in %.1fs", exc, backoff)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                except Exception:
                    self.failures += 1
                    logger.exception("OTLP export failed unexpectedly; retrying")
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
        finally:
            reader.close()
