"""Drive the ASGI app in this process with a streaming POST and report the client gone
(`http.disconnect`) after a few content chunks, exactly when the test says: over real TCP, when
a server notices a closed peer is up to its socket flow control."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


def http_scope(path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *headers,
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }


@dataclass
class Disconnected:
    """What the client saw: response headers (with b":status"), content chunks, and whether the
    request ended by itself after the disconnect (not by the caller's timeout)."""

    headers: dict[bytes, bytes] = field(default_factory=dict)
    content_chunks: int = 0
    ended_by_disconnect: bool = False


async def disconnect_after_chunks(
    application,
    path: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    *,
    chunks: int = 3,
    timeout: float = 60,
) -> Disconnected:
    """POST `body`; after `chunks` content chunks the client is gone. If the request has not ended
    `timeout` s later it is cancelled here (a cancel would end the generation as cancelled too,
    so `ended_by_disconnect` tells the two apart)."""
    out = Disconnected()
    gone = asyncio.Event()
    body_sent = False

    async def receive() -> dict:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            out.headers.update({k.lower(): v for k, v in message["headers"]})
            out.headers[b":status"] = str(message["status"]).encode()
        elif message["type"] == "http.response.body" and b'"content"' in message.get("body", b""):
            out.content_chunks += 1
            if out.content_chunks >= chunks:
                gone.set()

    served = asyncio.create_task(application(http_scope(path, headers, body), receive, send))
    done, _ = await asyncio.wait({served}, timeout=timeout)
    out.ended_by_disconnect = bool(done)
    if not done:
        served.cancel()
        await asyncio.wait({served}, timeout=30)
    return out
