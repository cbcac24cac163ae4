"""Bearer tokens: HS256 secret or JWKS, required claims, issuer/audience, roles, download tokens."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from mailroom_shared import auth
from mailroom_shared.http import Unauthorized

SECRET = "s" * 48


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("MAILROOM_JWT_SECRET", "MAILROOM_JWKS_URL", "MAILROOM_JWT_ISSUER", "MAILROOM_JWT_AUDIENCE",
                 "MAILROOM_JWT_ALGORITHMS", "MAILROOM_URL_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MAILROOM_VAR_DIR", str(tmp_path))


def request(headers=None):
    return Request(EnvironBuilder(path="/api/x", headers=headers or {}).get_environ())


def test_hs256_token_gives_the_principal(monkeypatch):
    monkeypatch.setenv("MAILROOM_JWT_SECRET", SECRET)
    token = auth.mint_token("u1", email="U1@Example.com", teams=["t1", "t2"], roles=["account_access"])
    principal = auth.authenticate(request({"Authorization": f"Bearer {token}"}))
    assert principal == auth.Principal("u1", "u1@example.com", frozenset({"t1", "t2"}), frozenset({"account_access"}))
    assert principal.sees_every_inbox and not principal.super_admin
    # boolean role claims are accepted too
    token = jwt.encode({"sub": "u2", "exp": time.time() + 60, "super_admin": True}, SECRET, algorithm="HS256")
    assert auth.verify_token(token).super_admin


@pytest.mark.parametrize("claims, message", [
    ({"sub": "u1", "exp": time.time() - 3600}, "expired"),
    ({"sub": "u1"}, "exp"),
    ({"exp": time.time() + 86400}, "sub"),
    ({"sub": "", "exp": time.time() + 86400}, "user id"),
])
def test_bad_tokens_are_refused_clearly(monkeypatch, claims, message):
    monkeypatch.setenv("MAILROOM_JWT_SECRET", SECRET)
    with pytest.raises(Unauthorized, match=message):
        auth.verify_token(jwt.encode(claims, SECRET, algorithm="HS256"))


def test_wrong_key_algorithm_none_and_missing_header_are_refused(monkeypatch):
    monkeypatch.setenv("MAILROOM_JWT_SECRET", SECRET)
    with pytest.raises(Unauthorized):
        auth.verify_token(jwt.encode({"sub": "u", "exp": time.time() + 60}, "x" * 48, algorithm="HS256"))
    with pytest.raises(Unauthorized):
        auth.verify_token(jwt.encode({"sub": "u", "exp": time.time() + 60}, None, algorithm="none"))
    with pytest.raises(Unauthorized, match="sign in"):
        auth.authenticate(request())
    with pytest.raises(Unauthorized, match="sign in"):
        auth.authenticate(request({"Authorization": "Basic abc"}))


def test_issuer_and_audience_are_checked_when_configured(monkeypatch):
    monkeypatch.setenv("MAILROOM_JWT_SECRET", SECRET)
    monkeypatch.setenv("MAILROOM_JWT_ISSUER", "https://idp.example")
    monkeypatch.setenv("MAILROOM_JWT_AUDIENCE", "mailroom")
    assert auth.verify_token(auth.mint_token("u")).user_id == "u"  # minted with both
    other = auth.mint_token("u", secret=SECRET, issuer="https://evil.example", audience="mailroom")
    with pytest.raises(Unauthorized, match="issuer"):
        auth.verify_token(other)
    with pytest.raises(Unauthorized, match="(?i)audience"):
        auth.verify_token(auth.mint_token("u", secret=SECRET, issuer="https://idp.example", audience="else"))


def test_jwks_url_verifies_asymmetric_tokens_and_refuses_hs256(monkeypatch):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("MAILROOM_JWKS_URL", f"http://127.0.0.1:{server.server_port}/jwks.json")
        good = jwt.encode({"sub": "u9", "exp": time.time() + 60, "teams": ["t"]}, key, algorithm="RS256",
                          headers={"kid": "k1"})
        assert auth.verify_token(good) == auth.Principal("u9", None, frozenset({"t"}), frozenset())
        unknown = jwt.encode({"sub": "u9", "exp": time.time() + 60}, key, algorithm="RS256", headers={"kid": "k2"})
        with pytest.raises(Unauthorized, match="signing key"):
            auth.verify_token(unknown)
        # key confusion: an HS256 token signed with the public key as a secret is refused
        with pytest.raises(Unauthorized):
            auth.verify_token(jwt.encode({"sub": "u", "exp": time.time() + 60}, "public-key-as-secret" * 3,
                                         algorithm="HS256", headers={"kid": "k1"}))
        with pytest.raises(auth.AuthConfigError):
            auth.mint_token("u")
    finally:
        server.shutdown()


def test_secret_and_jwks_together_is_a_configuration_error(monkeypatch):
    monkeypatch.setenv("MAILROOM_JWT_SECRET", SECRET)
    monkeypatch.setenv("MAILROOM_JWKS_URL", "http://127.0.0.1:1/jwks")
    with pytest.raises(auth.AuthConfigError):
        auth.settings()


def test_without_configuration_a_dev_secret_is_shared_through_the_var_dir(tmp_path):
    token = auth.mint_token("agent-1")
    assert (tmp_path / auth.DEV_SECRET_FILE).stat().st_mode & 0o777 == 0o600
    assert auth.verify_token(token).user_id == "agent-1"


def test_download_tokens_grant_one_message_and_are_no_bearer_tokens(monkeypatch):
    monkeypatch.setenv("MAILROOM_JWT_SECRET", SECRET)
    token = auth.sign_blob_access("intake-1", "u1")
    assert auth.verify_blob_access(token, "intake-1") == "u1"
    with pytest.raises(Unauthorized, match="another message"):
        auth.verify_blob_access(token, "intake-2")
    with pytest.raises(Unauthorized, match="not a bearer token"):
        auth.verify_token(token)
    with pytest.raises(Unauthorized, match="expired"):
        auth.verify_blob_access(auth.sign_blob_access("intake-1", "u1", seconds=-120), "intake-1")
    with pytest.raises(Unauthorized):  # a bearer token is no download token
        auth.verify_blob_access(auth.mint_token("u1"), "intake-1")
    assert auth.with_access("/a/b", token) == f"/a/b?access={token}"
