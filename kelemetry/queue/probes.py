"""A minimal HTTP server for a worker's probes and metrics (GET only, no request body).

The worker role has no API, only what Kubernetes and Prometheus ask of every pod, so it runs
this on its own event loop rather than a web framework beside it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

logger = logging.getLogger(__name__)

MAX_HEAD = 16 * 1024
READ_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


Route = Callable[[], Answer]
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


async def start(host: str, port: int, routes: Mapping[str, Route]) -> asyncio.Server:
    """Serve ``routes`` (path → answer) on ``host:port``; raises OSError when it cannot listen."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            answer = _answer(head, routes)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            answer = Answer(400, b"incomplete or oversized request\n")
        try:
            writer.write(
                f"HTTP/1.1 {answer.status} {_REASONS.get(answer.status, '')}\r\n"
                f"Content-Type: {answer.content_type}\r\nContent-Length: {len(answer.body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + answer.body
            )
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port, limit=MAX_HEAD)


def _answer(head: bytes, routes: Mapping[str, Route]) -> Answer:
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        return Answer(400, b"not an HTTP request line\n")
    method, target = parts[0], parts[1].decode("latin-1").split("?", 1)[0]
    route = routes.get(target)
    if route is None:
        return Answer(404, f"no such path; this worker serves {', '.join(sorted(routes))}\n".encode())
    if method != b"GET":
        return Answer(405, b"only GET is served here\n")
    try:
        return route()
    except Exception:
        logger.exception("probe %s failed", target)
        return Answer(503, b"the probe failed; see the worker's log\n")
