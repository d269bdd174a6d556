"""OTLP export (kelemetry.export.otlp) against real OTLP receivers on loopback, no mocks.

Covers: RequestEncoder's request, decoded with the opentelemetry-proto classes: our exact trace,
span and parent ids (the full 128/64-bit range) as big-endian bytes, times in ns, one ResourceSpans
per trace source (service.name, service.version, the SDK's telemetry.sdk.* attributes) in order of
first appearance, scope kelemetry, internal kind, attributes from span_tags with the AnyValue kind
of every value type, logs as span events at the span's start, ERROR status with the first log's
message; an odd value does not block a batch. create_exporter's endpoint forms (grpc://, grpcs://,
http:// with /v1/traces added or a path kept, https://, bare host:port meaning gRPC, IPv6 hosts),
the ExportError of unusable ones, the standard OTEL_EXPORTER_OTLP_* headers and compression, the
timeout honoured below one second. Then OtlpFollower over a store filled by the real pipeline:
drain() to an OTLP/HTTP receiver delivering every span in pages, the cursor file, resuming with only
new spans, a new endpoint starting from the beginning; the background thread to an OTLP/gRPC
receiver; endpoints down while spans are written (HTTP from the start, gRPC in the middle), the
spans waiting in the store and arriving once it is up, without resending what was confirmed;
rejected requests, throttling hints and partial success; the retry pace set by the Backoff policy.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from kelemetry import __version__, errors
from kelemetry.export.otlp import (
    ExportOptions,
    GrpcExporter,
    HttpExporter,
    OtlpFollower,
    RequestEncoder,
    create_exporter,
)
from kelemetry.model import backoff, tags
from kelemetry.model.events import Log, TraceSource
from kelemetry.model.gaps import Gap, GapReason
from kelemetry.model.objects import ObjectKey
from kelemetry.model.spans import SpanRecord, span_tags
from kelemetry.store.sqlite import SpanStore, StoreReader
from tests.factories import audit_event, new_pipeline, owner_ref

CLUSTER = "c1"
WAIT = 15.0
FAST = backoff.Backoff(initial_seconds=0.05, cap_seconds=0.2)

# ---------------------------------------------------------------------------------------------
# Decoding what was sent


@dataclass(frozen=True)
class Received:
    trace_id: int
    span_id: int
    parent_id: int | None
    name: str
    service: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    kinds: dict[str, str]  # attribute → AnyValue kind
    events: list[tuple[str, int, dict[str, Any]]]
    status: tuple[int, str]
    span_kind: int
    flags: int


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def decode(request: trace_service_pb2.ExportTraceServiceRequest) -> list[Received]:
    spans = []
    for resource_spans in request.resource_spans:
        service = _attributes(resource_spans.resource.attributes).get("service.name", "")
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    Received(
                        trace_id=int.from_bytes(span.trace_id, "big"),
                        span_id=int.from_bytes(span.span_id, "big"),
                        parent_id=int.from_bytes(span.parent_span_id, "big") if span.parent_span_id else None,
                        name=span.name,
                        service=service,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes=_attributes(span.attributes),
                        kinds={pair.key: str(pair.value.WhichOneof("value")) for pair in span.attributes},
                        events=[(e.name, e.time_unix_nano, _attributes(e.attributes)) for e in span.events],
                        status=(span.status.code, span.status.message),
                        span_kind=span.kind,
                        flags=span.flags,
                    )
                )
    return spans


# ---------------------------------------------------------------------------------------------
# Real receivers


class Sink:
    """What a receiver got, decoded from the wire; shared with the receiver's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[Received] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []

    def add(
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        path: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        spans = decode(request)
        with self._lock:
            self._spans.extend(spans)
            self.paths.append(path)
            self.headers.append(headers or {})

    @property
    def spans(self) -> list[Received]:
        with self._lock:
            return list(self._spans)

    def wait_for(self, count: int, timeout: float = WAIT) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.spans) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.spans


@dataclass
class HttpAnswer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class _OtlpHttpHandler(BaseHTTPRequestHandler):
    server: _OtlpHttpServer

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            data = gzip.decompress(data)
        if not self.path.endswith("/traces"):
            self.send_error(404)
            return
        answer = self.server.answers.popleft() if self.server.answers else None
        if answer is not None and answer.status != 200:
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.server.sink.add(trace_service_pb2.ExportTraceServiceRequest.FromString(data), self.path, headers)
        payload = (
            answer.body if answer else trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request on stderr would only bury test output


class _OtlpHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _OtlpHttpHandler)
        self.sink = Sink()
        self.answers: deque[HttpAnswer] = deque()


