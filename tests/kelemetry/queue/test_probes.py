"""The worker's probe server: the routes it has, clear refusals for everything else."""

from __future__ import annotations

import asyncio

from kelemetry.queue import probes


async def _ask(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer


def test_routes_answer_and_anything_else_is_refused_with_a_reason() -> None:
    async def run() -> list[bytes]:
        def broken() -> probes.Answer:
            raise RuntimeError("boom")

        routes = {"/healthz": lambda: probes.Answer(200, b"ok\n"), "/broken": broken}
        server = await probes.start("127.0.0.1", 0, routes)
        port = server.sockets[0].getsockname()[1]
        try:
            return [
                await _ask(port, b"GET /healthz?verbose=1 HTTP/1.1\r\nHost: x\r\n\r\n"),
                await _ask(port, b"POST /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
                await _ask(port, b"GET /nothing HTTP/1.1\r\n\r\n"),
                await _ask(port, b"garbage\r\n\r\n"),
                await _ask(port, b"GET /broken HTTP/1.1\r\n\r\n"),
            ]
        finally:
            server.close()
            await server.wait_closed()

    ok, post, missing, garbage, broken = asyncio.run(run())
    assert ok.startswith(b"HTTP/1.1 200 OK\r\n") and ok.endswith(b"\r\n\r\nok\n")
    assert post.startswith(b"HTTP/1.1 405 ") and b"only GET" in post
    assert missing.startswith(b"HTTP/1.1 404 ") and b"/healthz" in missing
    assert garbage.startswith(b"HTTP/1.1 400 ")
    assert broken.startswith(b"HTTP/1.1 503 ") and b"boom" not in broken
