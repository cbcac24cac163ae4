"""A small reverse proxy for local runs: one HTTP address in front of the per-service HTTP
servers, routed by mailroom_shared.routing. Not for production (use an ingress there).

It also serves the web inbox (web/, built into web/dist by `make install`) from the same origin
as the API, with a strict Content-Security-Policy, and, while MAILROOM_DEV_AUTH is on, the dev
sign-in (`POST /auth/dev-token`), which mints a token server-side (docs/web-inbox.md). `GET /auth/config`
tells the app how to sign in: the dev sign-in, and/or OpenID Connect (authorization code + PKCE)
against the identity provider named by MAILROOM_OIDC_ISSUER / MAILROOM_OIDC_CLIENT_ID. A deployment
serves the same JSON at that path (`python -m mailroom_shared.devproxy auth-config` prints it)."""

from __future__ import annotations

import http.client
import json
import logging
import mimetypes
import os
import sys
import threading
import time
import urllib.request
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
AUTH_CONFIG_PATH = "/auth/config"
OIDC_DEFAULT_SCOPE = "openid email profile"
OIDC_DISCOVERY_SECONDS = 300  # the discovery document is cached this long (and errors 10 s)
_discovery_cache: dict[str, tuple[float, dict | str]] = {}
_discovery_lock = threading.Lock()


def dev_auth_enabled() -> bool:
    return os.environ.get("MAILROOM_DEV_AUTH", "true").strip().lower() not in {"0", "false", "no", "off"}


def _discover(issuer: str) -> dict:
    """The issuer's OpenID Connect discovery document (cached); raises ValueError with a reason."""
    now = time.monotonic()
    with _discovery_lock:
        cached = _discovery_cache.get(issuer)
    if cached and cached[0] > now:
        if isinstance(cached[1], str):
            raise ValueError(cached[1])
        return cached[1]
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        if urlsplit(url).scheme not in ("https", "http"):
            raise ValueError("MAILROOM_OIDC_ISSUER must be an http(s) URL")
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - the configured issuer
            document = json.loads(response.read(1_000_000))
        if not isinstance(document, dict) or document.get("issuer") != issuer:
            raise ValueError(f"the discovery document at {url} names another issuer")
    except (OSError, ValueError) as exc:
        with _discovery_lock:
            _discovery_cache[issuer] = (now + 10, f"discovery failed: {exc}")
        raise ValueError(f"discovery failed: {exc}") from exc
    with _discovery_lock:
        _discovery_cache[issuer] = (now + OIDC_DISCOVERY_SECONDS, document)
    return document


def oidc_config() -> dict | None:
    """The identity provider the app signs in with (authorization code + PKCE), from
    MAILROOM_OIDC_ISSUER and MAILROOM_OIDC_CLIENT_ID (both needed), MAILROOM_OIDC_SCOPE, and the
    endpoints of the issuer's discovery document unless MAILROOM_OIDC_AUTHORIZATION_ENDPOINT and
    MAILROOM_OIDC_TOKEN_ENDPOINT are set; MAILROOM_OIDC_REDIRECT_URI (default: the app's own URL,
    chosen by the browser). None when not configured; raises ValueError when discovery fails."""
    issuer = os.environ.get("MAILROOM_OIDC_ISSUER", "").strip()
    client_id = os.environ.get("MAILROOM_OIDC_CLIENT_ID", "").strip()
    if not issuer or not client_id:
        return None
    authorization = os.environ.get("MAILROOM_OIDC_AUTHORIZATION_ENDPOINT", "").strip()
    token = os.environ.get("MAILROOM_OIDC_TOKEN_ENDPOINT", "").strip()
    if not authorization or not token:
        document = _discover(issuer)
        authorization = authorization or str(document.get("authorization_endpoint") or "")
        token = token or str(document.get("token_endpoint") or "")
    for name, url in (("authorization_endpoint", authorization), ("token_endpoint", token)):
        if urlsplit(url).scheme not in ("https", "http") or not urlsplit(url).netloc:
            raise ValueError(f"{name}: not an http(s) URL")
    return {"issuer": issuer, "authorization_endpoint": authorization, "token_endpoint": token,
            "client_id": client_id, "scope": os.environ.get("MAILROOM_OIDC_SCOPE", "").strip() or OIDC_DEFAULT_SCOPE,
            "redirect_uri": os.environ.get("MAILROOM_OIDC_REDIRECT_URI", "").strip() or None}


def auth_config() -> dict:
    """`GET /auth/config`: how the app signs in. The dev sign-in is offered only while it can work
    (MAILROOM_DEV_AUTH on and no identity provider's JWKS)."""
    dev = dev_auth_enabled() and not os.environ.get("MAILROOM_JWKS_URL")
    try:
        return {"dev_auth": dev, "oidc": oidc_config()}
    except ValueError as exc:
        log.warning("OpenID Connect sign-in unavailable: %s", exc)
        return {"dev_auth": dev, "oidc": None, "oidc_error": f"organisation sign-in is unavailable ({exc})"}


def web_headers() -> dict[str, str]:
    """The app's headers; with OpenID Connect, the token endpoint's origin is added to connect-src
    (the app exchanges the code there with fetch) and nothing else."""
    try:
        oidc = oidc_config()
    except ValueError:
        oidc = None
    if not oidc:
        return WEB_HEADERS
    parts = urlsplit(oidc["token_endpoint"])
    origin = f"{parts.scheme}://{parts.netloc}"
    if not all(c.isalnum() or c in ":/.-[]" for c in origin):
        return WEB_HEADERS
    csp = WEB_CSP.replace("connect-src 'self'", f"connect-src 'self' {origin}")
    return {**WEB_HEADERS, "Content-Security-Policy": csp}


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
            if service is None and path == AUTH_CONFIG_PATH:
                if self.command in ("GET", "HEAD"):
                    self._answer(200, json.dumps(auth_config()).encode(), {"Cache-Control": "no-store"})
                else:
                    length = int(self.headers.get("Content-Length") or 0)
                    if 0 < length <= MAX_DEV_TOKEN_BODY:
                        self.rfile.read(length)
                    self._answer(405, b'{"error": {"code": "method_not_allowed", "message": "GET"}}',
                                 {"Allow": "GET, HEAD"})
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
                self._answer(404, message, {"Content-Type": "text/plain; charset=utf-8", **web_headers()})
                return
            body = file.read_bytes()
            content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            if content_type.startswith("text/") or content_type in ("application/javascript", "image/svg+xml"):
                content_type += "; charset=utf-8"
            self.send_response(200)
            headers = web_headers() if file.name == "index.html" else WEB_HEADERS
            for key, value in {**headers, "Content-Type": content_type}.items():
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


if __name__ == "__main__":  # `python -m mailroom_shared.devproxy auth-config`: the JSON a deployment serves
    if sys.argv[1:] == ["auth-config"]:
        print(json.dumps(auth_config()))
    else:
        print("usage: python -m mailroom_shared.devproxy auth-config", file=sys.stderr)
        sys.exit(2)
