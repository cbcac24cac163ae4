"""XOAUTH2 against a real Dovecot whose oauth2 passdb checks every bearer token at a local OAuth
endpoint (conftest's `dovecot_oauth2` and `oauth_endpoint`), and the refresh grant against it:
the access token obtained from the refresh token logs in, a rotated refresh token is kept, a
revoked or forged token is refused with Dovecot's own words."""

from __future__ import annotations

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from ingest import imap_oauth
from ingest.imap_poller import MailboxConfig, poll_mailbox
from ingest.mailbox_api import probe

pytestmark = pytest.mark.integration


def _refresh(endpoint, **overrides):
    options = {"token_url": endpoint.url("/token"), "client_id": endpoint.client_id,
               "client_secret": endpoint.client_secret, "refresh_token": endpoint.refresh_token,
               "scope": "https://mail.example/imap", "allow_insecure": True, **overrides}
    return imap_oauth.refresh(**options)


def test_dovecot_checks_the_refreshed_access_token_at_the_token_endpoint(dovecot_oauth2, oauth_endpoint):
    answer = _refresh(oauth_endpoint)
    assert answer.refresh_token == "refresh-token-1" == oauth_endpoint.refresh_token  # rotated
    [grant] = oauth_endpoint.token_requests
    assert grant["grant_type"] == "refresh_token" and grant["refresh_token"] == "refresh-token-0"
    assert grant["scope"] == "https://mail.example/imap"
    with IMAPClient(dovecot_oauth2.host, port=dovecot_oauth2.port, ssl=False, timeout=10) as client:
        client.oauth2_login(dovecot_oauth2.user, answer.access_token)
        assert client.select_folder("INBOX", readonly=True)[b"EXISTS"] == 0
    assert answer.access_token in oauth_endpoint.introspections  # Dovecot asked the endpoint

    with IMAPClient(dovecot_oauth2.host, port=dovecot_oauth2.port, ssl=False, timeout=10) as client, \
            pytest.raises(LoginError):
        client.oauth2_login(dovecot_oauth2.user, "forged-token")
    assert "forged-token" in oauth_endpoint.introspections


def test_the_poller_fetches_over_xoauth2_and_the_probe_reports_dovecots_refusal(dovecot_oauth2, oauth_endpoint):
    dovecot_oauth2.deliver(b"From: a@example.org\r\nTo: team@example.test\r\nSubject: over oauth\r\n"
                           b"Message-ID: <oauth-1@example.org>\r\n\r\nhello\r\n")
    token = _refresh(oauth_endpoint).access_token
    config = MailboxConfig(id="oauth", host=dovecot_oauth2.host, port=dovecot_oauth2.port,
                           username=dovecot_oauth2.user, password="", oauth2_token=token, ssl=False, timeout=10)
    fetched = []

    class Cursors:
        def load(self, mailbox_id):
            from ingest.imap_poller import MailboxCursor
            return MailboxCursor(None)

        def save(self, mailbox_id, cursor):
            pass

    result = poll_mailbox(config, Cursors(), fetched.append)
    assert result.ok and len(fetched) == 1 and b"over oauth" in fetched[0]
    assert probe(config)["stage"] == "ok"

    oauth_endpoint.active.discard(token)  # revoked at the provider
    refused = probe(config)
    assert refused["ok"] is False and refused["stage"] == "login"
    assert "AUTHENTICATIONFAILED" in refused["server_answer"] or "failed" in refused["server_answer"].lower()
    assert token not in refused["server_answer"]
    failed = poll_mailbox(config, Cursors(), fetched.append)
    assert failed.error_kind == "auth_failed" and token not in failed.error


def test_a_refused_refresh_says_why_without_the_secrets(oauth_endpoint):
    with pytest.raises(imap_oauth.TokenRefreshFailed) as refused:
        _refresh(oauth_endpoint, refresh_token="stale-refresh-token")
    assert "invalid_grant" in str(refused.value) and "stale-refresh-token" not in str(refused.value)
    with pytest.raises(imap_oauth.TokenRefreshFailed) as bad_client:
        _refresh(oauth_endpoint, client_secret="wrong-client-secret")
    assert "invalid_client" in str(bad_client.value) and "wrong-client-secret" not in str(bad_client.value)
    # plain http and loopback token URLs are refused unless INGEST_IMAP_ALLOW_PLAINTEXT
    with pytest.raises(imap_oauth.TokenRefreshFailed, match="refused"):
        _refresh(oauth_endpoint, allow_insecure=False)
    assert len(oauth_endpoint.token_requests) == 2  # the refused URL was never asked
