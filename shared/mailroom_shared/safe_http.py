"""Outgoing HTTP to URLs that users or connectors chose (webhook subscriptions, chat connectors),
without server-side request forgery: the URL must be absolute http(s) without credentials, its host
is resolved and every address checked (private, loopback, link-local and other non-global
addresses refused unless allowed), and the connection is made to the checked address itself — no
second lookup a DNS rebinding could answer differently — with TLS verified against the URL's host
name. A connect timeout and a total deadline bound every request. Green under nameko (socket and
ssl are monkey-patched). The one implementation for the notifier and the channel connectors."""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import eventlet

MAX_URL_LENGTH = 2000


class TargetRefused(ValueError):
    """The URL or the address it resolves to is not allowed."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str  # path + query, what goes on the request line


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no answer (refused target, timeout, connection error)
    error: str | None
    duration: float = 0.0  # seconds, from the check to the last byte read
    retry_after: float | None = None  # seconds, from a 429's or 503's Retry-After


def parse_url(url: str, *, allow_http: bool) -> Target:
    """The parts of an absolute https URL (http too when allowed) without credentials, else
    TargetRefused."""
    if not isinstance(url, str) or not url.strip() or len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"the URL must be a string of 1 to {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"not a valid URL: {exc}") from None
    if parts.scheme not in (("https", "http") if allow_http else ("https",)):
        raise TargetRefused("the URL must use http or https" if allow_http else "the URL must use https")
    if not parts.hostname:
        raise TargetRefused("the URL has no host")
    if parts.username or parts.password:
        raise TargetRefused("the URL must not carry credentials")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path)


def address_refusal(address: str) -> str | None:
    """Why an IP address is not a public unicast address (None when it is)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone id is not part of the address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for attribute, what in (("is_loopback", "loopback"), ("is_link_local", "link-local"),
                            ("is_multicast", "multicast"), ("is_unspecified", "unspecified"),
                            ("is_reserved", "reserved"), ("is_private", "private")):
        if getattr(ip, attribute):
            return what
    return None if ip.is_global else "not global"


def check_addresses(host: str, addresses: list[str], *, allow_private: bool) -> str:
    """The address to connect to, out of what `host` resolved to: every one must be allowed (a
    name resolving to one public and one private address is refused)."""
    if not addresses:
        raise TargetRefused(f"{host} does not resolve")
    if not allow_private:
        for address in addresses:
            why = address_refusal(address)
            if why:
                raise TargetRefused(f"{host} resolves to a {why} address ({address})")
    return addresses[0]


def resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"{host} does not resolve ({exc})") from None
    return list(dict.fromkeys(info[4][0] for info in infos))


def checked_target(url: str, *, allow_private: bool, allow_http: bool = True) -> tuple[Target, str]:
    """The URL's parts and the checked address to connect to; TargetRefused when not allowed."""
    target = parse_url(url, allow_http=allow_http)
    return target, check_addresses(target.host, resolve(target.host, target.port), allow_private=allow_private)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, address: str, target: Target, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = address

    def connect(self):
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    def __init__(self, address: str, target: Target, timeout: float, context: ssl.SSLContext):
        super().__init__(address, target, timeout)
        self._context = context

    def connect(self):
        super().connect()
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.host)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def post(url: str, body: str, headers: dict[str, str], *, allow_private: bool, allow_http: bool = True,
         connect_timeout: float = 5.0, total_timeout: float = 15.0, ssl_context: ssl.SSLContext | None = None,
         user_agent: str = "mailroom/1") -> Answer:
    """POST `body` (JSON) to `url` at a checked address; the answer's status (the body is read up to
    64 KiB and dropped), or why there is none."""
    started = time.perf_counter()
    try:
        target, address = checked_target(url, allow_private=allow_private, allow_http=allow_http)
    except TargetRefused as exc:
        return Answer(None, f"refused: {exc}", time.perf_counter() - started)
    if target.scheme == "https":
        connection = _PinnedHTTPSConnection(address, target, connect_timeout,
                                             ssl_context or ssl.create_default_context())
    else:
        connection = _PinnedHTTPConnection(address, target, connect_timeout)
    payload = body.encode()
    try:
        with eventlet.Timeout(max(0.1, total_timeout - (time.perf_counter() - started))):
            connection.request("POST", target.path, body=payload, headers={
                **headers, "Content-Type": "application/json", "User-Agent": user_agent,
                "Content-Length": str(len(payload))})
            response = connection.getresponse()
            response.read(65536)
            ok = 200 <= response.status < 300
            return Answer(response.status, None if ok else f"HTTP {response.status}", time.perf_counter() - started,
                          _retry_after(response.getheader("Retry-After")))
    except eventlet.Timeout:
        return Answer(None, f"timed out after {total_timeout:g} s", time.perf_counter() - started)
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        return Answer(None, f"{type(exc).__name__}: {exc}"[:500], time.perf_counter() - started)
    finally:
        connection.close()
