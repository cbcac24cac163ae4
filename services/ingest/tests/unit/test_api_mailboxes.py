"""Mailboxes added through the API, the plain parts: what a complete mailbox must hold, the CA
bundle check, the reply token of fetched mail, the token endpoint's answers, the request bodies."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from marshmallow import ValidationError

from ingest import imap_oauth
from ingest.domain.mailboxes import MailboxInvalid, check_ca_bundle, check_complete, delivery_recipient
from ingest.imap_poller import MailboxConfig
from ingest.mailbox_api import MailboxCreateSchema, MailboxPatchSchema, probe

CHANNEL = "support@mailroom.test"


def complete(**overrides) -> dict:
    return {"address": CHANNEL, "host": "imap.example.com", "port": 993, "tls": "implicit", "ca_bundle": None,
            "folder": "INBOX", "username": "team@example.com", "auth": "password", "password": "pw",
            "oauth": None, **overrides}


OAUTH = {"token_url": "https://login.example/token", "client_id": "c", "client_secret": "s", "refresh_token": "r"}


@pytest.mark.parametrize(("overrides", "field"), [
    ({"tls": "none"}, "tls"),
    ({"tls": "ssl"}, "tls"),
    ({"host": "imap example.com"}, "host"),
    ({"host": "imap.example.com\r\nA1 LOGOUT"}, "host"),
    ({"username": "a\nb"}, "username"),
    ({"folder": "Junk"}, "folder"),
    ({"folder": "INBOX/Spam"}, "folder"),
    ({"folder": "IN\x00BOX"}, "folder"),
    ({"password": None}, "password"),
    ({"password": "pw\r\nA2 LOGOUT"}, "password"),
    ({"auth": "xoauth2", "password": None}, "oauth.token_url"),
    ({"auth": "xoauth2", "oauth": {**OAUTH, "refresh_token": ""}}, "oauth.refresh_token"),
    ({"auth": "cram-md5"}, "auth"),
    ({"ca_bundle": "not a certificate"}, "ca_bundle"),
    ({"ca_bundle": "-----BEGIN CERTIFICATE-----é"}, "ca_bundle"),
    ({"host": "[::1"}, "host"),
    ({"host": "1.2.3.4.5"}, "host"),
    ({"username": "\ud800"}, "username"),
    ({"folder": "\udfff"}, "folder"),
    ({"auth": "xoauth2", "password": None, "oauth": {**OAUTH, "client_id": "c\x00"}}, "oauth.client_id"),
    ({"auth": "xoauth2", "password": None, "oauth": {**OAUTH, "scope": "\ud800"}}, "oauth.scope"),
])
def test_incomplete_or_hostile_mailboxes_are_refused_naming_the_field(overrides, field):
    with pytest.raises(MailboxInvalid) as refused:
        check_complete(complete(**overrides), allow_plaintext=False)
    assert refused.value.field == field


def test_plaintext_only_when_allowed_and_then_without_a_ca_bundle():
    check_complete(complete(tls="none", port=143), allow_plaintext=True)
    with pytest.raises(MailboxInvalid, match="ca_bundle"):
        check_complete(complete(tls="none", ca_bundle="x"), allow_plaintext=True)
    check_complete(complete(auth="xoauth2", password=None, oauth=OAUTH), allow_plaintext=False)
    check_complete(complete(host="[::1]"), allow_plaintext=False)
    check_complete(complete(host="10.0.0.7", folder="Team/Support"), allow_plaintext=False)


def test_a_ca_bundle_must_be_real_pem_certificates_within_the_bound(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "1", "-subj", "/CN=imap.test", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    pem = cert.read_text()
    check_ca_bundle(pem)
    check_ca_bundle(pem + pem)
    for bad in ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", key.read_text(), "",
                pem * 2000):
        with pytest.raises(MailboxInvalid):
            check_ca_bundle(bad)


@pytest.mark.parametrize(("headers", "expected"), [
    ("Delivered-To: support+Tok3nAbc@mailroom.test\r\nTo: support@mailroom.test\r\n", "support+Tok3nAbc@mailroom.test"),
    ("X-Original-To: Support+Tok3nAbc@Mailroom.TEST\r\n", "Support+Tok3nAbc@Mailroom.TEST"),
    ("To: Team <support+Tok3nAbc@mailroom.test>, other@example.org\r\n", "support+Tok3nAbc@mailroom.test"),
    ("To: someone@example.org\r\nCc: support+Tok3nAbc@mailroom.test\r\n", "support+Tok3nAbc@mailroom.test"),
    # another of our addresses, or a token too short to be one: filed under the mailbox's channel
    ("To: sales+Tok3nAbc@mailroom.test\r\n", CHANNEL),
    ("To: support+ab@mailroom.test\r\n", CHANNEL),
    ("To: support@mailroom.test\r\n", CHANNEL),
    ("", CHANNEL),
    ("To: =?utf-8?q?broken\r\nDelivered-To: <<<>>>\r\n", CHANNEL),
    ("Delivered-To: " + "support+x" * 5000 + "@mailroom.test\r\n", CHANNEL),
])
def test_imap_mail_keeps_the_reply_token_it_was_delivered_for(headers, expected):
    raw = f"From: a@example.org\r\n{headers}Subject: hi\r\n\r\nTo: support+InBody99@mailroom.test\r\n".encode()
    assert delivery_recipient(raw, CHANNEL) == expected


def test_the_token_endpoints_answers():
    answer = imap_oauth.parse_token_answer(200, b'{"access_token": "a-secret-token", "expires_in": 120, '
                                                b'"refresh_token": "rt2"}')
    assert answer.access_token == "a-secret-token" and answer.refresh_token == "rt2"
    assert imap_oauth.still_valid(answer.expires_at) and "a-secret-token" not in repr(answer)
    assert imap_oauth.parse_token_answer(200, b'{"access_token": "at", "expires_in": "soon"}').refresh_token is None
    assert not imap_oauth.still_valid(imap_oauth.parse_token_answer(200, b'{"access_token": "a", "expires_in": 30}')
                                      .expires_at)  # refreshed 60 s early
    assert not imap_oauth.still_valid(None)
    assert imap_oauth.still_valid((datetime.now(UTC) + timedelta(hours=1)).replace(tzinfo=None))  # SQLite's naive
    for status, body, words in ((400, b'{"error": "invalid_grant", "error_description": "revoked rt-secret"}',
                                 "invalid_grant"), (200, b"<html>", "without a JSON object"),
                                (200, b'{"token_type": "Bearer"}', "no access_token"), (200, b"[1]", "JSON object"),
                                (200, b"{" + b" " * 70000 + b"}", "more than")):
        with pytest.raises(imap_oauth.TokenRefreshFailed, match=words) as refused:
            imap_oauth.parse_token_answer(status, body, secrets=("rt-secret",))
        assert "rt-secret" not in str(refused.value)
    assert (imap_oauth.xoauth2_initial_response("u@example.com", "tok")
            == b"user=u@example.com\x01auth=Bearer tok\x01\x01")


@pytest.mark.parametrize("url", ["http://login.example/token", "https://user:pw@login.example/token", "ftp://x/y",
                                 "login.example/token", "", "https://" + "a" * 3000])
def test_token_urls_must_be_https_without_credentials(url):
    with pytest.raises(ValueError):
        imap_oauth.check_token_url(url, allow_insecure=False)


def test_refresh_never_asks_a_refused_address():
    with pytest.raises(imap_oauth.TokenRefreshFailed, match="loopback"):
        imap_oauth.refresh("https://127.0.0.1:9/token", "c", "s", "r")


def test_request_bodies_refuse_wrong_types_and_unknown_fields():
    good = {"address": CHANNEL, "host": "imap.example.com", "port": 993, "tls": "implicit",
            "username": "u", "auth": "password", "password": "p"}
    assert MailboxCreateSchema().load(good)["folder"] == "INBOX"
    for change in ({"port": "993"}, {"port": 993.5}, {"port": True}, {"port": 0}, {"port": 65536},
                   {"tls": None}, {"host": 42}, {"username": ""}, {"extra": 1}, {"oauth": "x"},
                   {"auth": "password", "oauth": OAUTH}, {"auth": "xoauth2", "oauth": OAUTH},
                   {"password": "p" * 1001}, {"address": "not-an-address"}):
        with pytest.raises(ValidationError):
            MailboxCreateSchema().load({**good, **change})
    assert MailboxPatchSchema().load({"port": 143}) == {"port": 143}
    with pytest.raises(ValidationError):
        MailboxPatchSchema().load({"oauth": {"client_secret": 5}})


def test_the_probe_names_the_stage_and_keeps_secrets_out():
    class Refusing:
        welcome = b"* OK ready"

        def __init__(self, *args, **kwargs):
            pass

        def login(self, username, password):
            from imapclient.exceptions import LoginError
            raise LoginError(f"b'[AUTHENTICATIONFAILED] wrong password {password}'")

        def logout(self):
            pass

    config = MailboxConfig(id="m", host="h", port=143, username="u", password="hunter2", ssl=False)
    answer = probe(config, client_factory=Refusing)
    assert answer == {"ok": False, "stage": "login", "server_answer": "[AUTHENTICATIONFAILED] wrong password ***"}
    assert "hunter2" not in repr(config)


def test_each_process_is_a_lease_owner_of_its_own_even_when_forked():
    from ingest import mailbox_api

    parent = mailbox_api.replica_id()
    assert mailbox_api.replica_id() == parent  # stable within a process
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write_end, mailbox_api.replica_id().encode())
        os._exit(0)
    os.close(write_end)
    child = os.read(read_end, 400).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    assert child and child != parent  # a forked replica never holds its parent's leases
    assert child.split(":")[1] == str(pid)
