"""How the dev proxy serves the web inbox and the dev sign-in (no browser needed): the built app
with a strict CSP from the API's origin, nothing outside web/dist, and a sign-in that mints a
token only while dev auth is on and refuses malformed, oversized and cross-site input."""

import http.client
import json

import jwt
import pytest

from mailroom_shared.devproxy import WEB_CSP, serve_in_thread
from mailroom_testing.stack import free_port
from mailroom_testing.tokens import TEST_SECRET


@pytest.fixture
def proxy(tmp_path, monkeypatch):
    monkeypatch.setenv("MAILROOM_JWT_SECRET", TEST_SECRET)
    monkeypatch.setenv("MAILROOM_DEV_AUTH", "true")
    web = tmp_path / "dist"
    web.mkdir()
    (web / "index.html").write_text("<!doctype html><title>app</title>")
    (web / "app.0123456789.js").write_text("export {};")
    (tmp_path / "secret.txt").write_text("not for the web")
    server = serve_in_thread("127.0.0.1", free_port(), {}, web_dir=web)
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def call(port, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), payload


def sign_in(port, body, content_type="application/json"):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, _, payload = call(port, "POST", "/auth/dev-token", raw, {"Content-Type": content_type})
    return status, json.loads(payload)


def test_the_app_is_served_with_a_strict_csp_and_nothing_outside_its_folder(proxy):
    status, headers, body = call(proxy, "GET", "/")
    assert status == 200 and b"<title>app</title>" in body
    assert headers["Content-Security-Policy"] == WEB_CSP
    assert "script-src 'self';" in WEB_CSP and "'unsafe-inline'" not in WEB_CSP.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in WEB_CSP and "object-src 'none'" in WEB_CSP
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Content-Type"].startswith("text/html")
    status, headers, _ = call(proxy, "GET", "/app.0123456789.js")
    assert status == 200 and "javascript" in headers["Content-Type"]
    for hostile in ("/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt", "//etc/passwd", "/nope.js"):
        status, _, body = call(proxy, "GET", hostile)
        assert status == 404 and b"not for the web" not in body, hostile
    # an API path never falls back to the app
    status, _, body = call(proxy, "GET", "/api/inboxes")
    assert status == 404 and b"no service serves this path" in body


def test_dev_sign_in_mints_a_token_for_the_user_id_and_role(proxy):
    status, answer = sign_in(proxy, {"user_id": "agent-1"})
    assert status == 200 and answer["user_id"] == "agent-1"
    claims = jwt.decode(answer["token"], TEST_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "agent-1" and claims["roles"] == []
    status, answer = sign_in(proxy, {"user_id": "auditor", "role": "super_admin"})
    assert status == 200
    assert jwt.decode(answer["token"], TEST_SECRET, algorithms=["HS256"])["roles"] == ["super_admin"]
    again = sign_in(proxy, {"user_id": "agent-1"})  # a duplicate sign-in is just another token
    assert again[0] == 200


@pytest.mark.parametrize(("body", "content_type", "status"), [
    (b"user_id=agent-1", "application/x-www-form-urlencoded", 415),  # what a cross-site form can send
    (b"{\"user_id\": \"agent-1\"}", "text/plain", 415),
    (b"not json", "application/json", 400),
    (b"[]", "application/json", 400),
    ({"user_id": ""}, "application/json", 400),
    ({"user_id": "a" * 101}, "application/json", 400),
    ({"user_id": "agent\n1"}, "application/json", 400),
    ({"user_id": 7}, "application/json", 400),
    ({"user_id": "agent-1", "role": "root"}, "application/json", 400),
])
def test_dev_sign_in_refuses_malformed_and_cross_site_input(proxy, body, content_type, status):
    assert sign_in(proxy, body, content_type)[0] == status


def test_dev_sign_in_refuses_oversized_bodies_and_other_methods(proxy):
    status, _, _ = call(proxy, "POST", "/auth/dev-token", b"{" + b" " * 10_000 + b"}",
                        {"Content-Type": "application/json"})
    assert status == 413
    status, _, _ = call(proxy, "GET", "/auth/dev-token")
    assert status == 405


def test_dev_sign_in_is_refused_when_dev_auth_is_off(proxy, monkeypatch):
    monkeypatch.setenv("MAILROOM_DEV_AUTH", "false")
    status, answer = sign_in(proxy, {"user_id": "agent-1"})
    assert status == 403 and "MAILROOM_DEV_AUTH=false" in answer["error"]["message"]
    monkeypatch.setenv("MAILROOM_DEV_AUTH", "true")
    monkeypatch.delenv("MAILROOM_JWT_SECRET")
    monkeypatch.setenv("MAILROOM_JWKS_URL", "https://idp.example/jwks")  # an identity provider: no minting
    status, answer = sign_in(proxy, {"user_id": "agent-1"})
    assert status == 403 and "HS256" in answer["error"]["message"]
