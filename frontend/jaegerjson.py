"""Views as Jaeger query JSON: the one Jaeger dialect of the query side.

``GET /api/traces``, ``GET /api/traces/{id}`` and ``kelemetry dump --format json`` all answer with
``response``, so the dump of a view is byte for byte what the API serves for it. The dialect is the
view's: trace id = the view id, services = resources (with the cluster where it changes) for object
spans and trace sources for the others, operation = ``namespace/name`` for object spans, and the
merge warnings on the root span.
"""

from __future__ import annotations

from typing import Any

import orjson

from frontend.types import View
from jaeger import model as jaeger_model
from kelemetry.model.events import TagValue


def trace(view: View) -> jaeger_model.Trace:
    trace_id = view.view_id
    # Most tags repeat (cluster, resource, verbs, users): one shared KeyValue per distinct pair.
    # The type is part of the cache key because True == 1 would otherwise share an entry.
    shared: dict[tuple[str, type, TagValue], jaeger_model.KeyValue] = {}

    def kv(key: str, value: TagValue) -> jaeger_model.KeyValue:
        slot = (key, type(value), value)
        found = shared.get(slot)
        if found is None:
            found = shared[slot] = jaeger_model.key_value(key, value)
        return found

    spans: list[jaeger_model.Span] = []
    processes: dict[str, jaeger_model.Process] = {}
    process_of: dict[str, str] = {}
    for span, parent in view.root.walk_with_parents():
        pid = process_of.get(span.service)
        if pid is None:
            pid = process_of[span.service] = f"p{len(process_of) + 1}"
            processes[pid] = {"serviceName": span.service, "tags": []}
        spans.append(
            {
                "traceID": trace_id,
                "spanID": f"{span.span_id:016x}",
                "flags": 1,
                "operationName": span.operation,
                "references": []
                if parent is None
                else [{"refType": "CHILD_OF", "traceID": trace_id, "spanID": f"{parent.span_id:016x}"}],
                "startTime": span.start_us,
                "duration": max(span.end_us - span.start_us, 0),
                "tags": [kv(k, v) for k, v in span.tags.items()],
                "logs": [
                    {"timestamp": log.timestamp, "fields": [kv(k, v) for k, v in log.fields]}
                    for log in span.logs
                ],
                "processID": pid,
                "warnings": list(span.warnings) or None,
            }
        )
    return {"traceID": trace_id, "spans": spans, "processes": processes, "warnings": None}


def response(data: list[Any]) -> bytes:
    """Jaeger's response envelope around ``data``, as the bytes of a body (newline-terminated, so a
    dump ends its line)."""
    return orjson.dumps({"data": data, "total": len(data), "limit": 0, "offset": 0, "errors": None}) + b"\n"


def traces(views: list[View]) -> bytes:
    return response([trace(view) for view in views])