@dataclass
class Receiver:
    endpoint: str
    port: int
    sink: Sink
    stop: Callable[[], None]
    answers: deque[Any] = field(default_factory=deque)


@pytest.fixture
def http_receiver() -> Iterator[Callable[..., Receiver]]:
    """Starts OTLP/HTTP receivers (on a given port, or any free one); all are shut down at teardown."""
    servers: list[tuple[_OtlpHttpServer, threading.Thread]] = []

    def start(port: int = 0) -> Receiver:
        server = _OtlpHttpServer(port)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        servers.append((server, thread))
        bound = server.server_address[1]
        return Receiver(f"http://127.0.0.1:{bound}", bound, server.sink, server.shutdown, server.answers)

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass
class GrpcAnswer:
    code: grpc.StatusCode
    retry_after_seconds: float | None = None
    response: trace_service_pb2.ExportTraceServiceResponse | None = None


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink: Sink, answers: deque[GrpcAnswer]) -> None:
        self.sink = sink
        self.answers = answers

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        answer = self.answers.popleft() if self.answers else None
        if answer is not None and answer.code is not grpc.StatusCode.OK:
            if answer.retry_after_seconds is not None:
                info = RetryInfo(retry_delay=Duration(seconds=int(answer.retry_after_seconds)))
                context.set_trailing_metadata((("google.rpc.retryinfo-bin", info.SerializeToString()),))
            context.abort(answer.code, "scripted failure")
        self.sink.add(request, headers={key: str(value) for key, value in context.invocation_metadata()})
        if answer is not None and answer.response is not None:
            return answer.response
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def grpc_receiver() -> Iterator[Callable[..., Receiver]]:
    """Starts OTLP/gRPC receivers on a free (or given) port of a loopback; all stopped at teardown."""
    servers: list[grpc.Server] = []

    def start(host: str = "127.0.0.1", port: int = 0) -> Receiver:
        sink, answers = Sink(), deque[GrpcAnswer]()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(sink, answers), server)
        bound = server.add_insecure_port(f"{host}:{port}")
        server.start()
        servers.append(server)
        return Receiver(
            f"grpc://{host}:{bound}", bound, sink, lambda: server.stop(grace=None).wait(5), answers
        )

    yield start
    for server in servers:
        server.stop(grace=None).wait(5)


