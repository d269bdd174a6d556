"""OTLP export: the store's spans, followed in write order, sent to an OTLP endpoint.

The exporter tails the embedded store by its write sequence instead of keeping its own queue:
spans that cannot be sent (endpoint down) simply wait on disk in the store, memory stays bounded
by one batch, and the position reached is saved beside the store so a restart resumes there.
Delivery is at-least-once; span ids are deterministic, so a backend sees repeats as the same span.

Stored rows become an ``ExportTraceServiceRequest`` (the ``opentelemetry-proto`` classes) directly:
going through the SDK's tracer and its Python-level encoder cost about eight times as much CPU
per span (``tests/bench/bench_export.py``). What reaches the backend is what the SDK path sent:
one resource per trace source made by the SDK's ``Resource.create``, the scope ``kelemetry``,
internal spans with our ids, logs as span events, ERROR status on failed requests. The request
goes out over gRPC through the ``TraceService`` stub or as an OTLP/HTTP protobuf POST, configured
from the endpoint and the standard ``OTEL_EXPORTER_OTLP_*`` headers, TLS files and compression
variables as the official exporters read them. One attempt per batch; the follower's loop does
the retrying (``kelemetry.model.backoff.EXPORT``). The only module that imports opentelemetry.
"""

from __future__ import annotations

import email.utils
import gzip
import json
import logging
import os
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import grpc  # type: ignore[import-untyped]
import requests
from google.rpc.error_details_pb2 import RetryInfo  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ScopeSpans, Span, SpanFlags, Status
from opentelemetry.sdk import environment_variables as otel_env
from opentelemetry.sdk.resources import Resource as SdkResource
from opentelemetry.util.re import parse_env_headers

from kelemetry import __version__, errors
from kelemetry.model import backoff
from kelemetry.model.events import TraceSource
from kelemetry.model.spans import SpanRecord, span_tags
from kelemetry.store.sqlite import StoreReader

logger = logging.getLogger(__name__)

USER_AGENT = f"kelemetry/{__version__}"
MAX_RETRY_HINT_SECONDS = 60.0
"""A backend may ask for a longer pause than our backoff (gRPC RetryInfo, HTTP Retry-After); spans
wait on disk meanwhile, so we honour it, but a misconfigured hint must not stall export for hours."""

# ---------------------------------------------------------------------------------------------
# Records → ExportTraceServiceRequest

_INTERNAL = Span.SpanKind.SPAN_KIND_INTERNAL
# The SDK path handed parents to the tracer as remote span contexts and its encoder said so in the
# flags; keeping the same flags keeps the spans the backend stores identical.
_ROOT_FLAGS = SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_CHILD_FLAGS = _ROOT_FLAGS | SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


class RequestEncoder:
    """SpanRecords → one ExportTraceServiceRequest: a ResourceSpans per trace source (= Jaeger service).

    The resources are made once, by the SDK, so their attributes (``service.name``,
    ``service.version``, ``telemetry.sdk.*``, ``OTEL_RESOURCE_ATTRIBUTES``) are exactly what the SDK
    tracer providers exported before.
    """

    def __init__(self, instance_id: str | None = None) -> None:
        """``instance_id``: a fixed ``service.instance.id`` instead of the SDK's random one per process,
        for exporters in several processes whose repeats of a span must be identical (scaled mode)."""
        self._resources: dict[TraceSource, Resource] = {}
        attributes = {"service.version": __version__}
        if instance_id is not None:
            attributes["service.instance.id"] = instance_id
        for source in TraceSource:
            sdk = SdkResource.create({"service.name": source.value, **attributes})
            resource = Resource()
            for key, value in sdk.attributes.items():
                _set_attribute(resource.attributes.add(), key, value)
            self._resources[source] = resource
        self._scope = InstrumentationScope(name="kelemetry", version=__version__)

    def encode(self, records: Sequence[SpanRecord]) -> ExportTraceServiceRequest:
        request = ExportTraceServiceRequest()
        # Resources in order of first appearance, spans in batch order, as the SDK encoder grouped them.
        groups: dict[TraceSource, Any] = {}  # the repeated `spans` field of each ResourceSpans
        for record in records:
            spans = groups.get(record.source)
            if spans is None:
                resource_spans = request.resource_spans.add()
                resource_spans.resource.CopyFrom(self._resources[record.source])
                scope_spans: ScopeSpans = resource_spans.scope_spans.add()
                scope_spans.scope.CopyFrom(self._scope)
                spans = groups[record.source] = scope_spans.spans
            span = spans.add()
            try:
                _fill_span(span, record)
            except (ValueError, TypeError, OverflowError) as exc:
                # One odd value (an int beyond int64, say) must not block the export forever: the
                # batch would fail on every retry and the cursor never move past it.
                span.Clear()
                try:
                    _fill_span(span, record, careful=True)
                    logger.warning(
                        "span %s has a value OTLP cannot carry (%s); sent as text", record.span_hex, exc
                    )
                except (ValueError, TypeError, OverflowError):
                    del spans[-1]
                    logger.exception("span %s cannot be encoded for OTLP; skipped", record.span_hex)
        return request


