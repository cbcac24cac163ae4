"""Sign-in with the organisation's identity provider: OpenID Connect authorization code + PKCE
(S256) against a local provider (mailroom_testing.fake_oidc), the services verifying its RS256
tokens by JWKS (MAILROOM_JWKS_URL + issuer + audience), and the dev sign-in off. In Chromium: the
sign-in reaches the inbox; an answer whose state is not the browser's own is refused and its code
never exchanged; the token is in no storage and the code is gone from the URL. Without a browser:
`GET /auth/config` and the provider's own checks (a wrong verifier, client or reused code)."""

import base64
import hashlib
import http.client
import json
import re
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
from playwright.sync_api import expect

from mailroom_shared.devproxy import serve_in_thread
from mailroom_testing.fake_oidc import FakeOIDC
from mailroom_testing.specs import CONVERSATIONS
from mailroom_testing.stack import free_port

MEMBER = "agent-1"
CLIENT_ID = "mailroom-web"
INBOXES = f"""
inboxes:
  - key: support
    name: Support
    channels:
      - {{address: support@mailroom.test, name: Support Team, primary: true}}
    members:
      - {{user_id: {MEMBER}, email: agent@mailroom.test}}
    access: {{visibility: specific}}
"""
browser_test = pytest.mark.skipif(not __import__("pathlib").Path("/usr/bin/chromium").exists(),
                                  reason="Debian's chromium is not installed (apt-get install chromium; "
                                         ".ci/run installs it)")


@pytest.fixture
def provider():
    fake = FakeOIDC(client_id=CLIENT_ID, user={"sub": MEMBER, "email": "agent@mailroom.test", "name": "Agent One"})
    yield fake
    fake.close()


