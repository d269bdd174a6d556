"""A stand-in for Jaeger's query HTTP API, on loopback in a thread (stdlib http.server only).

It serves ``/api/services`` and ``/api/traces`` the way Jaeger v1/v2 does for the spans our OTLP
exporter sends: one service per trace source (``object``, ``audit``, ``event``), span tags = our
tags plus what the OTel SDK and Jaeger add (``otel.scope.name``, ``span.kind``, status), logs =
OTel span events (field ``event`` = the log kind, then ``message``). A search returns whole traces
that hold a span of the service whose tags match all the given ones (values compared as strings,
as Jaeger does) and whose start time lies in [start, end]. Every request is recorded.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jaeger import model
from kelemetry.model.spans import SpanRecord, span_tags

SCOPE_TAGS = [
    model.key_value("otel.scope.name", "kelemetry"),
    model.key_value("otel.scope.version", "0.1.0"),
    model.key_value("span.kind", "internal"),
]
PROCESS_TAGS = [
    model.key_value("service.version", "0.1.0"),
    model.key_value("telemetry.sdk.language", "python"),
    model.key_value("telemetry.sdk.name", "opentelemetry"),
]


def jaeger_span(record: SpanRecord, process_id: str) -> dict[str, Any]:
    """One of our spans as Jaeger's query API returns it after an OTLP export."""
    trace_hex = f"{record.trace_id:032x}"
    tags = [model.key_value(k, v) for k, v in span_tags(record).items()]
    tags.extend(SCOPE_TAGS)
    if record.error:
        message = record.logs[0].message if record.logs else ""
        tags.append(model.key_value("otel.status_code", "ERROR"))
        tags.append(model.key_value("otel.status_description", message))
    tags.append(model.key_value("internal.span.format", "otlp"))
    return {
        "traceID": trace_hex,
        "spanID": f"{record.span_id:016x}",
        "operationName": record.name,
        "references": []
        if record.parent_id is None
        else [{"refType": "CHILD_OF", "traceID": trace_hex, "spanID": f"{record.parent_id:016x}"}],
        "startTime": record.start_us,
        "duration": record.end_us - record.start_us,
        "tags": tags,
        "logs": [
            {
                "timestamp": record.start_us,
                "fields": [model.key_value("event", log.kind), model.key_value("message", log.message)],
            }
            for log in record.logs
        ],
        "processID": process_id,
        "warnings": None,
        "flags": 1,
    }


def jaeger_traces(records: Iterable[SpanRecord]) -> list[dict[str, Any]]:
    """Records grouped into Jaeger traces, with one process per service (= trace source)."""
    traces: dict[int, dict[str, Any]] = {}
    for record in records:
        trace = traces.setdefault(
            record.trace_id,
            {"traceID": f"{record.trace_id:032x}", "spans": [], "processes": {}, "warnings": None},
        )
        service = record.source.value
        pid = next((p for p, proc in trace["processes"].items() if proc["serviceName"] == service), None)
        if pid is None:
            pid = f"p{len(trace['processes']) + 1}"
            trace["processes"][pid] = {"serviceName": service, "tags": PROCESS_TAGS}
        trace["spans"].append(jaeger_span(record, pid))
    return list(traces.values())


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@dataclass
class Reply:
    """A canned answer that replaces the normal one."""

    status: int = 200
    body: bytes = b""
    delay_until: threading.Event | None = None


@dataclass
class FakeJaeger:
    url: str = ""
    traces: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)
    reply: Reply | None = None

    def search(self, params: dict[str, list[str]]) -> list[dict[str, Any]]:
        service = params.get("service", [""])[0]
        wanted: dict[str, str] = json.loads(params["tags"][0]) if "tags" in params else {}
        start = int(params.get("start", ["0"])[0])
        end = int(params.get("end", [str(2**63)])[0])
        limit = int(params.get("limit", ["20"])[0])
        found: list[dict[str, Any]] = []
        for trace in self.traces:
            services = {pid: proc["serviceName"] for pid, proc in trace["processes"].items()}
            for span in trace["spans"]:
                span_tags_ = {tag["key"]: _text(tag["value"]) for tag in span["tags"]}
                if (
                    services[span["processID"]] == service
                    and start <= span["startTime"] <= end
                    and all(span_tags_.get(k) == v for k, v in wanted.items())
                ):
                    found.append(trace)
                    break
        return found[:limit] if limit else found

    def answer(self, path: str, params: dict[str, list[str]]) -> tuple[int, bytes]:
        self.requests.append((path, params))
        if self.reply is not None:
            if self.reply.delay_until is not None:
                self.reply.delay_until.wait(10)
            return self.reply.status, self.reply.body
        if path == "/api/services":
            names = sorted({p["serviceName"] for t in self.traces for p in t["processes"].values()})
            return 200, json.dumps({"data": names, "total": len(names), "limit": 0, "offset": 0}).encode()
        if path == "/api/traces":
            data = self.search(params)
            body = {"data": data, "total": len(data), "limit": 0, "offset": 0, "errors": None}
            return 200, json.dumps(body).encode()
        return 404, b"404 page not found\n"


@contextmanager
def serving(fake: FakeJaeger | None = None) -> Iterator[FakeJaeger]:
    """Run ``fake`` on a free loopback port for the duration of the block."""
    jaeger = fake or FakeJaeger()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            status, body = jaeger.answer(parts.path, parse_qs(parts.query))
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    jaeger.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield jaeger
    finally:
        if jaeger.reply is not None and jaeger.reply.delay_until is not None:
            jaeger.reply.delay_until.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def closed_port_url() -> str:
    """A loopback URL nothing listens on (the port was free a moment ago)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