def _fill_span(span: Span, record: SpanRecord, *, careful: bool = False) -> None:
    start = record.start_us * 1000
    span.trace_id = record.trace_id.to_bytes(16, "big")
    span.span_id = record.span_id.to_bytes(8, "big")
    if record.parent_id is None:
        span.flags = _ROOT_FLAGS
    else:
        span.parent_span_id = record.parent_id.to_bytes(8, "big")
        span.flags = _CHILD_FLAGS
    span.name = record.name
    span.kind = _INTERNAL
    span.start_time_unix_nano = start
    span.end_time_unix_nano = record.end_us * 1000
    add = span.attributes.add
    if not careful:
        # The hot loop (some fifteen attributes a span): inlined, and the proto setters reject what
        # OTLP cannot carry, which sends the span to the careful path above.
        for key, value in span_tags(record).items():
            attribute = add()
            attribute.key = key
            if isinstance(value, str):
                attribute.value.string_value = value
            elif value is True or value is False:
                attribute.value.bool_value = value
            elif isinstance(value, int):
                attribute.value.int_value = value
            elif isinstance(value, float):
                attribute.value.double_value = value
            else:
                raise TypeError(f"attribute {key} has a {type(value).__name__} value")
    else:
        for key, value in span_tags(record).items():
            _set_attribute(add(), key, value)
    for log in record.logs:
        event = span.events.add(name=log.kind, time_unix_nano=start)
        event.attributes.add(key="message").value.string_value = log.message
    if record.error:
        span.status.code = Status.STATUS_CODE_ERROR
        if record.logs:
            span.status.message = record.logs[0].message


def _set_attribute(attribute: KeyValue, key: str, value: Any) -> None:
    attribute.key = key
    _set_value(attribute.value, value)


def _set_value(target: AnyValue, value: Any) -> None:
    """The AnyValue kind of ``value``; what OTLP has no kind for (an int beyond int64) goes as text."""
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int) and _INT64_MIN <= value <= _INT64_MAX:
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, list | tuple):  # resource attributes from the SDK's detectors may be arrays
        array = target.array_value
        array.SetInParent()
        for item in value:
            _set_value(array.values.add(), item)
    else:
        target.string_value = str(value)


# ---------------------------------------------------------------------------------------------
# Transports: one attempt per request, an ExportError when it did not arrive


class ExportRetryHint(errors.ExportError):
    """The backend answered, asking us to wait at least ``delay_seconds`` before trying again."""

    def __init__(self, message: str, delay_seconds: float) -> None:
        super().__init__(message)
        self.delay_seconds = delay_seconds


class Exporter(Protocol):
    """Sends one OTLP request; raises `errors.ExportError` unless the backend accepted it."""

    endpoint: str

    def export(self, request: ExportTraceServiceRequest) -> None: ...

    def shutdown(self) -> None: ...


