"""A minimal clamd client: the INSTREAM command over a unix socket or TCP.

Why our own ~60 lines instead of a library: the Python clamd clients are unmaintained (`clamd`
1.0.2 is from 2014, `pyClamd` 0.4.0 from 2017), and INSTREAM is tiny and stable since ClamAV
0.95: send `zINSTREAM\\0`, then chunks each prefixed with its length as a 4-byte big-endian
integer, then a zero length; clamd answers one NUL-terminated line, `stream: OK` or
`stream: <signature> FOUND` (or `... ERROR`). See clamd(8).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

CHUNK_BYTES = 64 * 1024  # well under clamd's StreamMaxLength; any size is allowed per chunk


class ClamdError(Exception):
    """clamd could not be reached or did not give a verdict."""


@dataclass(frozen=True)
class ScanResult:
    infected: bool
    signature: str | None  # the matching signature's name when infected


@dataclass(frozen=True)
class ClamdAddress:
    socket_path: str | None = None  # unix socket; wins over host/port
    host: str | None = None
    port: int = 3310

    def connect(self, timeout: float) -> socket.socket:
        if self.socket_path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target: str | tuple[str, int] = self.socket_path
        else:
            sock = socket.socket(socket.AF_INET6 if ":" in (self.host or "") else socket.AF_INET)
            target = (self.host or "127.0.0.1", self.port)
        sock.settimeout(timeout)
        try:
            sock.connect(target)
        except OSError:
            sock.close()
            raise
        return sock


def clamd_instream(address: ClamdAddress, data: bytes, *, timeout: float) -> ScanResult:
    """Scan `data` with clamd. Raises ClamdError when clamd is unreachable or answers an error."""
    try:
        with address.connect(timeout) as sock:
            sock.sendall(b"zINSTREAM\0")
            for start in range(0, len(data), CHUNK_BYTES):
                chunk = data[start : start + CHUNK_BYTES]
                sock.sendall(struct.pack("!L", len(chunk)) + chunk)
            sock.sendall(struct.pack("!L", 0))
            reply = _read_reply(sock)
    except OSError as exc:
        raise ClamdError(f"clamd unreachable: {exc}") from exc
    return _parse_reply(reply)


def _read_reply(sock: socket.socket) -> str:
    buffer = b""
    while not buffer.endswith(b"\0"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        buffer += chunk
    return buffer.rstrip(b"\0").decode("utf-8", "replace").strip()


def _parse_reply(reply: str) -> ScanResult:
    # "stream: OK", "stream: Eicar-Test-Signature FOUND", "INSTREAM size limit exceeded. ERROR"
    body = reply.split(":", 1)[1].strip() if reply.startswith("stream:") else reply
    if body == "OK":
        return ScanResult(infected=False, signature=None)
    if body.endswith(" FOUND"):
        return ScanResult(infected=True, signature=body.removesuffix(" FOUND").strip())
    raise ClamdError(f"clamd gave no verdict: {reply or 'empty reply'}")
