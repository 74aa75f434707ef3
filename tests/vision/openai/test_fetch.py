"""The SSRF-safe fetcher. Address policy as a table; redirects and caps against real local HTTP
servers on 127.0.0.1. Those servers are loopback, which the real policy refuses, so the tests
that must reach them pass a policy allowing exactly (127.0.0.1, that port) and nothing else:
everything else is still judged by the real checks, including every redirect target."""

from __future__ import annotations

import io
import ipaddress
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from vision.chat.fetch import FetchRefused, _vet, address_is_public, safe_fetch


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",  # AWS IPv6 metadata
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:169.254.169.254",
        "::127.0.0.1",  # IPv4-compatible
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
    ],
)
def test_non_public_addresses_are_refused(address):
    assert not address_is_public(ipaddress.ip_address(address), 80)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address):
    assert address_is_public(ipaddress.ip_address(address), 443)


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",  # decimal
        "http://0177.0.0.1/",  # octal
        "http://0x7f000001/",  # hex
        "http://127.1/",  # short form
        "http://017700000001/",  # octal, one number
        "http://[::ffff:7f00:1]/",
        "http://localhost:6379/",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
def test_numeric_spellings_of_private_addresses_are_refused(url):
    with pytest.raises(FetchRefused, match="non-public"):
        _vet(url, address_is_public)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://x/y", "javascript:alert(1)", "//no-scheme/x"])
def test_other_schemes_are_refused(url):
    with pytest.raises(FetchRefused, match="scheme"):
        _vet(url, address_is_public)


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (0, 0, 255)).save(buffer, format="PNG")
    return buffer.getvalue()


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
    hits: list[str] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        status, headers, body = self.routes.get(self.path, (404, {}, b""))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def servers() -> Iterator[tuple[ThreadingHTTPServer, ThreadingHTTPServer]]:
    started = []
    for _ in range(2):
        handler = type("Handler", (_Handler,), {"routes": {}, "hits": []})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
    yield started[0], started[1]
    for server in started:
        server.shutdown()
        server.server_close()


def _only(*servers: ThreadingHTTPServer):
    allowed = {(ipaddress.ip_address("127.0.0.1"), s.server_address[1]) for s in servers}
    return lambda address, port: (address, port) in allowed


def _fetch(url: str, allow, **overrides):
    options = {"max_bytes": 1024 * 1024, "timeout_s": 5, "max_redirects": 3, "allow": allow} | overrides
    return safe_fetch(url, **options)


def test_redirect_to_an_allowed_host_is_followed(servers):
    """Control for the refusals below: with both hosts allowed the redirect is followed."""
    a, b = servers
    b.RequestHandlerClass.routes["/cat.png"] = (200, {"Content-Type": "image/png"}, _png())
    a.RequestHandlerClass.routes["/start"] = (
        302,
        {"Location": f"http://127.0.0.1:{b.server_address[1]}/cat.png"},
        b"",
    )
    fetched = _fetch(f"http://127.0.0.1:{a.server_address[1]}/start", _only(a, b))
    assert fetched.data == _png() and fetched.url.endswith("/cat.png")


def test_redirect_to_a_private_address_is_refused_before_connecting(servers):
    a, b = servers
    b.RequestHandlerClass.routes["/cat.png"] = (200, {}, _png())
    a.RequestHandlerClass.routes["/loopback"] = (
        301,
        {"Location": f"http://127.0.0.1:{b.server_address[1]}/cat.png"},
        b"",
    )
    a.RequestHandlerClass.routes["/metadata"] = (
        302,
        {"Location": "http://169.254.169.254/latest/meta-data/"},
        b"",
    )
    a.RequestHandlerClass.routes["/decimal"] = (307, {"Location": "http://2130706433/"}, b"")
    for path in ("/loopback", "/metadata", "/decimal"):
        with pytest.raises(FetchRefused, match="non-public"):
            _fetch(f"http://127.0.0.1:{a.server_address[1]}{path}", _only(a))
    assert b.RequestHandlerClass.hits == []  # the private target was never contacted


def test_redirect_loops_are_capped(servers):
    a, _ = servers
    a.RequestHandlerClass.routes["/loop"] = (302, {"Location": "/loop"}, b"")
    with pytest.raises(FetchRefused, match="redirected more than 2"):
        _fetch(f"http://127.0.0.1:{a.server_address[1]}/loop", _only(a), max_redirects=2)
    assert len(a.RequestHandlerClass.hits) == 3


def test_size_cap(servers):
    a, _ = servers
    a.RequestHandlerClass.routes["/big"] = (200, {}, b"x" * 5000)
    with pytest.raises(FetchRefused, match="larger than 1000"):
        _fetch(f"http://127.0.0.1:{a.server_address[1]}/big", _only(a), max_bytes=1000)


def test_the_real_policy_refuses_the_local_server(servers):
    a, _ = servers
    with pytest.raises(FetchRefused, match="non-public"):
        safe_fetch(f"http://127.0.0.1:{a.server_address[1]}/x", max_bytes=10, timeout_s=2, max_redirects=0)
    assert a.RequestHandlerClass.hits == []


def test_time_cap(servers):
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never answers
    port = listener.getsockname()[1]
    allow = lambda address, p: p == port  # noqa: E731
    try:
        with pytest.raises(FetchRefused):
            safe_fetch(
                f"http://127.0.0.1:{port}/slow", max_bytes=10, timeout_s=1, max_redirects=0, allow=allow
            )
    finally:
        listener.close()