@dataclass(frozen=True)
class ExportOptions:
    """What the standard OTLP exporter environment variables configure beyond the endpoint."""

    headers: Mapping[str, str] = field(default_factory=dict)
    compression: str = "none"
    certificate_file: str | None = None
    client_key_file: str | None = None
    client_certificate_file: str | None = None

    @classmethod
    def from_environment(cls) -> ExportOptions:
        def read(traces_name: str, name: str) -> str | None:
            return os.environ.get(traces_name) or os.environ.get(name) or None

        compression = (
            read(otel_env.OTEL_EXPORTER_OTLP_TRACES_COMPRESSION, otel_env.OTEL_EXPORTER_OTLP_COMPRESSION)
            or "none"
        )
        compression = compression.strip().lower()
        if compression not in ("none", "gzip", "deflate"):
            raise errors.ExportError(f"OTLP compression {compression!r}: must be none, gzip or deflate")
        headers = read(otel_env.OTEL_EXPORTER_OTLP_TRACES_HEADERS, otel_env.OTEL_EXPORTER_OTLP_HEADERS)
        return cls(
            headers=dict(parse_env_headers(headers, liberal=True)) if headers else {},
            compression=compression,
            certificate_file=read(
                otel_env.OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE, otel_env.OTEL_EXPORTER_OTLP_CERTIFICATE
            ),
            client_key_file=read(
                otel_env.OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY, otel_env.OTEL_EXPORTER_OTLP_CLIENT_KEY
            ),
            client_certificate_file=read(
                otel_env.OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE,
                otel_env.OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
            ),
        )


def _read_file(path: str | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise errors.ExportError(f"cannot read the OTLP {what} {path}: {exc.strerror}") from exc


def _log_partial_success(endpoint: str, response: ExportTraceServiceResponse) -> None:
    partial = response.partial_success
    if partial.rejected_spans or partial.error_message:
        # Retrying would be rejected the same way (OTLP spec), so this is only worth a warning.
        logger.warning(
            "OTLP endpoint %s rejected %d spans: %s", endpoint, partial.rejected_spans, partial.error_message
        )


class GrpcExporter:
    """OTLP/gRPC through the ``TraceService`` stub, over a channel made as the official exporter makes it."""

    def __init__(self, target: str, *, secure: bool, timeout_seconds: float, options: ExportOptions) -> None:
        self.endpoint = target
        self.timeout_seconds = timeout_seconds
        if options.compression == "deflate":
            raise errors.ExportError("OTLP/gRPC supports gzip compression only, not deflate")
        self._metadata = tuple((key.lower(), value) for key, value in options.headers.items())
        self._compression = grpc.Compression.Gzip if options.compression == "gzip" else None
        self._credentials = (
            grpc.ssl_channel_credentials(
                root_certificates=_read_file(options.certificate_file, "certificate"),
                private_key=_read_file(options.client_key_file, "client key"),
                certificate_chain=_read_file(options.client_certificate_file, "client certificate"),
            )
            if secure
            else None
        )
        self._lock = threading.Lock()
        self._closed = False
        self._channel: Any = None
        self._stub: Any = None
        self._connect()

    def _connect(self) -> None:
        channel_options = [("grpc.primary_user_agent", USER_AGENT)]
        if self._credentials is None:
            channel = grpc.insecure_channel(
                self.endpoint, options=channel_options, compression=self._compression
            )
        else:
            channel = grpc.secure_channel(
                self.endpoint, self._credentials, options=channel_options, compression=self._compression
            )
        with self._lock:
            if self._closed:  # shut down while an export was failing: leave no channel behind
                channel.close()
                return
            stub = TraceServiceStub(channel)  # type: ignore[no-untyped-call]
            old, self._channel, self._stub = self._channel, channel, stub
        if old is not None:
            old.close()

    def export(self, request: ExportTraceServiceRequest) -> None:
        if self._closed:
            raise errors.ExportError(f"OTLP export to {self.endpoint}: the exporter is shut down")
        try:
            response = self._stub.Export(request, timeout=self.timeout_seconds, metadata=self._metadata)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details()
            if code == grpc.StatusCode.UNAVAILABLE:
                # A channel that failed to connect waits out its own backoff (up to two minutes)
                # before dialling again; a fresh one connects at the next attempt, so spans reach a
                # restarted backend as soon as our retry policy says.
                self._connect()
            message = f"OTLP export to {self.endpoint} failed: {code.name} {details or ''}".rstrip()
            hint = _grpc_retry_hint(exc)
            if hint is not None:
                raise ExportRetryHint(message, hint) from exc
            raise errors.ExportError(message) from exc
        _log_partial_success(self.endpoint, response)

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()


def _grpc_retry_hint(exc: Any) -> float | None:
    try:
        trailers = dict(exc.trailing_metadata() or ())
    except Exception:  # an RpcError raised before any call carries no trailers
        return None
    raw = trailers.get("google.rpc.retryinfo-bin")
    if not raw:
        return None
    info = RetryInfo.FromString(raw)
    return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)


