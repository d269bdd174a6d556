"""How long each HTTP request takes, per route: ``kelemetry_http_request_duration_seconds{route}``.

A plain ASGI middleware outside every other one. The label is the route's template as declared
(``/api/traces/{trace_id}``), read after the router has matched it, so the set of values is the
set of routes, whatever paths clients send; the static files are one ``/static`` route, and a
request no route took (an unknown path, or one the token guard refused before routing) is
``unmatched``.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Receive, Scope, Send

from kelemetry.metrics import Histogram, Registry

UNMATCHED = "unmatched"
# Query answers: a millisecond for a small lookup to tens of seconds for a huge view.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class RequestTimer:
    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    @staticmethod
    def histogram_in(registry: Registry) -> Histogram:
        return registry.histogram(
            "kelemetry_http_request_duration_seconds",
            "Time to answer an HTTP request (query API, web UI, webhook, /metrics), by route template.",
            ("route",),
            buckets=BUCKETS,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.histogram.observe((route_of(scope),), time.perf_counter() - started)


def route_of(scope: Scope) -> str:
    """The template of the route that took the request (the router records it in the scope)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str) and path:
        return path
    if str(scope.get("path", "")).startswith("/static/"):
        return "/static"
    return UNMATCHED
