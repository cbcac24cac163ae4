"""The webhook HTTP client: resolves the URL's host, checks every address (domain.targets), and
POSTs to the checked address itself (no second lookup a DNS rebinding could answer differently),
with TLS verified against the URL's host name. Connect timeout and a total deadline from the
settings. Green under nameko (socket and ssl are monkey-patched)."""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from dataclasses import dataclass

import eventlet

from notifier.domain import targets

USER_AGENT = "mailroom-webhooks/1"


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no answer (refused target, timeout, connection error)
    error: str | None
    duration: float


def resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise targets.TargetRefused(f"{host} does not resolve ({exc})") from None
    return list(dict.fromkeys(info[4][0] for info in infos))


def checked_target(url: str, *, allow_http: bool, allow_private: bool) -> tuple[targets.Target, str]:
    """The URL's parts and the address to connect to; TargetRefused when not allowed."""
    target = targets.parse_url(url, allow_http=allow_http)
    address = targets.check_addresses(target.host, resolve(target.host, target.port), allow_private=allow_private)
    return target, address


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, address: str, target: targets.Target, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = address

    def connect(self):
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    def __init__(self, address: str, target: targets.Target, timeout: float, context: ssl.SSLContext):
        super().__init__(address, target, timeout)
        self._context = context

    def connect(self):
        super().connect()
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.host)


def post(url: str, body: str, headers: dict[str, str], *, allow_http: bool, allow_private: bool,
         connect_timeout: float, total_timeout: float, ssl_context: ssl.SSLContext | None = None) -> Answer:
    """POST `body` to `url`; the answer's status (the body is read and dropped), or why none."""
    started = time.perf_counter()
    try:
        target, address = checked_target(url, allow_http=allow_http, allow_private=allow_private)
    except targets.TargetRefused as exc:
        return Answer(None, f"refused: {exc}", time.perf_counter() - started)
    if target.scheme == "https":
        connection = _PinnedHTTPSConnection(address, target, connect_timeout,
                                             ssl_context or ssl.create_default_context())
    else:
        connection = _PinnedHTTPConnection(address, target, connect_timeout)
    payload = body.encode()
    try:
        with eventlet.Timeout(total_timeout):
            connection.request("POST", target.path, body=payload, headers={
                **headers, "Content-Type": "application/json", "User-Agent": USER_AGENT,
                "Content-Length": str(len(payload))})
            response = connection.getresponse()
            response.read(65536)
            return Answer(response.status, None if 200 <= response.status < 300 else f"HTTP {response.status}",
                          time.perf_counter() - started)
    except eventlet.Timeout:
        return Answer(None, f"timed out after {total_timeout:g} s", time.perf_counter() - started)
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        return Answer(None, f"{type(exc).__name__}: {exc}"[:500], time.perf_counter() - started)
    finally:
        connection.close()
