"""A small local OpenID Connect provider for tests (the web inbox's "Sign in with your
organisation"): discovery, an authorization endpoint that auto-approves one configured user and
redirects back with a code, a token endpoint that checks the client id, the redirect URI and the
PKCE verifier (S256) and answers RS256 ID and access tokens, and the JWKS the services verify them
with (MAILROOM_JWKS_URL).

    provider = FakeOIDC(client_id="mailroom-web", user={"sub": "agent-1", "email": "agent@mailroom.test"})
    provider.redirect_uris.append("http://127.0.0.1:8000/")
    ... provider.issuer, provider.jwks_url ...
    provider.close()

What it saw is recorded (`authorize_requests`, `token_requests`, `token_refusals`) so a test can
say that a code was (or was not) exchanged. `tamper_state` makes the redirect carry another state
(an answer that is not the browser's own)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

MAX_BODY = 16 * 1024
CODE_SECONDS = 60


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class FakeOIDC:
    def __init__(self, *, client_id: str = "mailroom-web", user: dict | None = None, audience: str | None = None,
                 host: str = "127.0.0.1"):
        self.client_id = client_id
        self.audience = audience or client_id
        self.user = dict(user or {"sub": "agent-1", "email": "agent@mailroom.test"})
        self.redirect_uris: list[str] = []
        self.tamper_state = False
        self.authorize_requests: list[dict] = []
        self.token_requests: list[dict] = []
        self.token_refusals: list[str] = []
        self._codes: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(8)
        jwk = json.loads(RSAAlgorithm.to_jwk(self._key.public_key()))
        self.jwks = {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}
        self.server = ThreadingHTTPServer((host, 0), self._handler())
        self.server.daemon_threads = True
        self.issuer = f"http://{host}:{self.server.server_address[1]}"
        self.jwks_url = f"{self.issuer}/jwks"
        threading.Thread(target=self.server.serve_forever, name="fake-oidc", daemon=True).start()

    # --- what the provider answers ------------------------------------------------------------------

    def discovery(self) -> dict:
        return {"issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token", "jwks_uri": self.jwks_url,
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"], "code_challenge_methods_supported": ["S256"],
                "grant_types_supported": ["authorization_code"], "token_endpoint_auth_methods_supported": ["none"],
                "scopes_supported": ["openid", "email", "profile"]}

    def sign(self, claims: dict, seconds: int = 3600) -> str:
        now = int(time.time())
        return jwt.encode({"iss": self.issuer, "iat": now, "exp": now + seconds, **claims}, self._key,
                          algorithm="RS256", headers={"kid": self.kid})

    def access_token(self, **extra) -> str:
        """A token the services accept (as the configured user unless `sub=` says otherwise)."""
        return self.sign({"aud": self.audience, **self.user, **extra})

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], str]:
        """(status, headers, body) for GET /authorize: the configured user approves at once."""
        self.authorize_requests.append(dict(query))
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != self.client_id or redirect_uri not in self.redirect_uris:
            return 400, {}, "unknown client_id or redirect_uri"  # never redirect to an unknown place
        problem = None
        if query.get("response_type") != "code":
            problem = "unsupported_response_type"
        elif query.get("code_challenge_method") != "S256" or not 43 <= len(query.get("code_challenge", "")) <= 128:
            problem = "invalid_request"
        elif "openid" not in query.get("scope", "").split():
            problem = "invalid_scope"
        state = query.get("state", "")
        if self.tamper_state:
            state = state[::-1] + "x"
        if problem:
            return 302, {"Location": f"{redirect_uri}?{urlencode({'error': problem, 'state': state})}"}, ""
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = {"challenge": query["code_challenge"], "client_id": query["client_id"],
                                 "redirect_uri": redirect_uri, "nonce": query.get("nonce"),
                                 "expires": time.monotonic() + CODE_SECONDS}
        return 302, {"Location": f"{redirect_uri}?{urlencode({'code': code, 'state': state})}"}, ""

    def token(self, form: dict[str, str]) -> tuple[int, dict]:
        self.token_requests.append(dict(form))

        def refuse(error: str, description: str) -> tuple[int, dict]:
            self.token_refusals.append(description)
            return 400, {"error": error, "error_description": description}

        if form.get("grant_type") != "authorization_code":
            return refuse("unsupported_grant_type", "grant_type must be authorization_code")
        with self._lock:
            grant = self._codes.pop(form.get("code", ""), None)  # a code is used once
        if grant is None or grant["expires"] < time.monotonic():
            return refuse("invalid_grant", "unknown, used or expired code")
        if form.get("client_id") != grant["client_id"]:
            return refuse("invalid_client", "client_id does not match the code's")
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return refuse("invalid_grant", "redirect_uri does not match the code's")
        verifier = form.get("code_verifier", "")
        if not 43 <= len(verifier) <= 128 or _b64url(hashlib.sha256(verifier.encode()).digest()) != grant["challenge"]:
            return refuse("invalid_grant", "the PKCE code_verifier does not match the code_challenge")
        id_claims = {"aud": self.client_id, **self.user}
        if grant["nonce"]:
            id_claims["nonce"] = grant["nonce"]
        return 200, {"access_token": self.access_token(), "id_token": self.sign(id_claims), "token_type": "Bearer",
                     "expires_in": 3600, "scope": "openid email profile"}

    # --- HTTP ------------------------------------------------------------------------------------------

    def _handler(self):
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: bytes = b"", headers: dict | None = None,
                      content_type: str = "application/json"):
                self.send_response(status)
                # the browser app calls the token endpoint cross-origin (a form POST: no preflight)
                for key, value in {"Content-Type": content_type, "Cache-Control": "no-store",
                                   "Access-Control-Allow-Origin": "*", **(headers or {})}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802 - the stdlib's name
                parts = urlsplit(self.path)
                if parts.path == "/.well-known/openid-configuration":
                    self._send(200, json.dumps(provider.discovery()).encode())
                elif parts.path == "/jwks":
                    self._send(200, json.dumps(provider.jwks).encode())
                elif parts.path == "/authorize":
                    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                    status, headers, text = provider.authorize(query)
                    self._send(status, text.encode(), headers, "text/plain; charset=utf-8")
                else:
                    self._send(404, b'{"error": "not_found"}')

            def do_POST(self):  # noqa: N802
                if urlsplit(self.path).path != "/token":
                    self._send(404, b'{"error": "not_found"}')
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self._send(413, b'{"error": "invalid_request"}')
                    return
                if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
                    self._send(400, b'{"error": "invalid_request", "error_description": "form-encoded body"}')
                    return
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode("utf-8", "replace")).items()}
                status, answer = provider.token(form)
                self._send(status, json.dumps(answer).encode())

            def log_message(self, *args):
                pass

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
