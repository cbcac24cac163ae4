"""A small reverse proxy for local runs: one HTTP address in front of the per-service HTTP
servers, routed by mailroom_shared.routing. Not for production (use an ingress there).

It also serves the web inbox (web/, built into web/dist by `make install`) from the same origin
as the API, with a strict Content-Security-Policy, and, while MAILROOM_DEV_AUTH is on, the dev
sign-in (`POST /auth/dev-token`), which mints a token server-side (docs/web-inbox.md)."""

from __future__ import annotations

import http.client
import json
import logging
import mimetypes
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from mailroom_shared.routing import service_for_path

log = logging.getLogger(__name__)
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade"}

# --- the web inbox --------------------------------------------------------------------------------
WEB_DIR = Path(__file__).resolve().parents[2] / "web" / "dist"
# No inline script anywhere; the message frames are srcdoc iframes, which inherit this policy (so
# mail's own style="" attributes need style-src-attr, and "Load images" needs remote img/font/media
# sources here); each frame adds its own stricter policy that blocks every remote load until the
# user asks (web/src/app.js, frameDocument).
WEB_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
           "img-src 'self' data: blob: https: http:; font-src 'self' https: http:; media-src https: http:; "
           "connect-src 'self'; frame-src 'self' about:; child-src 'self' about:; base-uri 'none'; "
           "form-action 'self'; frame-ancestors 'none'; object-src 'none'")
WEB_HEADERS = {"Content-Security-Policy": WEB_CSP, "X-Content-Type-Options": "nosniff",
               "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY", "Cache-Control": "no-cache"}
DEV_TOKEN_PATH = "/auth/dev-token"  # noqa: S105 - a path
DEV_ROLES = ("account_access", "super_admin")
MAX_DEV_TOKEN_BODY = 4096


def dev_auth_enabled() -> bool:
    return os.environ.get("MAILROOM_DEV_AUTH", "true").strip().lower() not in {"0", "false", "no", "off"}


def web_file(web_dir: Path, path: str) -> Path | None:
    """The built file for a request path (the app itself for `/`), never outside `web_dir`."""
    relative = path.lstrip("/") or "index.html"
    candidate = (web_dir / relative).resolve()
    root = web_dir.resolve()
    if root not in candidate.parents or not candidate.is_file():
        return None
    return candidate


def mint_dev_token(body: bytes | None, content_type: str) -> tuple[int, dict]:
    """The dev sign-in: a token for the user id typed on the sign-in page (and an optional role),
    minted here with the local secret; refused when dev auth is off."""
    if not dev_auth_enabled():
        return 403, {"error": {"code": "dev_auth_off", "message": "dev sign-in is off (MAILROOM_DEV_AUTH=false): "
                                                                  "sign in with your identity provider"}}
    if content_type.split(";")[0].strip().lower() != "application/json":  # a cross-site form cannot send this
        return 415, {"error": {"code": "unsupported_media_type", "message": "send application/json"}}
    try:
        data = json.loads(body or b"")
    except ValueError:
        return 400, {"error": {"code": "bad_request", "message": "the body is not JSON"}}
    user_id = data.get("user_id") if isinstance(data, dict) else None
    role = data.get("role") if isinstance(data, dict) else None
    if not isinstance(user_id, str) or not user_id.strip() or len(user_id) > 100 or not user_id.isprintable():
        return 400, {"error": {"code": "bad_request", "message": "user_id: 1 to 100 printable characters"}}
    if role not in (None, "", *DEV_ROLES):
        return 400, {"error": {"code": "bad_request", "message": f"role: one of {', '.join(DEV_ROLES)}"}}
    email = data.get("email") if isinstance(data.get("email"), str) and len(data["email"]) <= 320 else None
    from mailroom_shared.auth import AuthConfigError, mint_token

    try:
        token = mint_token(user_id.strip(), email=email, roles=[role] if role else [], seconds=8 * 3600)
    except AuthConfigError as exc:
        return 403, {"error": {"code": "dev_auth_unavailable", "message": str(exc)}}
    return 200, {"token": token, "user_id": user_id.strip(), "roles": [role] if role else []}


def make_handler(backends: dict[str, tuple[str, int]], web_dir: Path | None = None):
    web_dir = WEB_DIR if web_dir is None else web_dir

    class ProxyHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _proxy(self):
            path = urlsplit(self.path).path
            service = service_for_path(path)
            if service is None and path == DEV_TOKEN_PATH:
                self._dev_token()
                return
            if service is None and self.command in ("GET", "HEAD"):
                self._web(path)
                return
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

        def _dev_token(self):
            length = int(self.headers.get("Content-Length") or 0)
            if self.command != "POST":
                status, answer = 405, {"error": {"code": "method_not_allowed", "message": "POST"}}
            elif length > MAX_DEV_TOKEN_BODY:
                status, answer = 413, {"error": {"code": "too_large", "message": "the body is too large"}}
            else:
                status, answer = mint_dev_token(self.rfile.read(length) if length else None,
                                                self.headers.get("Content-Type", ""))
            self._answer(status, json.dumps(answer).encode(), {"Cache-Control": "no-store"})

        def _web(self, path: str):
            file = web_file(web_dir, path)
            if file is None:
                missing = not (web_dir / "index.html").is_file()
                message = (b"the web inbox is not built: run `make install` (npm ci && npm run build in web/)"
                           if missing else b"not found")
                self._answer(404, message, {"Content-Type": "text/plain; charset=utf-8", **WEB_HEADERS})
                return
            body = file.read_bytes()
            content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            if content_type.startswith("text/") or content_type in ("application/javascript", "image/svg+xml"):
                content_type += "; charset=utf-8"
            self.send_response(200)
            for key, value in {**WEB_HEADERS, "Content-Type": content_type}.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _answer(self, status: int, body: bytes, headers: dict | None = None):
            self.send_response(status)
            headers = {"Content-Type": "application/json", **(headers or {})}
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _proxy

        def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
            log.debug("proxy: " + format, *args)

    return ProxyHandler


def serve_in_thread(host: str, port: int, backends: dict[str, tuple[str, int]],
                    web_dir: Path | None = None) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), make_handler(backends, web_dir))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="mailroom-devproxy", daemon=True).start()
    return server
