"""A small reverse proxy for local runs: one HTTP address in front of the per-service HTTP
servers, routed by mailroom_shared.routing. Not for production (use an ingress there)."""

from __future__ import annotations

import http.client
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from mailroom_shared.routing import service_for_path

log = logging.getLogger(__name__)
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade"}


def make_handler(backends: dict[str, tuple[str, int]]):
    class ProxyHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _proxy(self):
            service = service_for_path(urlsplit(self.path).path)
            backend = backends.get(service or "")
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if backend is None:
                self._answer(404, b'{"error": {"code": "not_found", "message": "no service serves this path"}}')
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            connection = http.client.HTTPConnection(*backend, timeout=60)
            try:
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
            except OSError as exc:
                self._answer(502, f'{{"error": {{"code": "bad_gateway", "message": "{service}: {exc}"}}}}'.encode())
                return
            finally:
                connection.close()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in HOP_BY_HOP | {"content-length"}:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _answer(self, status: int, body: bytes):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _proxy

        def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
            log.debug("proxy: " + format, *args)

    return ProxyHandler


def serve_in_thread(host: str, port: int, backends: dict[str, tuple[str, int]]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), make_handler(backends))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="mailroom-devproxy", daemon=True).start()
    return server