def idp_env(monkeypatch, provider):
    """This process (the proxy) and the services: tokens from the provider only, no dev sign-in."""
    env = {"MAILROOM_JWKS_URL": provider.jwks_url, "MAILROOM_JWT_ISSUER": provider.issuer,
           "MAILROOM_JWT_AUDIENCE": CLIENT_ID, "MAILROOM_DEV_AUTH": "false",
           "MAILROOM_OIDC_ISSUER": provider.issuer, "MAILROOM_OIDC_CLIENT_ID": CLIENT_ID}
    monkeypatch.delenv("MAILROOM_JWT_SECRET", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return {**env, "MAILROOM_JWT_SECRET": ""}  # the stack's default secret is dropped (empty = unset)


@pytest.fixture
def oidc_inbox(stack_factory, provider, tmp_path, monkeypatch, web_dist):
    inboxes = tmp_path / "inboxes.yaml"
    inboxes.write_text(INBOXES)
    env = idp_env(monkeypatch, provider)
    stack = stack_factory([CONVERSATIONS], extra_env={**env, "CONVERSATIONS_INBOXES_FILE": str(inboxes)})
    admin = provider.access_token(sub="test-admin", roles=["super_admin"])
    stack.default_headers = {"Authorization": f"Bearer {admin}"}
    proxy = serve_in_thread("127.0.0.1", free_port(), {s: ("127.0.0.1", p) for s, p in stack.ports.items()},
                            web_dir=web_dist)
    stack.web_url = f"http://127.0.0.1:{proxy.server_address[1]}/"
    provider.redirect_uris.append(stack.web_url)
    yield stack
    proxy.shutdown()
    proxy.server_close()


@pytest.fixture
def page(browser, oidc_inbox):
    """A fresh tab (conftest's `page` would start the dev-auth stack as well)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    tab.errors = []
    tab.on("pageerror", lambda error: tab.errors.append(str(error)))
    yield tab
    context.close()


def stored(page) -> dict:
    return page.evaluate("""() => ({local: Object.fromEntries(Object.entries(localStorage)),
                                    session: Object.fromEntries(Object.entries(sessionStorage))})""")


@browser_test
@pytest.mark.integration
def test_sign_in_with_the_organisation_reaches_the_inbox_and_keeps_the_token_in_memory_only(page, oidc_inbox,
                                                                                            provider, web):
    page.goto(oidc_inbox.web_url)
    expect(page.get_by_role("button", name="Sign in with your organisation")).to_be_visible()
    expect(page.get_by_label("User id")).to_be_hidden()  # the dev sign-in is off here
    violations = web.axe_violations(page)
    assert not violations, violations
    web.screenshot(page, "sign-in-oidc")
    page.get_by_role("button", name="Sign in with your organisation").click()
    expect(page.get_by_role("navigation", name="Inboxes").get_by_role("heading", name="Support")).to_be_visible()
    expect(page.get_by_text(f"Signed in as {MEMBER}")).to_be_visible()
    expect(page.get_by_text("No conversations here.")).to_be_visible()  # the API accepted the IdP's token

    # what the browser sent: S256 PKCE, a state and a nonce; the code exchanged once, with the verifier
    [asked] = provider.authorize_requests
    assert asked["code_challenge_method"] == "S256" and asked["client_id"] == CLIENT_ID
    assert len(asked["state"]) >= 16 and len(asked["nonce"]) >= 16 and asked["redirect_uri"] == oidc_inbox.web_url
    assert "openid" in asked["scope"].split()
    [exchange] = provider.token_requests
    assert not provider.token_refusals
    digest = base64.urlsafe_b64encode(hashlib.sha256(exchange["code_verifier"].encode()).digest()).rstrip(b"=")
    assert digest.decode() == asked["code_challenge"] and exchange["client_id"] == CLIENT_ID

    # the code and state are gone from the address; nothing is left in storage
    assert not parse_qs(urlsplit(page.url).query), page.url
    kept = stored(page)
    assert kept == {"local": {}, "session": {}}, kept
    assert "eyJ" not in page.evaluate("document.cookie + JSON.stringify(history.state)")
    # the page's policy lets it reach the token endpoint's origin and nothing else
    csp = page.request.get(oidc_inbox.web_url).headers["content-security-policy"]
    assert f"connect-src 'self' {provider.issuer};" in csp
    # the dev sign-in is refused here
    assert page.request.post(oidc_inbox.web_url + "auth/dev-token", data={"user_id": "x"}).status == 403
    # reloading signs out (the token was in memory only)
    page.reload()
    expect(page.get_by_role("button", name="Sign in with your organisation")).to_be_visible()
    assert not page.errors, page.errors


@browser_test
@pytest.mark.integration
def test_an_answer_with_another_state_is_refused_and_its_code_never_exchanged(page, oidc_inbox, provider):
    provider.tamper_state = True  # the answer that comes back is not for this browser's sign-in
    page.goto(oidc_inbox.web_url)
    page.get_by_role("button", name="Sign in with your organisation").click()
    expect(page.get_by_role("alert").filter(has_text="state")).to_contain_text("Sign-in refused")
    assert provider.authorize_requests and not provider.token_requests
    expect(page.get_by_role("navigation", name="Inboxes")).to_be_hidden()
    assert stored(page) == {"local": {}, "session": {}}  # the verifier was dropped too
    assert "code=" not in page.url and "state=" not in page.url

    # a code planted in a link (no sign-in started in this tab): refused, not exchanged
    provider.tamper_state = False
    page.goto(oidc_inbox.web_url + "?" + urlencode({"code": "planted", "state": "whatever"}))
    expect(page.get_by_role("alert").filter(has_text="state")).to_contain_text("Sign-in refused")
    assert not provider.token_requests
    # an error answer without the right state is refused the same way; then a real sign-in works
    page.goto(oidc_inbox.web_url + "?error=access_denied&state=x")
    expect(page.get_by_role("alert").filter(has_text="state")).to_be_visible()
    page.get_by_role("button", name="Sign in with your organisation").click()
    expect(page.get_by_role("navigation", name="Inboxes").get_by_role("heading", name="Support")).to_be_visible()
    assert len(provider.token_requests) == 1


# --- without a browser -------------------------------------------------------------------------------

def get(port, path):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), body


@pytest.fixture
def bare_proxy(tmp_path):
    web = tmp_path / "dist"
    web.mkdir()
    (web / "index.html").write_text("<!doctype html><title>app</title>")
    server = serve_in_thread("127.0.0.1", free_port(), {}, web_dir=web)
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_auth_config_says_how_to_sign_in(bare_proxy, provider, monkeypatch):
    for key in ("MAILROOM_OIDC_ISSUER", "MAILROOM_OIDC_CLIENT_ID", "MAILROOM_JWKS_URL", "MAILROOM_OIDC_SCOPE",
                "MAILROOM_OIDC_AUTHORIZATION_ENDPOINT", "MAILROOM_OIDC_TOKEN_ENDPOINT", "MAILROOM_OIDC_REDIRECT_URI"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MAILROOM_DEV_AUTH", "true")
    status, headers, body = get(bare_proxy, "/auth/config")
    assert status == 200 and json.loads(body) == {"dev_auth": True, "oidc": None}
    assert headers["Cache-Control"] == "no-store"
    assert "connect-src 'self';" in get(bare_proxy, "/")[1]["Content-Security-Policy"]

    idp_env(monkeypatch, provider)
    status, headers, body = get(bare_proxy, "/auth/config")
    assert status == 200
    assert json.loads(body) == {"dev_auth": False, "oidc": {
        "issuer": provider.issuer, "authorization_endpoint": f"{provider.issuer}/authorize",
        "token_endpoint": f"{provider.issuer}/token", "client_id": CLIENT_ID, "scope": "openid email profile",
        "redirect_uri": None}}
    csp = get(bare_proxy, "/")[1]["Content-Security-Policy"]
    assert f"connect-src 'self' {provider.issuer};" in csp and "script-src 'self';" in csp

    # explicit endpoints win over discovery; a hostile endpoint is refused, not served
    monkeypatch.setenv("MAILROOM_OIDC_AUTHORIZATION_ENDPOINT", "https://idp.example/authorize")
    monkeypatch.setenv("MAILROOM_OIDC_TOKEN_ENDPOINT", "https://idp.example/token")
    monkeypatch.setenv("MAILROOM_OIDC_SCOPE", "openid email")
    config = json.loads(get(bare_proxy, "/auth/config")[2])["oidc"]
    assert config["token_endpoint"] == "https://idp.example/token" and config["scope"] == "openid email"
    monkeypatch.setenv("MAILROOM_OIDC_TOKEN_ENDPOINT", "javascript:alert(1)")
    answer = json.loads(get(bare_proxy, "/auth/config")[2])
    assert answer["oidc"] is None and "token_endpoint" in answer["oidc_error"]
    assert "javascript" not in get(bare_proxy, "/")[1]["Content-Security-Policy"]

    # an issuer whose discovery fails: no OIDC offered, and why
    monkeypatch.delenv("MAILROOM_OIDC_AUTHORIZATION_ENDPOINT")
    monkeypatch.delenv("MAILROOM_OIDC_TOKEN_ENDPOINT")
    monkeypatch.setenv("MAILROOM_OIDC_ISSUER", f"http://127.0.0.1:{free_port()}")
    answer = json.loads(get(bare_proxy, "/auth/config")[2])
    assert answer["oidc"] is None and "discovery failed" in answer["oidc_error"]
    connection = http.client.HTTPConnection("127.0.0.1", bare_proxy, timeout=10)
    connection.request("POST", "/auth/config", body=b"{}")
    assert connection.getresponse().status == 405
    connection.close()


def test_the_fake_provider_checks_pkce_client_and_code_reuse(provider):
    """The provider the browser tests rely on refuses what a real one refuses (else they prove nothing)."""
    provider.redirect_uris.append("http://app.test/")
    verifier = "v" * 43 + "Abc-._~"
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    base = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": "http://app.test/", "scope": "openid",
            "state": "s1", "nonce": "n1", "code_challenge": challenge, "code_challenge_method": "S256"}
    assert provider.authorize({**base, "redirect_uri": "http://evil.test/"})[0] == 400
    assert provider.authorize({**base, "client_id": "other"})[0] == 400
    status, headers, _ = provider.authorize({**base, "code_challenge_method": "plain"})
    assert status == 302 and "error=invalid_request" in headers["Location"]

    def code():
        status, headers, _ = provider.authorize(base)
        query = parse_qs(urlsplit(headers["Location"]).query)
        assert status == 302 and query["state"] == ["s1"]
        return query["code"][0]

    form = {"grant_type": "authorization_code", "client_id": CLIENT_ID, "redirect_uri": "http://app.test/"}
    assert provider.token({**form, "code": code(), "code_verifier": "w" * 43})[0] == 400
    assert provider.token({**form, "code": code(), "code_verifier": verifier, "client_id": "other"})[0] == 400
    assert provider.token({**form, "code": "unknown", "code_verifier": verifier})[0] == 400
    good = code()
    status, answer = provider.token({**form, "code": good, "code_verifier": verifier})
    assert status == 200
    assert provider.token({**form, "code": good, "code_verifier": verifier})[0] == 400  # used once
    key = jwt.PyJWKClient(provider.jwks_url).get_signing_key_from_jwt(answer["access_token"]).key
    claims = jwt.decode(answer["access_token"], key, algorithms=["RS256"], audience=CLIENT_ID, issuer=provider.issuer)
    identity = jwt.decode(answer["id_token"], key, algorithms=["RS256"], audience=CLIENT_ID, issuer=provider.issuer)
    assert claims["sub"] == MEMBER and identity["nonce"] == "n1"
    assert re.search("PKCE", " ".join(provider.token_refusals))
