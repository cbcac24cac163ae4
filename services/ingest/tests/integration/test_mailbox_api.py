"""Connected IMAP mailboxes through the API (`/api/ingest/mailboxes`), against the ingest service
as a real process, real Dovecot (password and XOAUTH2 checked by Dovecot at a local token
endpoint), RabbitMQ and PostgreSQL: secrets sealed and never answered or logged, the test
action's stages in Dovecot's own words, hostile bodies refused, the poller fetching API mailboxes
with their reply tokens, oversized mail quarantined, status, a rotated refresh token stored."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

from mailroom_testing.publishing import publish_event
from mailroom_testing.specs import INGEST
from mailroom_testing.stack import free_port
from mailroom_testing.subscriber import EventSubscriber
from mailroom_testing.tokens import NO_AUTH, auth

pytestmark = pytest.mark.integration

CHANNEL = "support@mailroom.test"
BASE = "/api/ingest/mailboxes"
MAX_BYTES = 200_000


def start_ingest(stack_factory, key, **env):
    stack = stack_factory([INGEST], extra_env={"INGEST_MAILBOX_SECRET_KEY": key, "INGEST_MAX_MESSAGE_BYTES":
                                               str(MAX_BYTES), "INGEST_IMAP_POLL_SECONDS": "0.5", **env})
    publish_event(stack.amqp_uri, "inbox_updated", "inbox-1", {
        "inbox_id": "inbox-1", "name": "Support", "channel_addresses": [CHANNEL, "sales@mailroom.test"],
        "member_emails": ["agent@mailroom.test"]})
    stack.eventually(lambda: stack.get("/health/ingest")[1].get("channels") == 2)
    return stack


def password_mailbox(dovecot, **overrides):
    body = {"address": CHANNEL, "host": dovecot.host, "port": dovecot.port, "tls": "starttls",
            "ca_bundle": Path(dovecot.ca_file).read_text(), "username": dovecot.user, "auth": "password",
            "password": dovecot.password}
    body.update(overrides)
    return body


def sealed_columns(stack) -> list[dict]:
    engine = create_engine(stack.database_urls["ingest"])
    try:
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(text("SELECT * FROM api_mailboxes"))]
    finally:
        engine.dispose()


def message(subject, to=CHANNEL, body="hello\r\n", headers=None):
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    return (f"From: Ada <ada@example.com>\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '-')}@example.com>\r\n{extra}\r\n{body}").encode()


def test_mailbox_crud_secrets_test_action_and_who_may_call(stack_factory, dovecot):
    key = Fernet.generate_key().decode()
    stack = start_ingest(stack_factory, key)  # INGEST_IMAP_ALLOW_PLAINTEXT off
    status, created = stack.post(BASE, password_mailbox(dovecot))
    assert status == 201, created
    assert created["folder"] == "INBOX" and created["tls"] == "starttls" and created["password_set"] is True
    assert created["status"]["messages_fetched"] == 0 and created["oauth"] is None
    mailbox = f"{BASE}/{created['id']}"
    assert dovecot.password not in json.dumps(created)

    # sealed at rest: nothing in the table reads as the password
    [row] = sealed_columns(stack)
    assert dovecot.password not in json.dumps(row, default=str)
    assert Fernet(key.encode()).decrypt(row["password_sealed"].encode()).decode() == dovecot.password

    status, tested = stack.post(f"{mailbox}/test")
    assert (status, tested["ok"], tested["stage"]) == (200, True, "ok"), tested

    # a wrong password: Dovecot's own refusal, at the login stage
    assert stack.request("PATCH", mailbox, {"password": "not-the-password"})[0] == 200
    tested = stack.post(f"{mailbox}/test")[1]
    assert tested["ok"] is False and tested["stage"] == "login"
    assert "[AUTHENTICATIONFAILED] Authentication failed." in tested["server_answer"]
    assert "not-the-password" not in tested["server_answer"]
    # a folder that does not exist: select stage
    stack.request("PATCH", mailbox, {"password": dovecot.password, "folder": "Nope"})
    tested = stack.post(f"{mailbox}/test")[1]
    assert (tested["stage"], tested["ok"]) == ("select", False) and "Nope" in tested["server_answer"]
    # STARTTLS without the CA bundle: the self-signed certificate is not trusted, tls stage
    status, _ = stack.request("PATCH", mailbox, {"folder": "INBOX", "ca_bundle": None})
    tested = stack.post(f"{mailbox}/test")[1]
    assert (tested["stage"], tested["ok"]) == ("tls", False) and "certificate" in tested["server_answer"].lower()
    # nothing listening: connect stage
    stack.request("PATCH", mailbox, {"port": free_port(), "tls": "implicit"})
    tested = stack.post(f"{mailbox}/test")[1]
    assert (tested["stage"], tested["ok"]) == ("connect", False)

    listed = stack.get(BASE)[1]["items"]
    assert [m["id"] for m in listed] == [created["id"]] and "password" not in listed[0]

    # who may call: those who manage inboxes (account_access, super_admin); members and others 403
    member = auth("agent-1", email="agent@mailroom.test", teams=["t1"])
    auditor = auth("auditor-1", roles=["account_access"])
    for method, path, body in (("GET", BASE, None), ("POST", BASE, password_mailbox(dovecot)),
                               ("GET", mailbox, None), ("PATCH", mailbox, {"folder": "INBOX"}),
                               ("DELETE", mailbox, None), ("POST", f"{mailbox}/test", None)):
        assert stack.request(method, path, body, headers=member)[0] == 403, (method, path)
        assert stack.request(method, path, body, headers=NO_AUTH)[0] == 401, (method, path)
    assert stack.get(mailbox, headers=auditor)[0] == 200

    assert stack.request("DELETE", mailbox)[0] == 204
    assert stack.get(mailbox)[0] == 404 and stack.request("DELETE", mailbox)[0] == 404
    assert stack.post(f"{mailbox}/test")[0] == 404
    log = stack.log("ingest")
    assert dovecot.password not in log and "not-the-password" not in log


def test_hostile_and_malformed_bodies_are_refused_clearly(stack_factory, dovecot):
    stack = start_ingest(stack_factory, Fernet.generate_key().decode())
    good = password_mailbox(dovecot)
    pem = good["ca_bundle"]
    bad_bodies = {
        "port 0": {"port": 0}, "port 70000": {"port": 70000}, "port as text": {"port": "143"},
        "port as float": {"port": 143.0}, "port as bool": {"port": True},
        "unknown tls": {"tls": "ssl"}, "plaintext not allowed": {"tls": "none", "ca_bundle": None},
        "no password": {"password": None}, "empty password": {"password": ""},
        "password with CRLF": {"password": "x\r\nA1 LOGOUT"}, "username with CRLF": {"username": "a\r\nb"},
        "folder is Junk": {"folder": "Junk"}, "folder with NUL": {"folder": "IN\x00BOX"},
        "host with spaces": {"host": "imap example com"}, "host as list": {"host": ["a"]},
        "unknown auth": {"auth": "kerberos"}, "xoauth2 without oauth": {"auth": "xoauth2", "password": None},
        "oauth on password auth": {"oauth": {"token_url": "https://t.example/token"}},
        "not our address": {"address": "stranger@elsewhere.example"}, "not an address": {"address": "nope"},
        "garbage CA": {"ca_bundle": "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"},
        "CA without PEM": {"ca_bundle": "hello"}, "huge CA": {"ca_bundle": pem * 500},
        "unknown field": {"secret_backdoor": True}, "port missing": {"port": None},
        "lone surrogate password": {"password": "\ud800"}, "non-ASCII CA": {"ca_bundle": pem + "é"},
        "unclosed IPv6 host": {"host": "[::1"},
    }
    for label, change in bad_bodies.items():
        body = {k: v for k, v in {**copy.deepcopy(good), **change}.items() if v is not None}  # None: left out
        status, answer = stack.post(BASE, body)
        assert status == 400, (label, status, answer)
    # xoauth2 missing pieces, and token URLs that are not https (INGEST_IMAP_ALLOW_PLAINTEXT off)
    oauth = {"token_url": "https://login.example/token", "client_id": "c", "client_secret": "s", "refresh_token": "r"}
    xoauth2 = {**{k: v for k, v in good.items() if k != "password"}, "auth": "xoauth2"}
    for label, change in {"no refresh token": {"refresh_token": None}, "http token URL": {"token_url":
                          "http://login.example/token"}, "credentials in URL": {"token_url":
                          "https://u:p@login.example/token"}, "not a URL": {"token_url": "login"}}.items():
        body = {**xoauth2, "oauth": {k: v for k, v in {**oauth, **change}.items() if v is not None}}
        assert stack.post(BASE, body)[0] == 400, label
    assert stack.post(BASE, {**xoauth2, "oauth": oauth})[0] == 201
    # not JSON, not an object, too large to read
    assert stack.request("POST", BASE, raw=b"{not json")[0] == 400
    assert stack.request("POST", BASE, raw=b"[1, 2]")[0] == 400
    assert stack.request("POST", BASE, raw=b" " * (600 * 1024))[0] == 413
    # PATCH: the same rules on the merged mailbox; unknown ids
    created = stack.post(BASE, good)[1]
    mailbox = f"{BASE}/{created['id']}"
    for change in ({"port": -1}, {"tls": "none"}, {"auth": "xoauth2"}, {"folder": "Trash"}, {"id": "x"},
                   {"address": "stranger@elsewhere.example"}):
        assert stack.request("PATCH", mailbox, change)[0] == 400, change
    assert stack.get(mailbox)[1]["port"] == dovecot.port  # unchanged
    for missing in (f"{BASE}/no-such-id", f"{BASE}/{'x' * 300}", f"{BASE}/%00"):
        assert stack.get(missing)[0] in (400, 404)
        assert stack.request("PATCH", missing, {"port": 1})[0] in (400, 404)


def test_without_a_key_mailboxes_cannot_be_stored(stack_factory, dovecot):
    stack = start_ingest(stack_factory, "")
    status, answer = stack.post(BASE, password_mailbox(dovecot))
    assert status == 503 and "INGEST_MAILBOX_SECRET_KEY" in answer["error"]["message"]


def test_an_xoauth2_mailbox_is_polled_keeps_reply_tokens_quarantines_oversized_mail_and_reports_status(
        stack_factory, amqp_uri, dovecot_oauth2, oauth_endpoint):
    key = Fernet.generate_key().decode()
    dovecot = dovecot_oauth2
    dovecot.deliver(message("with a token", to="Support Team <support+Tok3nAbc@mailroom.test>"))
    dovecot.deliver(message("delivered-to token", headers={"Delivered-To": "support+DeLiv42x@mailroom.test"}))
    dovecot.deliver(message("too big", body=("x" * 76 + "\r\n") * (MAX_BYTES // 78 + 10)))
    dovecot.deliver(message("plain"))
    with EventSubscriber(amqp_uri, [("ingest.events", "#")]) as events:
        stack = start_ingest(stack_factory, key, INGEST_IMAP_ALLOW_PLAINTEXT="true")
        status, created = stack.post(BASE, {
            "address": CHANNEL, "host": dovecot.host, "port": dovecot.port, "tls": "none", "username": dovecot.user,
            "auth": "xoauth2", "oauth": {"token_url": oauth_endpoint.url("/token"),
                                         "client_id": oauth_endpoint.client_id,
                                         "client_secret": oauth_endpoint.client_secret,
                                         "refresh_token": oauth_endpoint.refresh_token, "scope": "imap"}})
        assert status == 201, created
        assert created["oauth"]["client_secret_set"] and "client_secret" not in created["oauth"]
        received = {e["data"]["subject"]: e["data"] for e in events.wait_for("message_received", count=3,
                                                                              timeout=60)}
        [quarantined] = events.wait_for("message_quarantined", timeout=30)
    assert received["with a token"]["reply_token"] == "Tok3nAbc"
    assert received["delivered-to token"]["reply_token"] == "DeLiv42x"
    assert received["plain"]["reply_token"] is None and received["plain"]["via"] == "imap"
    assert quarantined["data"]["via"] == "imap" and "oversized" in quarantined["data"]["reason"]
    items = stack.get("/api/ingest/quarantine")[1]["items"]
    assert [i["reason"] for i in items if "oversized" in (i["reason"] or "")], items

    mailbox = f"{BASE}/{created['id']}"
    status_view = stack.eventually(lambda: (s := stack.get(mailbox)[1]["status"])["messages_fetched"] == 3 and s)
    assert status_view["last_success_at"] and status_view["last_error"] is None
    assert status_view["unreachable_since"] is None
    assert stack.post(f"{mailbox}/test")[1]["stage"] == "ok"

    # the refresh token the endpoint rotated to is the one stored (sealed), the access token too
    [row] = sealed_columns(stack)
    box = Fernet(key.encode())
    assert box.decrypt(row["refresh_token_sealed"].encode()).decode() == oauth_endpoint.refresh_token
    assert oauth_endpoint.refresh_token != "refresh-token-0"
    assert box.decrypt(row["access_token_sealed"].encode()).decode() in oauth_endpoint.active
    dump = json.dumps(row, default=str)
    assert oauth_endpoint.client_secret not in dump and oauth_endpoint.refresh_token not in dump
    log = stack.log("ingest")
    assert oauth_endpoint.client_secret not in log and not any(t in log for t in oauth_endpoint.active)

    # the provider revokes the refresh token: the status says why, the server is not called unreachable
    oauth_endpoint.active.clear()
    oauth_endpoint.refresh_token = "revoked-elsewhere"
    stack.request("PATCH", mailbox, {"oauth": {"client_id": oauth_endpoint.client_id}})  # drops the cached token
    failed = stack.eventually(lambda: "invalid_grant" in ((s := stack.get(mailbox)[1]["status"])["last_error"] or "")
                              and s, timeout=30)
    assert failed["unreachable_since"] is None and failed["consecutive_failures"] >= 1
    tested = stack.post(f"{mailbox}/test")[1]
    assert tested == {"ok": False, "stage": "login", "server_answer": tested["server_answer"]}
    assert "invalid_grant" in tested["server_answer"]
