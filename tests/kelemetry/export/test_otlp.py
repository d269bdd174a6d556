"""OTLP export (kelemetry.export.otlp) against real OTLP receivers on loopback, no mocks.

Covers: create_exporter's endpoint forms (grpc://, grpcs://, http:// with /v1/traces added or a
path kept, https://, bare host:port meaning gRPC, IPv6 hosts) and the ExportError of unusable
ones; the exporter timeout honoured below one second; SpanConverter keeping our exact trace,
span and parent ids (the full 128/64-bit range), times in ns, attributes with the object key tags,
service.name per trace source, ERROR status and logs as span events. Then OtlpFollower over a
store filled by the real pipeline: drain() to an OTLP/HTTP receiver delivering every span with
identical ids in pages, the cursor file, resuming with only new spans, a new endpoint starting
from the beginning; the background thread to an OTLP/gRPC receiver; and an endpoint that is down
while spans are written and comes up later, the spans waiting in the store until it does.
"""

from __future__ import annotations

import gzip
import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

import aggregators
from kelemetry import errors
from kelemetry.export.otlp import OtlpFollower, SpanConverter, create_exporter
from kelemetry.kube.kinds import KindResolver
from kelemetry.model import tags
from kelemetry.model.events import Log, TraceSource
from kelemetry.model.objects import ObjectKey
from kelemetry.model.spans import SpanRecord, span_tags
from kelemetry.pipeline import Pipeline
from kelemetry.receivers.audit import AuditConverter
from kelemetry.store.sqlite import SpanStore, StoreReader
from tests.factories import audit_event, owner_ref

CLUSTER = "c1"
WAIT = 15.0


# ---------------------------------------------------------------------------------------------
# Real receivers


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


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