@pytest.fixture
def followers() -> Iterator[Callable[..., OtlpFollower]]:
    """Builds followers with a short exporter timeout; stops each (thread and exporter) at teardown."""
    made: list[OtlpFollower] = []

    def make(store: Path, endpoint: str, **options: Any) -> OtlpFollower:
        options.setdefault("exporter", create_exporter(endpoint, timeout_seconds=2))
        follower = OtlpFollower(store, endpoint, **options)
        made.append(follower)
        return follower

    yield make
    for follower in made:
        follower.stop(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# Store content made by the real pipeline


def times(minute: int, second: int = 0) -> dict[str, str]:
    return {
        "received": f"2024-05-01T10:{minute:02d}:{second:02d}.000000Z",
        "completed": f"2024-05-01T10:{minute:02d}:{second:02d}.250000Z",
    }


def hierarchy_batch() -> list[dict[str, Any]]:
    """A Deployment → ReplicaSet → Pods tree in two windows, and a failed (409) update."""
    rs_owner = owner_ref("ReplicaSet", "web-1", uid="r-1")
    return [
        audit_event(resource="deployments", group="apps", name="web", uid="d-1", audit_id="dep", **times(0)),
        audit_event(
            resource="replicasets",
            group="apps",
            name="web-1",
            uid="r-1",
            owner=owner_ref("Deployment", "web", uid="d-1"),
            audit_id="rs",
            **times(0, 1),
        ),
        audit_event(name="web-1-a", uid="p-a", owner=rs_owner, audit_id="pod-a", **times(0, 2)),
        audit_event(
            verb="update",
            name="web-1-a",
            uid="p-a",
            owner=rs_owner,
            code=409,
            audit_id="pod-a-conflict",
            responseStatus={
                "metadata": {},
                "code": 409,
                "reason": "Conflict",
                "message": "the object has been modified",
            },
            **times(5),
        ),
        audit_event(name="web-1-b", uid="p-b", owner=rs_owner, audit_id="pod-b", **times(40)),
    ]


def write_batch(store_path: Path, batch: list[dict[str, Any]]) -> None:
    store = SpanStore(store_path)
    try:
        pipeline = new_pipeline(store)
        assert pipeline.process_audit(batch, CLUSTER).failed == 0
    finally:
        store.close()


def stored(store_path: Path) -> tuple[list[SpanRecord], int]:
    reader = StoreReader(store_path)
    try:
        return reader.all_spans(), reader.max_seq()
    finally:
        reader.close()


@pytest.fixture
def filled_store(tmp_path: Path) -> Path:
    path = tmp_path / "k.db"
    write_batch(path, hierarchy_batch())
    return path


def assert_delivered(received: list[Received], records: list[SpanRecord]) -> None:
    """Every stored span arrived exactly once, with our ids, parent, name, times and service."""
    by_id = {span.span_id: span for span in received}
    assert len(by_id) == len(received), "no span sent twice"
    assert set(by_id) == {record.span_id for record in records}
    for record in records:
        got = by_id[record.span_id]
        assert (got.trace_id, got.parent_id) == (record.trace_id, record.parent_id), record.name
        assert (got.name, got.service) == (record.name, record.source.value)
        assert (got.start_ns, got.end_ns) == (record.start_us * 1000, record.end_us * 1000)
        assert got.attributes == span_tags(record)


def test_the_filled_store_has_the_shape_the_export_tests_rely_on(filled_store: Path) -> None:
    records, _seq = stored(filled_store)
    assert len({r.trace_id for r in records}) == 2  # one trace per window
    assert sum(r.parent_id is None for r in records) == 2  # the Deployment's span in each window
    assert sum(r.error for r in records) == 1
    assert len(records) == 11  # 3 objects + 4 requests in window 0, 3 objects + 1 request in window 1


# ---------------------------------------------------------------------------------------------
# RequestEncoder


def record(
    source: TraceSource = TraceSource.OBJECT,
    *,
    trace_id: int = 0xABC,
    span_id: int = 0xDEF,
    parent_id: int | None = None,
    tags: dict[str, Any] | None = None,
    logs: tuple[Log, ...] = (),
    error: bool = False,
) -> SpanRecord:
    return SpanRecord(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent_id,
        source=source,
        name="pods/web-0",
        start_us=1_000_000,
        end_us=2_000_000,
        key=ObjectKey.make(CLUSTER, "", "pods", "default", "web-0"),
        object_id=1,
        window=0,
        uid="u",
        kind="Pod",
        version="v1",
        tags=tags or {},
        logs=logs,
        error=error,
    )


def test_the_request_holds_every_stored_span_as_the_backend_must_see_it(filled_store: Path) -> None:
    records, _seq = stored(filled_store)

    request = RequestEncoder().encode(records)
    spans = decode(request)

    assert len(spans) == len(records)
    by_id = {span.span_id: span for span in spans}
    for rec in records:
        span = by_id[rec.span_id]
        assert (span.trace_id, span.parent_id) == (rec.trace_id, rec.parent_id)
        assert (span.name, span.service) == (rec.name, rec.source.value)
        assert (span.start_ns, span.end_ns) == (rec.start_us * 1000, rec.end_us * 1000)
        assert span.attributes == span_tags(rec)
        assert list(span.attributes) == list(span_tags(rec)), (
            "object key tags first, as span_tags orders them"
        )
        assert span.events == [(log.kind, rec.start_us * 1000, {"message": log.message}) for log in rec.logs]
        assert span.span_kind == Span.SpanKind.SPAN_KIND_INTERNAL
        if rec.error:
            assert span.status == (Status.STATUS_CODE_ERROR, rec.logs[0].message)
            assert span.attributes[tags.ERROR] is True
        else:
            assert span.status == (Status.STATUS_CODE_UNSET, "")

    (pod,) = [span for span in spans if span.name == "pods/web-1-a"]
    assert pod.service == "object"
    assert {key: pod.attributes[key] for key in tags.OBJECT_KEY_TAGS} == {
        "cluster": CLUSTER,
        "group": "",
        "version": "v1",
        "resource": "pods",
        "namespace": "default",
        "name": "web-1-a",
        "uid": "p-a",
        "kind": "Pod",
    }
    (failed,) = [span for span in spans if span.status[0] == Status.STATUS_CODE_ERROR]
    assert failed.status[1] == "Conflict: the object has been modified"
    assert [event[0] for event in failed.events] == ["error"]


def test_one_resource_per_trace_source_in_order_of_first_appearance() -> None:
    order = [TraceSource.AUDIT, TraceSource.OBJECT, TraceSource.AUDIT, TraceSource.CHANGE, TraceSource.EVENT]
    records = [record(source, span_id=n + 1) for n, source in enumerate(order)]

    request = RequestEncoder().encode(records)

    services = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        services.append(resource["service.name"])
        assert resource["service.version"] == __version__
        assert resource["telemetry.sdk.language"] == "python"  # as the SDK's tracer providers said
        (scope_spans,) = resource_spans.scope_spans
        assert (scope_spans.scope.name, scope_spans.scope.version) == ("kelemetry", __version__)
        ids = [int.from_bytes(span.span_id, "big") for span in scope_spans.spans]
        assert ids == [n + 1 for n, source in enumerate(order) if source.value == resource["service.name"]]
    assert services == ["audit", "object", "change", "event"]


@pytest.mark.parametrize("source", list(TraceSource), ids=lambda s: s.value)
def test_every_value_type_gets_its_any_value_kind(source: TraceSource) -> None:
    values = {
        "text": "x",
        "empty": "",
        "count": 42,
        "negative": -7,
        "int64.max": (1 << 63) - 1,
        "int64.min": -(1 << 63),
        "yes": True,
        "no": False,
        "ratio": 0.5,
    }
    (span,) = decode(RequestEncoder().encode([record(source, tags=values)]))

    assert span.service == source.value
    assert {key: span.attributes[key] for key in values} == values
    assert {key: span.kinds[key] for key in values} == {
        "text": "string_value",
        "empty": "string_value",
        "count": "int_value",
        "negative": "int_value",
        "int64.max": "int_value",
        "int64.min": "int_value",
        "yes": "bool_value",
        "no": "bool_value",
        "ratio": "double_value",
    }
    assert all(span.kinds[key] == "string_value" for key in tags.OBJECT_KEY_TAGS)


def test_ids_at_the_top_of_their_range_and_times_in_nanoseconds() -> None:
    rec = replace_ids(
        record(
            TraceSource.EVENT,
            tags={"event.count": 3},
            logs=(Log("message", "scaled up replica set web-1 to 3"), Log("diff", "spec.replicas 1 -> 3")),
        ),
        trace_id=(1 << 128) - 1,
        span_id=(1 << 64) - 1,
        parent_id=1 << 63,
    )
    encoder = RequestEncoder()

    first, again = encoder.encode([rec]), encoder.encode([rec])  # a second batch holds only its own spans

    for request in (first, again):
        (span,) = decode(request)
        raw = request.resource_spans[0].scope_spans[0].spans[0]
        assert (len(raw.trace_id), len(raw.span_id), len(raw.parent_span_id)) == (16, 8, 8)
        assert raw.trace_id == b"\xff" * 16 and raw.parent_span_id == b"\x80" + b"\x00" * 7
        assert (span.trace_id, span.span_id, span.parent_id) == ((1 << 128) - 1, (1 << 64) - 1, 1 << 63)
        assert (span.start_ns, span.end_ns) == (1_000_000_000, 2_000_000_000)
        assert span.attributes["event.count"] == 3
        assert [event[0] for event in span.events] == ["message", "diff"]
        assert all(event[1] == 1_000_000_000 for event in span.events)


def replace_ids(rec: SpanRecord, *, trace_id: int, span_id: int, parent_id: int | None) -> SpanRecord:
    return record(
        rec.source,
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent_id,
        tags=dict(rec.tags),
        logs=rec.logs,
        error=rec.error,
    )


def test_root_and_child_spans_carry_the_flags_the_sdk_sent() -> None:
    root, child = decode(RequestEncoder().encode([record(span_id=1), record(span_id=2, parent_id=1)]))
    assert (root.parent_id, root.flags) == (None, 0x100)  # the context-has-is-remote bit
    assert (child.parent_id, child.flags) == (1, 0x300)  # … and the parent is remote


def test_an_error_without_logs_has_an_error_status_without_message() -> None:
    (span,) = decode(RequestEncoder().encode([record(error=True)]))
    assert span.status == (Status.STATUS_CODE_ERROR, "")
    assert span.events == []


def test_an_odd_value_is_sent_as_text_and_an_unencodable_span_does_not_block_its_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    records = [
        record(span_id=1, tags={"huge": 1 << 64, "fine": 1}),
        record(span_id=2, trace_id=1 << 128),  # no 16-byte trace id can hold it
        record(span_id=3, tags={"after": "ok"}),
    ]
    with caplog.at_level(logging.WARNING, logger="kelemetry.export.otlp"):
        spans = decode(RequestEncoder().encode(records))

    assert [span.span_id for span in spans] == [1, 3]
    assert spans[0].attributes["huge"] == str(1 << 64) and spans[0].kinds["huge"] == "string_value"
    assert spans[0].attributes["fine"] == 1 and spans[0].kinds["fine"] == "int_value"
    assert spans[1].attributes["after"] == "ok"
    assert "0000000000000001" in caplog.text and "sent as text" in caplog.text
    assert "0000000000000002" in caplog.text and "skipped" in caplog.text


# ---------------------------------------------------------------------------------------------
# create_exporter


def _send(endpoint: str, timeout_seconds: float = 2, **options: Any) -> None:
    exporter = create_exporter(endpoint, timeout_seconds, options=ExportOptions(**options))
    try:
        exporter.export(RequestEncoder().encode([record()]))
    finally:
        exporter.shutdown()


def test_an_http_endpoint_without_a_path_posts_to_v1_traces(http_receiver: Callable[..., Receiver]) -> None:
    receiver = http_receiver()
    for endpoint in (receiver.endpoint, receiver.endpoint + "/"):
        assert isinstance(create_exporter(endpoint), HttpExporter)
        _send(endpoint)
    assert receiver.sink.paths == ["/v1/traces", "/v1/traces"]
    assert [span.span_id for span in receiver.sink.spans] == [0xDEF, 0xDEF]
    assert receiver.sink.headers[0]["content-type"] == "application/x-protobuf"


def test_an_http_endpoint_with_a_path_keeps_it(http_receiver: Callable[..., Receiver]) -> None:
    receiver = http_receiver()
    _send(receiver.endpoint + "/otlp/traces")
    assert receiver.sink.paths == ["/otlp/traces"]


def test_grpc_and_bare_host_port_endpoints_speak_grpc(grpc_receiver: Callable[..., Receiver]) -> None:
    receiver = grpc_receiver()
    for endpoint in (receiver.endpoint, f"127.0.0.1:{receiver.port}"):
        assert isinstance(create_exporter(endpoint), GrpcExporter)
        _send(endpoint)
    assert [span.trace_id for span in receiver.sink.spans] == [0xABC, 0xABC]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_shut_down_exporter_sends_nothing(
    protocol: str, http_receiver: Callable[..., Receiver], grpc_receiver: Callable[..., Receiver]
) -> None:
    receiver = grpc_receiver() if protocol == "grpc" else http_receiver()
    exporter = create_exporter(receiver.endpoint, 2)
    exporter.shutdown()
    with pytest.raises(errors.ExportError, match="shut down"):
        exporter.export(RequestEncoder().encode([record()]))
    exporter.shutdown()  # twice is harmless: the follower's stop() and the CLI may both do it
    assert receiver.sink.spans == []


def test_a_grpc_endpoint_on_an_ipv6_host_reaches_it(grpc_receiver: Callable[..., Receiver]) -> None:
    receiver = grpc_receiver("[::1]")
    _send(receiver.endpoint)
    assert len(receiver.sink.spans) == 1


def test_tls_schemes_make_tls_exporters() -> None:
    for endpoint, kind, target in (
        ("grpcs://otel.example:4317", GrpcExporter, "otel.example:4317"),
        ("https://otel.example", HttpExporter, "https://otel.example/v1/traces"),
    ):
        exporter = create_exporter(endpoint)
        try:
            assert isinstance(exporter, kind), endpoint
            assert exporter.endpoint == target
        finally:
            exporter.shutdown()


@pytest.mark.parametrize(
    "endpoint",
    [
        "ftp://otel.example:4317",
        "otel.example",
        "grpc://otel.example",
        "grpcs://otel.example",
        "grpc://:4317",
        "http://",
        "https:///v1/traces",
        "grpc://otel.example:port",
        "http://otel.example:99999",
        "otel.example:4317x",
    ],
)
def test_an_unusable_endpoint_is_an_export_error(endpoint: str) -> None:
    with pytest.raises(errors.ExportError, match="OTLP endpoint"):
        create_exporter(endpoint)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_the_standard_headers_and_compression_variables_apply(
    protocol: str,
    http_receiver: Callable[..., Receiver],
    grpc_receiver: Callable[..., Receiver],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = grpc_receiver() if protocol == "grpc" else http_receiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=general,x-tenant=ops")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "api-key=for-traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")

    exporter = create_exporter(receiver.endpoint, 2)
    try:
        exporter.export(RequestEncoder().encode([record()]))
    finally:
        exporter.shutdown()

    (headers,) = receiver.sink.headers
    assert headers["api-key"] == "for-traces"  # the traces variable wins over the general one
    assert "x-tenant" not in headers
    assert headers["user-agent"].startswith(f"kelemetry/{__version__}")
    if protocol == "http":
        assert headers["content-encoding"] == "gzip"  # gRPC's own compression header never reaches a servicer
    assert len(receiver.sink.spans) == 1


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "brotli", "compression"),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem", "certificate"),
    ],
)
def test_unusable_export_variables_are_export_errors(
    variable: str, value: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    for endpoint in ("grpcs://otel.example:4317", "https://otel.example"):
        with pytest.raises(errors.ExportError, match=message):
            create_exporter(endpoint)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_sub_second_timeout_is_honoured(protocol: str) -> None:
    # A listener that accepts connections and never answers: only the timeout ends the call.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        endpoint = f"{protocol}://127.0.0.1:{silent.getsockname()[1]}"
        exporter = create_exporter(endpoint, timeout_seconds=0.5)
        started = time.monotonic()
        try:
            with pytest.raises(errors.ExportError, match="OTLP export to"):
                exporter.export(RequestEncoder().encode([record()]))
        finally:
            exporter.shutdown()
        took = time.monotonic() - started
    assert took < 2.0, f"a 0.5 s timeout took {took:.1f}s"


# ---------------------------------------------------------------------------------------------
# OtlpFollower


def read_cursor(store_path: Path) -> dict[str, Any]:
    return dict(json.loads(store_path.with_name(store_path.name + ".otlp-cursor").read_text()))


def wait_for_cursor(store_path: Path, seq: int, timeout: float = WAIT) -> dict[str, Any]:
    """The cursor file a running follower writes once the receiver has confirmed a batch."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            cursor = read_cursor(store_path)
        except FileNotFoundError:
            cursor = {}
        if cursor.get("seq") == seq or time.monotonic() > deadline:
            return cursor
        time.sleep(0.02)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_drain_sends_every_stored_span_to_an_http_receiver_and_saves_the_cursor(
    filled_store: Path, http_receiver: Callable[..., Receiver], followers: Callable[..., OtlpFollower]
) -> None:
    receiver = http_receiver()
    records, max_seq = stored(filled_store)
    follower = followers(filled_store, receiver.endpoint, batch_size=5)

    assert follower.drain(10)

    assert_delivered(receiver.sink.spans, records)
    assert receiver.sink.paths == ["/v1/traces"] * math.ceil(len(records) / 5)
    assert follower.exported == len(records)
    assert follower.failures == 0
    assert read_cursor(filled_store) == {"endpoint": receiver.endpoint, "seq": max_seq}


def test_a_follower_on_the_same_endpoint_resumes_and_sends_only_new_spans(
    filled_store: Path, http_receiver: Callable[..., Receiver], followers: Callable[..., OtlpFollower]
) -> None:
    receiver = http_receiver()
    records, max_seq = stored(filled_store)
    assert followers(filled_store, receiver.endpoint).drain(10)
    before = len(receiver.sink.spans)

    resumed = followers(filled_store, receiver.endpoint)
    assert resumed.cursor == max_seq
    assert resumed.drain(10)
    assert resumed.exported == 0
    assert len(receiver.sink.spans) == before

    write_batch(filled_store, [audit_event(name="web-1-c", uid="p-c", audit_id="pod-c", **times(6))])
    after, new_seq = stored(filled_store)
    new = [record for record in after if record.span_id not in {r.span_id for r in records}]
    assert len(new) == 2  # the new pod's object span and its request; its owners' spans did not change
    assert resumed.drain(10)
    assert_delivered(receiver.sink.spans[before:], new)
    assert read_cursor(filled_store)["seq"] == new_seq


def test_a_bounded_export_sends_rows_up_to_the_bound_and_a_row_moved_past_it_waits(
    filled_store: Path, http_receiver: Callable[..., Receiver], followers: Callable[..., OtlpFollower]
) -> None:
    receiver = http_receiver()
    reader = StoreReader(filled_store)
    try:
        rows = reader.spans_after(0, 100)
        bound = rows[4][0]
        assert [seq for seq, _span in reader.spans_after(0, 100, bound)] == [seq for seq, _ in rows[:5]]
        # The third row's object is moved to another trace after the bound was noted: new write seqs.
        moved = rows[2][1]
        store = SpanStore(filled_store)
        try:
            assert store.retrace([moved.object_id], moved.window, moved.trace_id + 1) >= 1
        finally:
            store.close()
        moved_ids = {span.span_id for _seq, span in reader.spans_after(rows[-1][0], 100)}
        assert moved.span_id in moved_ids

        follower = followers(filled_store, receiver.endpoint, batch_size=100)
        assert follower.export_once(reader, bound) == len(
            {span.span_id for _seq, span in rows[:5]} - moved_ids
        )
        assert {span.span_id for span in receiver.sink.spans} == {
            span.span_id for _seq, span in rows[:5]
        } - moved_ids
        # Nothing at or below the bound is left unsent: the cursor stands at the bound.
        assert follower.cursor == bound and read_cursor(filled_store)["seq"] == bound
        assert follower.export_once(reader, bound) == 0

        follower.export_once(reader)
        sent = {span.span_id: span for span in receiver.sink.spans}
        assert moved.span_id in sent and sent[moved.span_id].trace_id == moved.trace_id + 1
        assert len(receiver.sink.spans) == len(rows)
    finally:
        reader.close()


def test_a_follower_for_another_endpoint_starts_from_the_beginning(
    filled_store: Path, http_receiver: Callable[..., Receiver], followers: Callable[..., OtlpFollower]
) -> None:
    first, second = http_receiver(), http_receiver()
    records, _seq = stored(filled_store)
    assert followers(filled_store, first.endpoint).drain(10)

    other = followers(filled_store, second.endpoint)
    assert other.cursor == 0
    assert other.drain(10)

    assert_delivered(second.sink.spans, records)
    assert read_cursor(filled_store)["endpoint"] == second.endpoint


def test_the_follower_thread_sends_every_span_to_a_grpc_receiver(
    filled_store: Path, grpc_receiver: Callable[..., Receiver], followers: Callable[..., OtlpFollower]
) -> None:
    receiver = grpc_receiver()
    records, max_seq = stored(filled_store)
    follower = followers(filled_store, receiver.endpoint, batch_size=4, poll_interval_seconds=0.05)

    follower.start()
    received = receiver.sink.wait_for(len(records))

    assert_delivered(received, records)
    assert wait_for_cursor(filled_store, max_seq) == {"endpoint": receiver.endpoint, "seq": max_seq}
    assert follower.failures == 0


def test_spans_written_while_the_endpoint_is_down_arrive_once_it_is_up(
    tmp_path: Path, http_receiver: Callable[..., Receiver], followers: Callable[..., OtlpFollower]
) -> None:
    store_path = tmp_path / "k.db"
    SpanStore(store_path).close()
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    follower = followers(
        store_path,
        endpoint,
        exporter=create_exporter(endpoint, timeout_seconds=1),
        poll_interval_seconds=0.05,
    )
    assert follower.retry is backoff.EXPORT
    follower.start()
    write_batch(store_path, hierarchy_batch())
    records, max_seq = stored(store_path)

    wait_until(lambda: follower.failures >= 1, "the follower to try the endpoint")
    # Nothing was confirmed, so nothing is marked as sent: the spans wait in the store.
    assert follower.cursor == 0
    assert not store_path.with_name("k.db.otlp-cursor").exists()

    receiver = http_receiver(port)
    received = receiver.sink.wait_for(len(records))

    assert_delivered(received, records)
    assert wait_for_cursor(store_path, max_seq) == {"endpoint": endpoint, "seq": max_seq}


def test_a_grpc_receiver_down_then_back_gets_only_what_it_missed(
    filled_store: Path, grpc_receiver: Callable[..., Receiver], followers: Callable[..., OtlpFollower]
) -> None:
    first = grpc_receiver()
    records, first_seq = stored(filled_store)
    follower = followers(filled_store, first.endpoint, poll_interval_seconds=0.05)
    follower.start()
    assert_delivered(first.sink.wait_for(len(records)), records)
    assert wait_for_cursor(filled_store, first_seq)["seq"] == first_seq

    first.stop()
    write_batch(filled_store, [audit_event(name="web-1-c", uid="p-c", audit_id="pod-c", **times(6))])
    after, new_seq = stored(filled_store)
    new = [record for record in after if record.span_id not in {r.span_id for r in records}]
    wait_until(lambda: follower.failures >= 2, "the follower to fail against the stopped receiver")
    assert follower.cursor == first_seq  # the new spans wait in the store

    back = grpc_receiver(port=first.port)  # the same endpoint: the follower's channel must reconnect
    received = back.sink.wait_for(len(new))

    assert_delivered(received, new)  # and not the spans the first receiver had confirmed
    assert wait_for_cursor(filled_store, new_seq) == {"endpoint": first.endpoint, "seq": new_seq}


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_rejected_request_is_retried_and_the_cursor_waits(
    protocol: str,
    filled_store: Path,
    http_receiver: Callable[..., Receiver],
    grpc_receiver: Callable[..., Receiver],
    followers: Callable[..., OtlpFollower],
) -> None:
    receiver = grpc_receiver() if protocol == "grpc" else http_receiver()
    rejection: Any = GrpcAnswer(grpc.StatusCode.INVALID_ARGUMENT) if protocol == "grpc" else HttpAnswer(400)
    receiver.answers.extend([rejection, rejection])
    records, max_seq = stored(filled_store)
    follower = followers(filled_store, receiver.endpoint, retry=FAST)

    assert follower.drain(10)

    assert follower.failures == 2
    assert_delivered(receiver.sink.spans, records)
    assert read_cursor(filled_store)["seq"] == max_seq


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_throttling_hint_longer_than_the_backoff_is_honoured(
    protocol: str,
    filled_store: Path,
    http_receiver: Callable[..., Receiver],
    grpc_receiver: Callable[..., Receiver],
    followers: Callable[..., OtlpFollower],
) -> None:
    receiver = grpc_receiver() if protocol == "grpc" else http_receiver()
    receiver.answers.append(
        GrpcAnswer(grpc.StatusCode.RESOURCE_EXHAUSTED, retry_after_seconds=1)
        if protocol == "grpc"
        else HttpAnswer(429, {"Retry-After": "1"})
    )
    records, _seq = stored(filled_store)
    follower = followers(filled_store, receiver.endpoint, retry=FAST)

    started = time.monotonic()
    assert follower.drain(10)

    assert time.monotonic() - started >= 1.0, "the backoff alone would have retried after 0.05 s"
    assert follower.failures == 1
    assert_delivered(receiver.sink.spans, records)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_partial_success_is_logged_and_not_retried(
    protocol: str,
    filled_store: Path,
    http_receiver: Callable[..., Receiver],
    grpc_receiver: Callable[..., Receiver],
    followers: Callable[..., OtlpFollower],
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = grpc_receiver() if protocol == "grpc" else http_receiver()
    response = trace_service_pb2.ExportTraceServiceResponse()
    response.partial_success.rejected_spans = 2
    response.partial_success.error_message = "spans too old"
    receiver.answers.append(
        GrpcAnswer(grpc.StatusCode.OK, response=response)
        if protocol == "grpc"
        else HttpAnswer(200, body=response.SerializeToString())
    )
    records, max_seq = stored(filled_store)
    follower = followers(filled_store, receiver.endpoint)

    with caplog.at_level(logging.WARNING, logger="kelemetry.export.otlp"):
        assert follower.drain(10)

    assert "rejected 2 spans: spans too old" in caplog.text
    assert follower.failures == 0
    assert len(receiver.sink.spans) == len(records)
    assert read_cursor(filled_store)["seq"] == max_seq


def test_the_backoff_policy_sets_the_pace_of_retries(
    filled_store: Path, followers: Callable[..., OtlpFollower]
) -> None:
    down = f"http://127.0.0.1:{free_port()}"

    default = followers(filled_store, down)
    assert not default.drain(1.7)  # EXPORT: tries at 0 s, 0.5 s and 1.5 s, then would wait 2 s
    fast = followers(
        filled_store, down, retry=backoff.Backoff(initial_seconds=0.01, factor=1, cap_seconds=0.01)
    )
    assert not fast.drain(0.5)

    assert 2 <= default.failures <= 3
    assert fast.failures >= 10
    assert default.cursor == fast.cursor == 0


def test_a_gap_is_exported_as_a_span_of_service_gap_under_its_clusters_pseudo_object(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "k.db")
    try:
        new_pipeline(store).process_gaps([Gap("c1", GapReason.RESTART, 1_000_000, 61_000_000)])
        records = store.all_spans()
    finally:
        store.close()

    spans = {span.service: span for span in decode(RequestEncoder().encode(records))}
    assert set(spans) == {"object", "gap"}
    gap, pseudo = spans["gap"], spans["object"]
    assert gap.parent_id == pseudo.span_id and gap.trace_id == pseudo.trace_id
    assert (gap.name, gap.start_ns, gap.end_ns) == ("collector restarted", 1_000_000_000, 61_000_000_000)
    assert gap.attributes["gap.reason"] == "restart" and gap.attributes["gap.end"] == 61_000_000
    assert gap.attributes["resource"] == "gaps" and gap.attributes["name"] == "c1"
    messages = [attributes.get("message") for _name, _time, attributes in gap.events]
    assert messages == ["data may be missing between 00:00:01 and 00:01:01 UTC: collector restarted"]


def test_a_fixed_instance_id_makes_the_request_the_same_from_any_process() -> None:
    """Scaled-mode workers re-export a span another worker sent; only a fixed ``service.instance.id``
    (instead of the SDK's random one per process) makes the repeat identical, so Jaeger keeps one."""
    spans = [record(TraceSource.AUDIT), record()]
    fixed = RequestEncoder("kelemetry-worker").encode(spans)
    attributes = {kv.key: kv.value.string_value for kv in fixed.resource_spans[0].resource.attributes}
    assert attributes["service.instance.id"] == "kelemetry-worker"
    assert attributes["service.name"] == "audit"
    assert RequestEncoder("kelemetry-worker").encode(spans).SerializeToString() == fixed.SerializeToString()
