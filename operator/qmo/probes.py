"""A very small HTTP server for probe endpoints (a standby's /healthz, /readyz): one GET path
answered with a status and a JSON body, everything else 404. kopf serves /healthz only on the
leader and only while it runs; these answer beside it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

# path -> () -> (HTTP status, JSON-able body)
Routes = dict[bytes, Callable[[], tuple[int, object]]]
_REASONS = {200: b"OK", 404: b"Not Found", 503: b"Service Unavailable"}


async def serve(port: int | None, routes: Routes) -> asyncio.Server | None:
    """Answer GET `routes` on `port` (all interfaces); None without a port."""
    if port is None:
        return None

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            request = await reader.readuntil(b"\r\n\r\n")
            path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b""
            answer = routes.get(path)
            code, payload = answer() if answer is not None else (404, None)
            body = b"" if payload is None else json.dumps(payload).encode()
            writer.write(
                b"HTTP/1.1 " + str(code).encode() + b" " + _REASONS.get(code, b"") +
                b"\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n"
                b"Connection: close\r\n\r\n" + body
            )  # fmt: skip
            await writer.drain()
        writer.close()

    return await asyncio.start_server(respond, "0.0.0.0", port)
