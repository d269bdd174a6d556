"""Benchmark of OTLP export: prints figures, asserts only that both paths send the same spans.

Builds N realistic SpanRecords: the spans the real pipeline makes from the recorded Deployment
lifecycle (samples/deployment: object spans, audit spans with their tags and diff, snapshot and
error logs, Kubernetes Event spans), copied with fresh ids, object names, uids and audit IDs per
copy until there are N. Then, for two paths:

  sdk     the former exporter: SDK tracer spans (start_span/end with our ids) → the SDK's OTLP
          encoder → the official OTLPSpanExporter (kept here, only as the baseline)
  direct  kelemetry.export.otlp: ExportTraceServiceRequest built from the records → one gRPC call
          or one HTTP POST per batch

  encode      µs of CPU per span to turn 512-span batches into serialized request bytes; before
              timing, the requests of both paths are checked to hold the same spans
  end to end  an OtlpFollower draining a store of the N spans into a local OTLP receiver (gRPC
              server implementing TraceService, or OTLP/HTTP server) that runs in a child process,
              so the figure is the exporting process's CPU alone (store reads, encoding, client
              side of the transport); the receiver confirms it decoded all N spans

Run: `python tests/bench/bench_export.py [--spans 100000]`.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as SdkGrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as SdkHttpExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

from kelemetry import __version__, errors
from kelemetry.export.otlp import OtlpFollower, RequestEncoder, create_exporter
from kelemetry.model.events import TraceSource
from kelemetry.model.objects import KnownObject
from kelemetry.model.spans import SpanRecord, span_tags
from kelemetry.store.sqlite import SpanStore, StoreReader

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "deployment"
BATCH = 512


# ---------------------------------------------------------------------------------------------
# The baseline: the converter kelemetry.export.otlp used before issue 16, unchanged


class _PresetIds(IdGenerator):
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


class SdkSpanConverter:
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


def sdk_exporter(endpoint: str) -> SpanExporter:
    """The official exporter the former create_exporter made for these endpoint forms."""
    if endpoint.startswith("grpc://"):
        return SdkGrpcExporter(endpoint=endpoint.removeprefix("grpc://"), insecure=True, timeout=10)
    return SdkHttpExporter(endpoint=endpoint + "/v1/traces", timeout=10)


class SdkFollower(OtlpFollower):
    """The same follower loop (store reads, cursor), exporting through the SDK path."""

    def __init__(self, store_path: Path, endpoint: str) -> None:
        super().__init__(store_path, endpoint)
        self.converter = SdkSpanConverter()
        self.sdk_exporter = sdk_exporter(endpoint)

    def export_once(self, reader: StoreReader) -> int:
        rows = reader.spans_after(self.cursor, self.batch_size)
        if not rows:
            return 0
        spans = self.converter.convert([record for _seq, record in rows])
        if self.sdk_exporter.export(spans) is not SpanExportResult.SUCCESS:
            raise errors.ExportError(f"OTLP export to {self.endpoint} failed")
        self.cursor = rows[-1][0]
        self._save_cursor()
        self.exported += len(rows)
        return len(rows)

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        self.sdk_exporter.shutdown()


# ---------------------------------------------------------------------------------------------
# Records


def _id(value: int, copy: int, bits: int) -> int:
    digest = hashlib.blake2b(f"{value}:{copy}".encode(), digest_size=bits // 8).digest()
    return int.from_bytes(digest, "big") or 1


def sample_records(workdir: Path) -> list[SpanRecord]:
    """The spans the pipeline makes from the recorded Deployment lifecycle."""
    store = workdir / "sample.db"
    command = [sys.executable, "-m", "kelemetry", "replay", "--quiet", "--cluster", "bench"]
    command += ["--store", str(store), str(SAMPLE / "audit.log"), str(SAMPLE / "events.jsonl")]
    subprocess.run(command, check=True, stderr=subprocess.DEVNULL)
    reader = StoreReader(store)
    try:
        return reader.all_spans()
    finally:
        reader.close()


def build_records(base: list[SpanRecord], count: int) -> list[SpanRecord]:
    """Copies of ``base`` with fresh ids, names, uids and audit IDs per copy, ``count`` in all."""
    records: list[SpanRecord] = []
    copy = 0
    while len(records) < count:
        for record in base:
            key = record.key._replace(name=f"{record.key.name}-c{copy}")
            tags = dict(record.tags)
            if "audit.id" in tags:
                tags["audit.id"] = f"{tags['audit.id']}-c{copy}"
            name = f"{record.name}-c{copy}" if record.source is TraceSource.OBJECT else record.name
            records.append(
                replace(
                    record,
                    trace_id=_id(record.trace_id, copy, 128),
                    span_id=_id(record.span_id, copy, 64),
                    parent_id=None if record.parent_id is None else _id(record.parent_id, copy, 64),
                    object_id=_id(record.object_id, copy, 63),
                    key=key,
                    name=name,
                    uid=f"{record.uid}-c{copy}",
                    tags=tags,
                )
            )
        copy += 1
    return records[:count]


def batches(records: list[SpanRecord]) -> list[list[SpanRecord]]:
    return [records[i : i + BATCH] for i in range(0, len(records), BATCH)]


def write_store(path: Path, records: list[SpanRecord]) -> None:
    store = SpanStore(path)
    try:
        for batch in batches(records):
            objects = {r.object_id: KnownObject(r.object_id, r.key, r.uid, r.kind, r.version) for r in batch}
            store.write(batch, objects.values())
    finally:
        store.close()


# ---------------------------------------------------------------------------------------------
# Encoding


def _normalized(
    request: trace_service_pb2.ExportTraceServiceRequest,
) -> trace_service_pb2.ExportTraceServiceRequest:
    """The SDK sends an empty status on spans without one; the wire meaning is the same."""
    copy = trace_service_pb2.ExportTraceServiceRequest()
    copy.CopyFrom(request)
    for resource_spans in copy.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if span.status.code == 0 and not span.status.message:
                    span.ClearField("status")
    return copy


def _without_instance_ids(request: trace_service_pb2.ExportTraceServiceRequest) -> None:
    """service.instance.id is a random id per Resource.create, so it differs between any two runs."""
    for resource_spans in request.resource_spans:
        attributes = resource_spans.resource.attributes
        for i in reversed(range(len(attributes))):
            if attributes[i].key == "service.instance.id":
                del attributes[i]


def check_same(records: list[SpanRecord]) -> None:
    sdk, direct = SdkSpanConverter(), RequestEncoder()
    for batch in batches(records)[:20]:
        old = _normalized(encode_spans(sdk.convert(batch)))
        new = direct.encode(batch)
        _without_instance_ids(old)
        _without_instance_ids(new)
        if old != new:
            sys.exit("bench: the direct request differs from the SDK's")


def time_encode(encode: Callable[[list[SpanRecord]], bytes], records: list[SpanRecord]) -> tuple[float, int]:
    """CPU µs per span and bytes in all."""
    chunks = batches(records)
    encode(chunks[0])  # warm up
    size = 0
    started = time.process_time()
    for batch in chunks:
        size += len(encode(batch))
    return (time.process_time() - started) / len(records) * 1e6, size


# ---------------------------------------------------------------------------------------------
# Receivers, in a child process


class _Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans = 0
        self.requests = 0

    def add(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        count = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        with self.lock:
            self.spans += count
            self.requests += 1


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, counter: _Counter) -> None:
        self.counter = counter

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.counter.add(request)
        return trace_service_pb2.ExportTraceServiceResponse()


def _http_handler(counter: _Counter) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a collector does

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            counter.add(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
            payload = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def serve(protocol: str, conn: Connection) -> None:
    """The child process: a receiver until told to stop; then reports what it decoded."""
    counter = _Counter()
    if protocol == "grpc":
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(counter), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        conn.send(f"grpc://127.0.0.1:{port}")
        conn.recv()
        server.stop(grace=None)
    else:
        http = ThreadingHTTPServer(("127.0.0.1", 0), _http_handler(counter))
        thread = threading.Thread(target=http.serve_forever, daemon=True)
        thread.start()
        conn.send(f"http://127.0.0.1:{http.server_address[1]}")
        conn.recv()
        http.shutdown()
    conn.send((counter.spans, counter.requests))


def end_to_end(store: Path, protocol: str, make: Callable[[Path, str], OtlpFollower]) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=serve, args=(protocol, child), daemon=True)
    process.start()
    try:
        endpoint = parent.recv()
        store.with_name(store.name + ".otlp-cursor").unlink(missing_ok=True)
        follower = make(store, endpoint)
        follower.batch_size = BATCH
        wall, cpu = time.perf_counter(), time.process_time()
        done = follower.drain(600)
        cpu = time.process_time() - cpu
        wall = time.perf_counter() - wall
        follower.stop()
        parent.send("stop")
        spans, requests = parent.recv()
    finally:
        process.join(10)
        if process.is_alive():
            process.kill()
    if not done or spans != follower.exported:
        sys.exit(f"bench: {protocol} receiver got {spans} spans of {follower.exported} (drained: {done})")
    return {"spans": spans, "requests": requests, "cpu_s": cpu, "wall_s": wall, "failures": follower.failures}


def time_reads(store: Path) -> float:
    """CPU µs per span of the follower's store reads alone (both paths pay them)."""
    reader = StoreReader(store)
    try:
        started, cursor, count = time.process_time(), 0, 0
        while rows := reader.spans_after(cursor, BATCH):
            cursor, count = rows[-1][0], count + len(rows)
        return (time.process_time() - started) / count * 1e6
    finally:
        reader.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spans", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kelemetry-bench-export-") as tmp:
        workdir = Path(tmp)
        base = sample_records(workdir)
        records = build_records(base, args.spans)
        by_source = {s.value: sum(r.source is s for r in records) for s in TraceSource}
        logs = sum(len(r.logs) for r in records)
        tags = sum(len(span_tags(r)) for r in records)
        print(
            f"records: {len(records)} spans from {len(base)} sample spans ({by_source}), "
            f"{tags / len(records):.1f} attributes and {logs / len(records):.2f} logs per span"
        )
        check_same(records)
        print("check: the direct requests hold the same resources, scopes and spans as the SDK's")

        sdk, direct = SdkSpanConverter(), RequestEncoder()
        old_us, old_bytes = time_encode(lambda b: encode_spans(sdk.convert(b)).SerializeToString(), records)
        new_us, new_bytes = time_encode(lambda b: direct.encode(b).SerializeToString(), records)
        for name, us, size in (("sdk", old_us, old_bytes), ("direct", new_us, new_bytes)):
            rate = 1e6 / us
            print(f"encode  {name:6}: {us:6.1f} µs/span  ({rate:>9,.0f} spans/CPU-s, {size / 1e6:.1f} MB)")
        print(f"encode  speed-up: {old_us / new_us:.1f}x")

        store = workdir / "export.db"
        write_store(store, records)
        print(f"store reads alone: {time_reads(store):.1f} µs/span")
        makers: dict[str, Callable[[Path, str], OtlpFollower]] = {
            "sdk": SdkFollower,
            "direct": lambda path, endpoint: OtlpFollower(path, endpoint, exporter=create_exporter(endpoint)),
        }
        for protocol in ("grpc", "http"):
            figures = {}
            for name, make in makers.items():
                result = end_to_end(store, protocol, make)
                figures[name] = result
                us = result["cpu_s"] / result["spans"] * 1e6
                rate, wall_rate = result["spans"] / result["cpu_s"], result["spans"] / result["wall_s"]
                print(
                    f"end to end {protocol:4} {name:6}: {rate:>9,.0f} spans/CPU-s ({us:5.1f} µs/span), "
                    f"{wall_rate:>9,.0f} spans/s wall, "
                    f"{result['requests']:.0f} requests, {result['failures']:.0f} failures"
                )
            ratio = figures["sdk"]["cpu_s"] / figures["direct"]["cpu_s"]
            print(f"end to end {protocol:4} speed-up: {ratio:.1f}x")


if __name__ == "__main__":
    main()
