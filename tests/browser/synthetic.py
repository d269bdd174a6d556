"""A synthetic large trace (tracing-mode shape) and a page script serving it in place of the API's
trace, to measure the UI on 1,000 object spans and 10,000 logs. Importable without pytest."""

from __future__ import annotations

import json
import random
from typing import Any

WINDOW_START_US = 1_795_417_200_000_000  # 2026-11-23T07:00:00Z
WINDOW_US = 30 * 60 * 1_000_000
TRACE_ID = "5e" * 16


def _tags(**values: str) -> list[dict[str, Any]]:
    return [{"key": k, "type": "string", "value": v} for k, v in values.items()]


def _object_span(
    span_id: str, parent: str | None, kind: str, resource: str, group: str, name: str
) -> dict[str, Any]:
    return {
        "traceID": TRACE_ID,
        "spanID": span_id,
        "operationName": f"default/{name}",
        "references": [{"refType": "CHILD_OF", "traceID": TRACE_ID, "spanID": parent}] if parent else [],
        "startTime": WINDOW_START_US,
        "duration": WINDOW_US,
        "tags": [
            *_tags(
                cluster="tracetest",
                group=group,
                version="v1",
                resource=resource,
                namespace="default",
                name=name,
                kind=kind,
            ),
            {"key": "kelemetry.trace_source", "type": "string", "value": "object"},
        ],
        "logs": [],
        "processID": "p1",
        "warnings": None,
    }


def big_trace(
    replicasets: int = 4, pods_per_replicaset: int = 249, logs: int = 10_000, seed: int = 1
) -> dict[str, Any]:
    """Jaeger query JSON: Deployment default/demo → `replicasets` ReplicaSets → Pods, with `logs`
    request/Event logs spread over the objects (some with diffs, some Warnings and errors)."""
    rnd = random.Random(seed)
    spans = [_object_span(f"{0:016x}", None, "Deployment", "deployments", "apps", "demo")]
    for r in range(replicasets):
        rs_id = f"{1:08x}{r:08x}"
        rs_name = f"demo-{r:04d}"
        spans.append(_object_span(rs_id, spans[0]["spanID"], "ReplicaSet", "replicasets", "apps", rs_name))
        for p in range(pods_per_replicaset):
            spans.append(
                _object_span(f"{2:08x}{r * 100_000 + p:08x}", rs_id, "Pod", "pods", "", f"{rs_name}-{p:04d}")
            )
    for i in range(logs):
        span = spans[rnd.randrange(len(spans))]
        roll = rnd.random()
        fields: list[tuple[str, Any]]
        if roll < 0.55:
            fields = [
                ("kelemetry.trace_source", "audit"),
                ("audit", "system:serviceaccount:kube-system:replicaset-controller update status"),
                ("code", 200),
                ("diff", f"status.observedGeneration {i} -> {i + 1}\nstatus.replicas 1 -> 2"),
            ]
        elif roll < 0.6:
            fields = [
                ("kelemetry.trace_source", "audit"),
                ("audit", "alice update (Conflict)"),
                ("code", 409),
                ("error", "Conflict: the object has been modified"),
            ]
        elif roll < 0.9:
            fields = [
                ("kelemetry.trace_source", "event"),
                ("event", "Scheduled: assigned"),
                ("type", "Normal"),
            ]
        else:
            fields = [
                ("kelemetry.trace_source", "event"),
                ("event", "BackOff: restarting"),
                ("type", "Warning"),
            ]
        span["logs"].append(
            {
                "timestamp": WINDOW_START_US + rnd.randrange(0, 10 * 60 * 1_000_000),
                "fields": [
                    {"key": k, "type": "int64" if isinstance(v, int) else "string", "value": v}
                    for k, v in fields
                ],
            }
        )
    for span in spans:
        span["logs"].sort(key=lambda log: log["timestamp"])
    trace = {
        "traceID": TRACE_ID,
        "spans": spans,
        "processes": {"p1": {"serviceName": "tracetest deployments", "tags": []}},
        "warnings": None,
    }
    return {"data": [trace]}


def serve_trace_script(document: dict[str, Any]) -> str:
    """A script for Page.addScriptToEvaluateOnNewDocument: the page's fetch of /api/traces/<id>
    answers `document`; every other request goes to the server."""
    body = json.dumps(json.dumps(document, separators=(",", ":")))
    return f"""
(() => {{
  const body = {body};
  const realFetch = window.fetch.bind(window);
  window.fetch = (input, init) => {{
    const url = new URL(typeof input === "string" ? input : input.url, window.location.href);
    if (url.pathname.startsWith("/api/traces/")) {{
      const headers = {{ "Content-Type": "application/json" }};
      return Promise.resolve(new Response(body, {{ status: 200, headers }}));
    }}
    return realFetch(input, init);
  }};
}})();
"""