class HttpExporter:
    """OTLP/HTTP: a POST of the serialized request as ``application/x-protobuf`` over a requests session,
    as the official exporter sends it."""

    def __init__(self, url: str, *, timeout_seconds: float, options: ExportOptions) -> None:
        self.endpoint = url
        self.timeout_seconds = timeout_seconds
        self._compression = options.compression
        self._headers = {"Content-Type": "application/x-protobuf", "User-Agent": USER_AGENT}
        self._headers.update(options.headers)
        if self._compression != "none":
            self._headers["Content-Encoding"] = self._compression
        # requests reads these at each connection; read them once now to fail at start, not later.
        _read_file(options.certificate_file, "certificate")
        _read_file(options.client_key_file, "client key")
        _read_file(options.client_certificate_file, "client certificate")
        self._closed = False
        self._session = requests.Session()
        self._session.verify = options.certificate_file or True
        if options.client_certificate_file:
            self._session.cert = (
                (options.client_certificate_file, options.client_key_file)
                if options.client_key_file
                else options.client_certificate_file
            )

    def export(self, request: ExportTraceServiceRequest) -> None:
        if self._closed:
            raise errors.ExportError(f"OTLP export to {self.endpoint}: the exporter is shut down")
        body = request.SerializeToString()
        if self._compression == "gzip":
            body = gzip.compress(body, compresslevel=6)
        elif self._compression == "deflate":
            body = zlib.compress(body)
        try:
            response = self._session.post(
                self.endpoint,
                data=body,
                headers=self._headers,
                timeout=self.timeout_seconds,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise errors.ExportError(f"OTLP export to {self.endpoint} failed: {exc}") from exc
        status = int(response.status_code)
        if not 200 <= status < 300:
            message = f"OTLP export to {self.endpoint} failed: HTTP {status} {response.reason}"
            hint = _retry_after(response.headers.get("Retry-After")) if status in (429, 503) else None
            if hint is not None:
                raise ExportRetryHint(message, hint)
            raise errors.ExportError(message)
        if response.content and "protobuf" in response.headers.get("Content-Type", ""):
            try:
                _log_partial_success(self.endpoint, ExportTraceServiceResponse.FromString(response.content))
            except Exception:  # the spans arrived; an odd answer body changes nothing
                logger.debug("unreadable OTLP response from %s", self.endpoint, exc_info=True)

    def shutdown(self) -> None:
        self._closed = True
        self._session.close()


def _retry_after(value: str | None) -> float | None:
    """``Retry-After``: delay-seconds or an HTTP-date (RFC 9110)."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def create_exporter(
    endpoint: str, timeout_seconds: float = 10.0, *, options: ExportOptions | None = None
) -> Exporter:
    """An exporter for ``grpc[s]://host:port``, ``http(s)://host:port[/path]`` or ``host:port`` (gRPC)."""
    parsed = urlparse(endpoint if "://" in endpoint else f"grpc://{endpoint}")
    try:
        port = parsed.port
    except ValueError as exc:
        raise errors.ExportError(f"OTLP endpoint {endpoint!r} has an invalid port") from exc
    if not parsed.hostname or (port is None and parsed.scheme in ("grpc", "grpcs")):
        raise errors.ExportError(
            f"OTLP endpoint {endpoint!r} needs a host and port, e.g. grpc://127.0.0.1:4317"
        )
    if parsed.scheme not in ("grpc", "grpcs", "http", "https"):
        raise errors.ExportError(f"OTLP endpoint {endpoint!r}: scheme must be grpc, grpcs, http or https")
    options = options if options is not None else ExportOptions.from_environment()
    if parsed.scheme in ("grpc", "grpcs"):
        host = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
        return GrpcExporter(
            f"{host}:{port}",
            secure=parsed.scheme == "grpcs",
            timeout_seconds=timeout_seconds,
            options=options,
        )
    path = parsed.path if parsed.path not in ("", "/") else "/v1/traces"
    return HttpExporter(
        f"{parsed.scheme}://{parsed.netloc}{path}", timeout_seconds=timeout_seconds, options=options
    )


# ---------------------------------------------------------------------------------------------
# The follower


class OtlpFollower:
    """Exports every span of a store, in write order, resuming where it stopped."""

    def __init__(
        self,
        store_path: str | Path,
        endpoint: str,
        *,
        batch_size: int = 512,
        poll_interval_seconds: float = 0.2,
        exporter: Exporter | None = None,
        retry: backoff.Backoff = backoff.EXPORT,
        instance_id: str | None = None,
    ) -> None:
        self.store_path = Path(store_path)
        self.endpoint = endpoint
        self.batch_size = batch_size
        self.poll_interval = poll_interval_seconds
        self.exporter = exporter or create_exporter(endpoint)
        self.retry = retry
        self.cursor_path = self.store_path.with_name(self.store_path.name + ".otlp-cursor")
        self.cursor = self._load_cursor()
        self.exported = 0
        self.failures = 0
        self.last_error = ""
        self._encoder = RequestEncoder(instance_id)
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

    def export_once(self, reader: StoreReader, up_to: int | None = None) -> int:
        """Send the next batch, of rows written at or before ``up_to`` if given; returns the number of
        spans sent (0: nothing new). Raises on failure.

        A row rewritten after ``up_to`` (moved to another trace, reissued) has a later write sequence
        now and waits for a later bound; once nothing under the bound is left, the cursor moves to it,
        so "cursor ≥ s" keeps meaning "every row written at or before s is sent or superseded"."""
        rows = reader.spans_after(self.cursor, self.batch_size, up_to)
        if rows:
            self.exporter.export(self._encoder.encode([record for _seq, record in rows]))
            self.cursor = rows[-1][0]
            self.exported += len(rows)
        if up_to is not None and len(rows) < self.batch_size and up_to > self.cursor:
            self.cursor = up_to
        elif not rows:
            return 0
        self._save_cursor()
        return len(rows)

    def _failed(self, retry: backoff.Retry, exc: Exception) -> float:
        """Counts the failure; the pause before the next attempt."""
        self.failures += 1
        delay = retry.failed()
        if isinstance(exc, ExportRetryHint):
            delay = max(delay, min(exc.delay_seconds, MAX_RETRY_HINT_SECONDS))
        return delay

    def drain(self, timeout_seconds: float, max_failures: int | None = None) -> bool:
        """Export until the store is caught up (used after a replay); False on timeout or after
        ``max_failures`` failed attempts (``last_error`` says why the last one failed)."""
        reader = StoreReader(self.store_path)
        deadline = time.monotonic() + timeout_seconds
        retry = self.retry.start()
        try:
            while time.monotonic() < deadline:
                try:
                    if self.export_once(reader) == 0:
                        return True
                    retry.succeeded()
                except errors.ExportError as exc:
                    delay = self._failed(retry, exc)
                    self.last_error = str(exc)
                    if max_failures is not None and retry.failures >= max_failures:
                        return False
                    logger.warning("%s; retrying in %.1fs", exc, delay)
                    time.sleep(min(delay, max(deadline - time.monotonic(), 0)))
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
        retry = self.retry.start()
        try:
            while not self._stop.is_set():
                try:
                    if self.export_once(reader) == 0:
                        self._stop.wait(self.poll_interval)
                    retry.succeeded()
                except errors.ExportError as exc:
                    delay = self._failed(retry, exc)
                    logger.warning("%s; spans wait in the store, retrying in %.1fs", exc, delay)
                    self._stop.wait(delay)
                except Exception as exc:
                    delay = self._failed(retry, exc)
                    logger.exception("OTLP export failed unexpectedly; retrying in %.1fs", delay)
                    self._stop.wait(delay)
        finally:
            reader.close()
