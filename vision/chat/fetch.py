"""Fetch an image by http(s) URL without becoming an SSRF proxy.

Rules (docs/architecture.md, "Errors and limits"):
- only http and https, no credentials in the URL;
- resolve the host ourselves and refuse unless EVERY address is public: no private, loopback,
  link-local (169.254.169.254 and other cloud metadata), shared, multicast, reserved or
  unspecified addresses, and IPv6-mapped/compatible forms are judged by their IPv4 address.
  Decimal (2130706433) and octal (0177.0.0.1) spellings resolve to 127.0.0.1 and fail the same way;
- connect to the vetted address itself (the socket is pinned: no second DNS lookup that a
  rebinding DNS server could answer differently), TLS verified against the host name;
- follow at most a few redirects, each one vetted again from scratch;
- cap the bytes and the total time.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from docplatform.errors import ValidationFailed

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 64 * 1024


class FetchRefused(ValidationFailed):
    code = "invalid_image_url"


def address_is_public(address: Address, port: int) -> bool:
    """The default policy: a globally routable unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo or (None, None))[1]
        if embedded is not None:
            return address_is_public(embedded, port)
        if address.packed[:12] == bytes(12):  # deprecated IPv4-compatible ::a.b.c.d
            return address_is_public(ipaddress.IPv4Address(address.packed[12:]), port)
    return address.is_global and not (
        address.is_multicast
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_unspecified
    )


@dataclass(frozen=True)
class Fetched:
    data: bytes
    url: str  # after redirects
    content_type: str


def _resolve(host: str, port: int) -> list[Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchRefused(f"cannot resolve image host {host!r}: {exc}") from None
    addresses = []
    for info in infos:
        text = info[4][0].split("%", 1)[0]  # drop an IPv6 zone id
        addresses.append(ipaddress.ip_address(text))
    if not addresses:
        raise FetchRefused(f"image host {host!r} has no address")
    return addresses


def _vet(url: str, allow: Callable[[Address, int], bool]) -> tuple[str, str, int, str, Address]:
    """→ (scheme, host, port, path+query, pinned address) or FetchRefused."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FetchRefused(f"invalid image URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchRefused(
            f"image URL scheme {scheme or '(none)'!r} is not allowed; use https, http or data:"
        )
    if parts.username is not None or parts.password is not None:
        raise FetchRefused("image URLs must not carry credentials")
    host = parts.hostname
    if not host:
        raise FetchRefused("image URL has no host")
    port = port or (443 if scheme == "https" else 80)
    addresses = _resolve(host, port)
    refused = [a for a in addresses if not allow(a, port)]
    if refused:
        raise FetchRefused(
            f"image URL host {host!r} resolves to a non-public address ({refused[0]}); refused"
        )
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, host, port, path, addresses[0]


def _connect(
    scheme: str, host: str, port: int, address: Address, timeout: float
) -> http.client.HTTPConnection:
    sock = socket.create_connection((str(address), port), timeout=timeout)
    if scheme == "https":
        context = ssl.create_default_context()
        try:
            sock = context.wrap_socket(sock, server_hostname=host)
        except (ssl.SSLError, OSError):
            sock.close()
            raise
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    connection.sock = sock  # pinned to the vetted address: http.client will not resolve again
    return connection


def safe_fetch(
    url: str,
    *,
    max_bytes: int,
    timeout_s: float,
    max_redirects: int,
    allow: Callable[[Address, int], bool] = address_is_public,
) -> Fetched:
    deadline = time.monotonic() + timeout_s
    for _hop in range(max_redirects + 1):
        scheme, host, port, path, address = _vet(url, allow)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchRefused(f"fetching the image took longer than {timeout_s:g} s")
        try:
            connection = _connect(scheme, host, port, address, remaining)
        except OSError as exc:
            raise FetchRefused(f"cannot connect to image host {host!r}: {exc}") from None
        try:
            host_header = host if port in (80, 443) else f"{host}:{port}"
            if ":" in host and not host.startswith("["):
                host_header = f"[{host}]" if port in (80, 443) else f"[{host}]:{port}"
            connection.request(
                "GET", path, headers={"Host": host_header, "User-Agent": "DocPlatform/1", "Accept": "image/*"}
            )
            response = connection.getresponse()
            if response.status in _REDIRECTS:
                location = response.getheader("Location")
                if not location:
                    raise FetchRefused(f"image URL redirected ({response.status}) without a Location")
                url = urljoin(url, location)
                continue
            if response.status != 200:
                raise FetchRefused(f"image URL answered HTTP {response.status}")
            length = response.getheader("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise FetchRefused(f"image is larger than {max_bytes} bytes")
            chunks, size = [], 0
            while True:
                if time.monotonic() > deadline:
                    raise FetchRefused(f"fetching the image took longer than {timeout_s:g} s")
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise FetchRefused(f"image is larger than {max_bytes} bytes")
                chunks.append(chunk)
            return Fetched(
                data=b"".join(chunks), url=url, content_type=response.getheader("Content-Type") or ""
            )
        except (OSError, http.client.HTTPException) as exc:
            raise FetchRefused(f"fetching the image failed: {exc}") from None
        finally:
            connection.close()
    raise FetchRefused(f"image URL redirected more than {max_redirects} times")