class Sink:
    """What a receiver got, decoded from the wire; shared with the receiver's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[Received] = []
        self.paths: list[str] = []

    def add(self, request: trace_service_pb2.ExportTraceServiceRequest, path: str = "") -> None:
        spans = []
        for resource_spans in request.resource_spans:
            service = _attributes(resource_spans.resource.attributes).get("service.name", "")
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        Received(
                            trace_id=int.from_bytes(span.trace_id, "big"),
                            span_id=int.from_bytes(span.span_id, "big"),
                            parent_id=int.from_bytes(span.parent_span_id, "big")
                            if span.parent_span_id
                            else None,
                            name=span.name,
                            service=service,
                            start_ns=span.start_time_unix_nano,
                            end_ns=span.end_time_unix_nano,
                            attributes=_attributes(span.attributes),
                        )
                    )
        with self._lock:
            self._spans.extend(spans)
            self.paths.append(path)

    @property
    def spans(self) -> list[Received]:
        with self._lock:
            return list(self._spans)

    def wait_for(self, count: int, timeout: float = WAIT) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.spans) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.spans


class _OtlpHttpHandler(BaseHTTPRequestHandler):
    server: _OtlpHttpServer

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            data = gzip.decompress(data)
        if not self.path.endswith("/traces"):
            self.send_error(404)
            return
        self.server.sink.add(trace_service_pb2.ExportTraceServiceRequest.FromString(data), self.path)
        payload = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
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


@dataclass
class Receiver:
    endpoint: str
    port: int
    sink: Sink


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
        return Receiver(f"http://127.0.0.1:{bound}", bound, server.sink)

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(5)


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.sink.add(request)
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def grpc_receiver() -> Iterator[Callable[..., Receiver]]:
    """Starts OTLP/gRPC receivers on a free port of the given loopback; all stopped at teardown."""
    servers: list[grpc.Server] = []

    def start(host: str = "127.0.0.1") -> Receiver:
        sink = Sink()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(sink), server)
        port = server.add_insecure_port(f"{host}:0")
        server.start()
        servers.append(server)
        return Receiver(f"grpc://{host}:{port}", port, sink)

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
        pipeline = Pipeline(store, aggregators.create("hierarchy", 1800), AuditConverter(KindResolver()))
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
# create_exporter


def _one_span() -> list[ReadableSpan]:
    record = SpanRecord(
        trace_id=0xABC,
        span_id=0xDEF,
        parent_id=None,
        source=TraceSource.OBJECT,
        name="pods/web-0",
        start_us=1_000_000,
        end_us=2_000_000,
        key=ObjectKey.make(CLUSTER, "", "pods", "default", "web-0"),
        object_id=1,
        window=0,
        uid="u",
        kind="Pod",
        version="v1",
        tags={},
    )
    return SpanConverter().convert([record])


def _export(exporter: SpanExporter) -> SpanExportResult:
    try:
        return exporter.export(_one_span())
    finally:
        exporter.shutdown()


def test_an_http_endpoint_without_a_path_posts_to_v1_traces(http_receiver: Callable[..., Receiver]) -> None:
    receiver = http_receiver()
    for endpoint in (receiver.endpoint, receiver.endpoint + "/"):
        exporter = create_exporter(endpoint, timeout_seconds=2)
        assert isinstance(exporter, HttpExporter)
        assert _export(exporter) is SpanExportResult.SUCCESS
    assert receiver.sink.paths == ["/v1/traces", "/v1/traces"]
    assert [span.span_id for span in receiver.sink.spans] == [0xDEF, 0xDEF]


def test_an_http_endpoint_with_a_path_keeps_it(http_receiver: Callable[..., Receiver]) -> None:
    receiver = http_receiver()
    assert _export(create_exporter(receiver.endpoint + "/otlp/traces", 2)) is SpanExportResult.SUCCESS
    assert receiver.sink.paths == ["/otlp/traces"]


def test_grpc_and_bare_host_port_endpoints_speak_grpc(grpc_receiver: Callable[..., Receiver]) -> None:
    receiver = grpc_receiver()
    for endpoint in (receiver.endpoint, f"127.0.0.1:{receiver.port}"):
        exporter = create_exporter(endpoint, timeout_seconds=2)
        assert isinstance(exporter, GrpcExporter)
        assert _export(exporter) is SpanExportResult.SUCCESS
    assert [span.trace_id for span in receiver.sink.spans] == [0xABC, 0xABC]


def test_a_grpc_endpoint_on_an_ipv6_host_reaches_it(grpc_receiver: Callable[..., Receiver]) -> None:
    receiver = grpc_receiver("[::1]")
    assert _export(create_exporter(receiver.endpoint, timeout_seconds=2)) is SpanExportResult.SUCCESS
    assert len(receiver.sink.spans) == 1


def test_tls_schemes_make_tls_exporters() -> None:
    for endpoint, kind in (
        ("grpcs://otel.example:4317", GrpcExporter),
        ("https://otel.example", HttpExporter),
    ):
        exporter = create_exporter(endpoint)
        try:
            assert isinstance(exporter, kind), endpoint
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


def test_a_sub_second_grpc_timeout_is_honoured() -> None:
    exporter = create_exporter(f"grpc://127.0.0.1:{free_port()}", timeout_seconds=0.5)
    started = time.monotonic()
    result = _export(exporter)
    took = time.monotonic() - started
    assert result is SpanExportResult.FAILURE
    # The SDK retries with 1 s, 2 s, 4 s backoff within its timeout; 0.5 s allows no retry at all.
    assert took < 3.0, f"a 0.5 s timeout took {took:.1f}s"


# ---------------------------------------------------------------------------------------------
# SpanConverter


def test_converted_spans_keep_our_ids_times_attributes_services_status_and_logs(filled_store: Path) -> None:
    records, _seq = stored(filled_store)

    spans = SpanConverter().convert(records)

    assert len(spans) == len(records)
    for record, span in zip(records, spans, strict=True):
        context = span.get_span_context()
        assert context is not None
        assert (context.trace_id, context.span_id) == (record.trace_id, record.span_id)
        if record.parent_id is None:
            assert span.parent is None
        else:
            assert span.parent is not None
            assert (span.parent.trace_id, span.parent.span_id) == (record.trace_id, record.parent_id)
        assert span.name == record.name
        assert (span.start_time, span.end_time) == (record.start_us * 1000, record.end_us * 1000)
        assert dict(span.attributes or {}) == span_tags(record)
        assert span.resource.attributes["service.name"] == record.source.value
        assert [(e.name, dict(e.attributes or {}), e.timestamp) for e in span.events] == [
            (log.kind, {"message": log.message}, record.start_us * 1000) for log in record.logs
        ]
        if record.error:
            assert span.status.status_code is StatusCode.ERROR
            assert span.status.description == record.logs[0].message
            assert span.attributes is not None and span.attributes[tags.ERROR] is True
        else:
            assert span.status.status_code is StatusCode.UNSET

    (pod,) = [span for span in spans if span.name == "pods/web-1-a"]
    assert pod.resource.attributes["service.name"] == "object"
    assert {key: pod.attributes[key] for key in tags.OBJECT_KEY_TAGS} == {  # type: ignore[index]
        "cluster": CLUSTER,
        "group": "",
        "version": "v1",
        "resource": "pods",
        "namespace": "default",
        "name": "web-1-a",
        "uid": "p-a",
        "kind": "Pod",
    }
    (failed,) = [span for span in spans if span.status.status_code is StatusCode.ERROR]
    assert failed.status.description == "Conflict: the object has been modified"
    assert [event.name for event in failed.events] == ["error"]


def test_ids_at_the_top_of_their_range_survive_conversion() -> None:
    key = ObjectKey.make(CLUSTER, "apps", "deployments", "default", "web")
    record = SpanRecord(
        trace_id=(1 << 128) - 1,
        span_id=(1 << 64) - 1,
        parent_id=1 << 63,
        source=TraceSource.EVENT,
        name="Scaled up",
        start_us=1_714_557_600_123_456,
        end_us=1_714_557_600_123_457,
        key=key,
        object_id=5,
        window=0,
        uid="d-1",
        kind="Deployment",
        version="v1",
        tags={"event.count": 3},
        logs=(Log("message", "scaled up replica set web-1 to 3"), Log("diff", "spec.replicas 1 -> 3")),
    )
    converter = SpanConverter()

    (span,) = converter.convert([record])
    (again,) = converter.convert([record])  # a second batch holds only its own spans

    for converted in (span, again):
        context = converted.get_span_context()
        assert context is not None and converted.parent is not None
        assert (context.trace_id, context.span_id, converted.parent.span_id) == (
            (1 << 128) - 1,
            (1 << 64) - 1,
            1 << 63,
        )
        assert (converted.start_time, converted.end_time) == (
            1_714_557_600_123_456_000,
            1_714_557_600_123_457_000,
        )
        assert converted.resource.attributes["service.name"] == "event"
        assert converted.attributes is not None and converted.attributes["event.count"] == 3
        assert [e.name for e in converted.events] == ["message", "diff"]


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
    follower.start()
    write_batch(store_path, hierarchy_batch())
    records, max_seq = stored(store_path)

    deadline = time.monotonic() + WAIT
    while follower.failures == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert follower.failures >= 1, "the follower never tried the endpoint"
    # Nothing was confirmed, so nothing is marked as sent: the spans wait in the store.
    assert follower.cursor == 0
    assert not store_path.with_name("k.db.otlp-cursor").exists()

    receiver = http_receiver(port)
    received = receiver.sink.wait_for(len(records))

    assert_delivered(received, records)
    assert wait_for_cursor(store_path, max_seq) == {"endpoint": endpoint, "seq": max_seq}
