"""The permission matrix (docs/access.md, issue 13): every HTTP route of every service × every kind
of caller → the exact status. The routes come from the services' nameko entrypoints
(tests/test_architecture.py `http_routes`), so a route added without a row here fails
`test_every_route_has_a_row`.

One stack of the five services (real processes, RabbitMQ, PostgreSQL) is started once for the
module, with `MAILROOM_JWT_AUDIENCE` set so audience checking is on, and seeded with one inbox
(`specific`: member agent-1, team team-a), one conversation with an inbound attachment, one
contact, a template and a snippet of each scope, one sent email with an attachment, one webhook
with a delivery. Each cell is one request; writes are idempotent (close → 200 again, move into
the same inbox), made on an item made fresh for the cell (deletes), or carry a body that fails
only after the access check (allowed callers get 400: "allowed" then means exactly "not
401/403/404").
"""

from __future__ import annotations

import base64
import importlib.util
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from mailroom_testing.specs import CONTACTS, CONVERSATIONS, INGEST, NOTIFIER, OUTBOUND
from mailroom_testing.stack import Stack
from mailroom_testing.tokens import TEST_ENV, token

pytestmark = pytest.mark.integration

_spec = importlib.util.spec_from_file_location("_architecture_routes", Path(__file__).with_name("test_architecture.py"))
_architecture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_architecture)

AUDIENCE = "mailroom-matrix"
INBOX_ADDRESS = "support@mailroom.test"
CUSTOMER = "ada@acme.example"
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 4

# --- callers ------------------------------------------------------------------------------------

MEMBER, TEAM, STRANGER, AUDITOR, ROOT, ANONYMOUS, EXPIRED, FOREIGN = CALLERS = (
    "member", "team", "non-member", "acct-access", "super-admin", "no-token", "expired", "other-aud")
INTAKE = "intake"  # a provider's inbound webhook: its own test below, not a column


def _bearer(user_id, **kwargs) -> str:
    return f"Bearer {token(user_id, **kwargs)}"


def caller_headers() -> dict[str, str]:
    """Minted per run (the expired one is expired beyond the 30 s leeway)."""
    return {
        MEMBER: _bearer("agent-1", email="agent@mailroom.test", audience=AUDIENCE),
        TEAM: _bearer("teammate-1", email="teammate@mailroom.test", teams=["team-a"], audience=AUDIENCE),
        STRANGER: _bearer("stranger-1", email="stranger@mailroom.test", teams=["team-z"], audience=AUDIENCE),
        AUDITOR: _bearer("auditor-1", email="auditor@mailroom.test", roles=["account_access"], audience=AUDIENCE),
        ROOT: _bearer("root-1", email="root@mailroom.test", roles=["super_admin"], audience=AUDIENCE),
        ANONYMOUS: "",
        EXPIRED: _bearer("agent-1", email="agent@mailroom.test", seconds=-3600, audience=AUDIENCE),
        FOREIGN: _bearer("agent-1", email="agent@mailroom.test", audience="other"),
        INTAKE: _bearer("mail-provider", roles=["intake"], audience=AUDIENCE),
    }


def row(member, team, stranger, auditor, root, unauthenticated=401) -> dict[str, int]:
    return {MEMBER: member, TEAM: team, STRANGER: stranger, AUDITOR: auditor, ROOT: root,
            ANONYMOUS: unauthenticated, EXPIRED: unauthenticated, FOREIGN: unauthenticated}


OPEN = row(200, 200, 200, 200, 200, unauthenticated=200)  # no token needed (health, metrics, signed links)


def anyone(status=200):
    """Any signed-in user (contacts, lists filtered to what the caller may view)."""
    return row(status, status, status, status, status)


def view(status=200):
    """Whoever may view the inbox: members, account-wide admins; others 404 (no existence leak)."""
    return row(status, status, 404, status, status)


def act(status=200):
    """Only members act; account-wide admins who are not members: 403; others 404."""
    return row(status, status, 404, 403, 403)


def manage_inboxes(status=200):
    return row(403, 403, 403, status, status)


def super_admin_only(status=200):
    return row(403, 403, 403, 403, status)


ADMIN_VIEW_ONLY = row(404, 404, 404, 200, 200)  # ingest's bare URLs: a member needs the signed link


# --- the matrix ----------------------------------------------------------------------------------

@dataclass
class Case:
    service: str
    method: str
    path: str  # the route, as http_routes spells it; formatted with the seeded ids
    expect: dict[str, int]
    label: str = ""
    body: object = None
    raw: bytes | None = None
    query: str = ""
    # per cell: fresh ids for the path (e.g. an item to delete), made before the request
    fresh: Callable | None = None
    # the path's ids when they are not the seeded defaults (e.g. the personal template)
    ids: dict = field(default_factory=dict)

    @property
    def route(self):
        return (self.service, self.method, self.path)

    @property
    def name(self):
        return f"{self.method.upper()} {self.path}{self.query}" + (f" [{self.label}]" if self.label else "")


def health_cases(service):
    return [Case(service, "get", path, OPEN) for path in ("/health/live", "/health/ready", "/metrics",
                                                            f"/health/{service}")]


def saved_cases(kind: str, id_name: str) -> list[Case]:
    """Templates or snippets (`kind`: templates|snippets): each scope's rule (domain/scopes.py)."""
    base = f"/api/outbound/{kind}"
    item = f"{base}/{{{id_name}}}"
    cases = [Case("outbound", "get", base, anyone())]
    content = {"subject": "Hi", "text": "Hello"} if kind == "templates" else {"text": "Hello"}
    cases += [
        Case("outbound", "post", base, super_admin_only(201), "account scope",
             body={"name": "matrix account", "scope": "account", **content}),
        Case("outbound", "post", base, act(201), "inbox scope",
             body={"name": "matrix inbox", "scope": "inbox", "inbox_id": "{inbox_id}", **content}),
        Case("outbound", "post", base, anyone(201), "personal scope",
             body={"name": "matrix personal", "scope": "personal", **content}),
    ]
    # who sees, who manages: account (every user sees, super admins manage), inbox (viewers see,
    # members manage), personal (its owner, the member, only)
    seen = {"account": anyone(), "inbox": view(), "personal": row(200, 404, 404, 404, 404)}
    managed = {"account": row(403, 403, 403, 403, 200), "inbox": act(200), "personal": row(200, 404, 404, 404, 404)}
    deleted = {scope: {c: (204 if s == 200 else s) for c, s in rules.items()} for scope, rules in managed.items()}
    for scope in ("account", "inbox", "personal"):
        ids = {id_name: f"{{{kind}_{scope}}}"}
        cases += [
            Case("outbound", "get", item, seen[scope], f"{scope} scope", ids=ids),
            Case("outbound", "post", f"{item}/render", seen[scope], f"{scope} scope", body={}, ids=ids),
            Case("outbound", "put", item, managed[scope], f"{scope} scope", body={"name": f"matrix {scope}"}, ids=ids),
            Case("outbound", "delete", item, deleted[scope], f"{scope} scope, a fresh one per cell",
                 fresh=lambda world, caller, scope=scope: {id_name: world.new_saved(kind, scope)}),
        ]
    # rendering with a conversation's tokens: viewing the conversation is enough
    cases.append(Case("outbound", "post", f"{item}/render", view(), "account scope, with the conversation",
                      body={"conversation_id": "{conversation_id}"}, ids={id_name: f"{{{kind}_account}}"}))
    return cases


def matrix() -> list[Case]:
    conversation = "/api/conversations/{conversation_id}"
    cases = [
        # --- ingest -------------------------------------------------------------------------
        *health_cases("ingest"),
        Case("ingest", "post", "/api/ingest/channels/{address}/messages", super_admin_only(200),
             "the seeded mail again: a duplicate", raw=b"{raw_mail}"),
        Case("ingest", "get", "/api/ingest/messages/{intake_id}", ADMIN_VIEW_ONLY, "bearer"),
        Case("ingest", "get", "/api/ingest/messages/{intake_id}", OPEN, "signed link, any or no bearer",
             query="?access={access}"),
        Case("ingest", "get", "/api/ingest/messages/{intake_id}/raw", ADMIN_VIEW_ONLY, "bearer"),
        Case("ingest", "get", "/api/ingest/messages/{intake_id}/raw", OPEN, "signed link, any or no bearer",
             query="?access={access}"),
        Case("ingest", "get", "/api/ingest/messages/{intake_id}/attachments/{sha256}", ADMIN_VIEW_ONLY, "bearer"),
        Case("ingest", "get", "/api/ingest/messages/{intake_id}/attachments/{sha256}", OPEN,
             "signed link, any or no bearer", query="?access={access}"),
        Case("ingest", "get", "/api/ingest/messages/{intake_id}/view", ADMIN_VIEW_ONLY, "bearer"),
        Case("ingest", "get", "/api/ingest/messages/{intake_id}/view", OPEN, "signed link, any or no bearer",
             query="?access={access}"),
        Case("ingest", "get", "/api/ingest/quarantine", row(403, 403, 403, 200, 200)),
        Case("ingest", "post", "/api/ingest/quarantine/retry", super_admin_only(202), "an unknown intake id",
             body={"intake_ids": [str(uuid.UUID(int=0))]}),
        # connected IMAP mailboxes: whoever manages inboxes and channels (account_access, super_admin)
        Case("ingest", "get", "/api/ingest/mailboxes", manage_inboxes()),
        Case("ingest", "post", "/api/ingest/mailboxes", manage_inboxes(400), "an incomplete mailbox", body={}),
        Case("ingest", "get", "/api/ingest/mailboxes/{mailbox_id}", manage_inboxes()),
        Case("ingest", "patch", "/api/ingest/mailboxes/{mailbox_id}", manage_inboxes(400), "a bad port",
             body={"port": 0}),
        Case("ingest", "delete", "/api/ingest/mailboxes/{mailbox_id}", manage_inboxes(204), "a fresh one per cell",
             fresh=lambda world, caller: {"mailbox_id": world.new_mailbox()}),
        Case("ingest", "post", "/api/ingest/mailboxes/{mailbox_id}/test", manage_inboxes(),
             "nothing listens: ok false"),
        # --- contacts: account-wide, any signed-in user ---------------------------------------
        *health_cases("contacts"),
        Case("contacts", "get", "/api/contacts", anyone(), query=f"?email={CUSTOMER}"),
        Case("contacts", "post", "/api/contacts", anyone(201), "a new address per cell",
             fresh=lambda world, caller: {"new_email": f"new-{uuid.uuid4().hex[:10]}@acme.example"},
             body={"name": "Matrix", "emails": ["{new_email}"]}),
        Case("contacts", "get", "/api/contacts/{contact_id}", anyone()),
        Case("contacts", "patch", "/api/contacts/{contact_id}", anyone(), "the same name", body={"name": "Ada"}),
        Case("contacts", "post", "/api/contacts/{contact_id}/emails", anyone(), "an address it has",
             body={"email": CUSTOMER}),
        Case("contacts", "delete", "/api/contacts/{contact_id}/emails/{email}", anyone(),
             "an address added for the cell", fresh=lambda world, caller: {"email": world.new_contact_email()}),
        Case("contacts", "get", "/api/contacts/{contact_id}/timeline", anyone()),
        Case("contacts", "post", "/api/contacts/{contact_id}/merge", anyone(400), "no contact_id", body={}),
        Case("contacts", "post", "/api/contacts/{contact_id}/erase", super_admin_only(404), "a contact that does not "
             "exist (the seeded one stays)", ids={"contact_id": str(uuid.UUID(int=0))}),
        Case("contacts", "get", "/api/contacts/erasures/{erasure_id}", super_admin_only(404),
             ids={"erasure_id": str(uuid.UUID(int=0))}),
        # --- conversations --------------------------------------------------------------------
        *health_cases("conversations"),
        Case("conversations", "get", "/api/inboxes", anyone()),
        Case("conversations", "post", "/api/inboxes", manage_inboxes(400), "invalid body", body={}),
        Case("conversations", "get", "/api/inboxes/{inbox_id}", view()),
        Case("conversations", "put", "/api/inboxes/{inbox_id}", manage_inboxes(400), "invalid visibility",
             body={"access": {"visibility": "nobody"}}),
        Case("conversations", "get", "/api/inboxes/{inbox_id}/conversations", view()),
        Case("conversations", "get", "/api/inboxes/{inbox_id}/views", view()),
        Case("conversations", "get", "/api/inboxes/{inbox_id}/sent", view()),
        Case("conversations", "get", "/api/conversations", anyone()),
        Case("conversations", "get", "/api/conversations/views", anyone()),
        Case("conversations", "get", conversation, view()),
        Case("conversations", "get", "/api/messages/{message_id}", view()),
        Case("conversations", "post", f"{conversation}/close", act(), body={}),
        Case("conversations", "post", f"{conversation}/reopen", act()),
        Case("conversations", "post", f"{conversation}/assign", act(), "unassign", body={"assignee_user_id": None}),
        Case("conversations", "post", f"{conversation}/comments", act(201), body={"body": "matrix note"}),
        Case("conversations", "post", f"{conversation}/calls", act(201), "a call per allowed cell (docs/calls.md)",
             body={"direction": "outbound", "phone_number": "+49 30 1234567", "outcome": "answered"}),
        Case("conversations", "get", f"{conversation}/calls", view()),
        # unread state: the caller's own, so any viewer marks it (admins who are no members too)
        Case("conversations", "post", f"{conversation}/read", view(204)),
        Case("conversations", "post", f"{conversation}/unread", view(204)),
        Case("conversations", "get", "/api/inboxes/{inbox_id}/conversations", view(), "search",
             query="?q=matrix%25_"),
        Case("conversations", "get", "/api/conversations", anyone(), "search", query="?q=matrix%25_"),
        Case("conversations", "post", f"{conversation}/ticket", act(), body={"subject": "matrix ticket"}),
        Case("conversations", "post", f"{conversation}/move", act(), "into its own inbox",
             body={"inbox_id": "{inbox_id}"}),
        Case("conversations", "post", f"{conversation}/spam", act()),
        Case("conversations", "post", f"{conversation}/not-spam", act()),
        Case("conversations", "put", f"{conversation}/messages/{{message_id}}/attribution", act(400),
             "not an address", body={"email": "nobody"}),
        # chat and form channels (docs/channels.md): connectors sign their requests, no bearer counts
        Case("conversations", "post", "/api/inboxes/{inbox_id}/channels", manage_inboxes(400), "invalid body",
             body={}),
        Case("conversations", "get", "/api/inboxes/{inbox_id}/channels", view()),
        Case("conversations", "post", "/api/channels/{channel_id}/messages", row(404, 404, 404, 404, 404, 404),
             "no such channel: the connector's signature decides, not a bearer", body={},
             ids={"channel_id": "00000000-0000-0000-0000-000000000000"}),
        Case("conversations", "post", "/api/channels/{channel_id}/submissions", row(404, 404, 404, 404, 404, 404),
             "no such channel: the connector's signature decides, not a bearer", body={},
             ids={"channel_id": "00000000-0000-0000-0000-000000000000"}),
        Case("conversations", "get", "/api/messages/{message_id}/channel-attachments/{attachment_id}",
             row(404, 404, 404, 404, 404), "an email message has none",
             ids={"attachment_id": "00000000-0000-0000-0000-000000000000"}),
        # --- outbound -------------------------------------------------------------------------
        *health_cases("outbound"),
        Case("outbound", "post", "/api/outbound/inboxes/{inbox_id}/emails", act(400), "unknown template_id",
             body={"to": [CUSTOMER], "subject": "s", "text": "t", "template_id": "no-such-template"}),
        Case("outbound", "post", "/api/outbound/conversations/{conversation_id}/replies", act(400),
             "unknown template_id", body={"text": "t", "template_id": "no-such-template"}),
        Case("outbound", "post", "/api/outbound/conversations/{conversation_id}/forwards", act(400),
             "unknown template_id", body={"to": ["someone@elsewhere.example"], "template_id": "no-such-template"}),
        Case("outbound", "get", "/api/outbound/conversations/{conversation_id}/reply-defaults", act()),
        Case("outbound", "get", "/api/outbound/emails/{email_id}", view()),
        Case("outbound", "get", "/api/outbound/emails/{email_id}/attachments/{attachment_id}", view()),
        Case("outbound", "get", "/api/outbound/conversations/{conversation_id}/emails", view()),
        Case("outbound", "get", "/api/outbound/inboxes/{inbox_id}/emails", view()),
        # the suppression list and the automatic acknowledgement: viewers read, members change
        Case("outbound", "get", "/api/outbound/inboxes/{inbox_id}/suppressions", view()),
        Case("outbound", "delete", "/api/outbound/inboxes/{inbox_id}/suppressions/{address}", act(404),
             "an address that is not suppressed", ids={"address": "nobody@acme.example"}),
        Case("outbound", "get", "/api/outbound/inboxes/{inbox_id}/auto-acknowledgement", view()),
        Case("outbound", "put", "/api/outbound/inboxes/{inbox_id}/auto-acknowledgement", act(200), "turned off",
             body={"enabled": False, "period_hours": 24}),
        *saved_cases("templates", "template_id"),
        *saved_cases("snippets", "snippet_id"),
        # --- notifier: webhooks are super admins' ---------------------------------------------
        *health_cases("notifier"),
        Case("notifier", "get", "/api/webhooks", super_admin_only()),
        Case("notifier", "post", "/api/webhooks", super_admin_only(400), "invalid body", body={}),
        Case("notifier", "get", "/api/webhooks/{webhook_id}", super_admin_only()),
        Case("notifier", "patch", "/api/webhooks/{webhook_id}", super_admin_only(),
             "the same description", body={"description": "matrix"}),
        Case("notifier", "get", "/api/webhooks/{webhook_id}/deliveries", super_admin_only()),
        Case("notifier", "post", "/api/webhooks/{webhook_id}/rotate-secret", super_admin_only()),
        Case("notifier", "post", "/api/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
             super_admin_only(202)),
        Case("notifier", "delete", "/api/webhooks/{webhook_id}", super_admin_only(204),
             "a fresh one per cell", fresh=lambda world, caller: {"webhook_id": world.new_webhook()}),
        Case("notifier", "get", "/api/slack/connections", super_admin_only()),
        Case("notifier", "post", "/api/slack/connections", super_admin_only(400), "invalid body", body={}),
        Case("notifier", "get", "/api/slack/connections/{connection_id}", super_admin_only()),
        Case("notifier", "patch", "/api/slack/connections/{connection_id}", super_admin_only(),
             "the same description", body={"description": "matrix"}),
        Case("notifier", "delete", "/api/slack/connections/{connection_id}", super_admin_only(204),
             "a fresh one per cell", fresh=lambda world, caller: {"connection_id": world.new_slack_connection()}),
        Case("notifier", "post", "/slack/events", row(401, 401, 401, 401, 401),
             "Slack signs it (v0): a bearer token is no use", body={"type": "url_verification", "challenge": "c"}),
    ]
    return cases


def declared_routes() -> set[tuple[str, str, str]]:
    return {(cls.name, method, path) for cls in _architecture.service_classes()
            for method, path in _architecture.http_routes(cls)}


def test_every_route_has_a_row():
    """A new route fails here until the matrix says who may call it (and an old row, once the
    route is gone)."""
    rows = {case.route for case in matrix()}
    declared = declared_routes()
    assert not declared - rows, f"routes without a row in the permission matrix: {sorted(declared - rows)}"
    assert not rows - declared, f"rows for routes that do not exist: {sorted(rows - declared)}"
    for case in matrix():
        assert set(case.expect) == set(CALLERS), case.name


# --- the stack and its seed ----------------------------------------------------------------------

class _Hook(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def seeded_mail() -> bytes:
    message = EmailMessage()
    message["From"] = f"Ada <{CUSTOMER}>"
    message["To"] = INBOX_ADDRESS
    message["Subject"] = "Invoice 7"
    message["Message-ID"] = f"<{uuid.uuid4()}@acme.example>"
    message.set_content("The invoice is attached.")
    message.add_attachment(PDF, maintype="application", subtype="pdf", filename="invoice-7.pdf")
    return message.as_bytes()


class World:
    """The running stack, the callers' headers and the seeded ids."""

    def __init__(self, stack: Stack, hook_url: str):
        self.stack = stack
        self.hook_url = hook_url
        self.headers = caller_headers()
        self.ids: dict[str, object] = {"address": INBOX_ADDRESS}

    def request(self, service: str, method: str, path: str, caller: str, body=None, raw: bytes | None = None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(f"http://127.0.0.1:{self.stack.ports[service]}{path}", data=data,
                                         method=method.upper())
        request.add_header("Content-Type", "message/rfc822" if raw is not None else "application/json")
        if self.headers[caller]:
            request.add_header("Authorization", self.headers[caller])
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, payload, kind = response.status, response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as error:
            status, payload, kind = error.code, error.read(), error.headers.get("Content-Type", "")
        return status, (json.loads(payload) if "json" in kind and payload else payload)

    def ok(self, service, method, path, caller=ROOT, body=None, raw=None, expect=(200, 201, 202)):
        status, payload = self.request(service, method, path, caller, body, raw)
        assert status in expect, f"seeding {method} {path} as {caller}: {status} {payload!r}"
        return payload

    def eventually(self, probe, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = probe()
            if found:
                return found
            time.sleep(0.1)
        raise AssertionError(f"seeding: {probe} never answered")

    # -- fresh items for cells that delete --------------------------------------------------

    def new_saved(self, kind: str, scope: str) -> str:
        body = {"name": f"to delete {uuid.uuid4().hex[:6]}", "scope": scope, "text": "Bye"}
        if scope == "inbox":
            body["inbox_id"] = self.ids["inbox_id"]
        creator = ROOT if scope == "account" else MEMBER  # personal: the member's own
        return self.ok("outbound", "post", f"/api/outbound/{kind}", creator, body)["id"]

    def new_contact_email(self) -> str:
        email = f"extra-{uuid.uuid4().hex[:10]}@acme.example"
        self.ok("contacts", "post", f"/api/contacts/{self.ids['contact_id']}/emails", ROOT, {"email": email})
        return email

    def new_slack_connection(self) -> str:
        return self.ok("notifier", "post", "/api/slack/connections", ROOT, {
            "inbox_id": self.ids["inbox_id"], "channel_id": f"C{uuid.uuid4().hex[:10].upper()}",
            "bot_token": "xoxb-matrix-token", "signing_secret": "matrix-signing-secret"})["id"]

    def new_mailbox(self) -> str:
        return self.ok("ingest", "post", "/api/ingest/mailboxes", ROOT, {
            "address": INBOX_ADDRESS, "host": "127.0.0.1", "port": 9, "tls": "implicit", "username": "team",
            "auth": "password", "password": "matrix-password"})["id"]

    def new_webhook(self) -> str:
        return self.ok("notifier", "post", "/api/webhooks", ROOT,
                       {"url": self.hook_url, "events": ["contact_created"], "description": "to delete"})["id"]

    # -- the seed ---------------------------------------------------------------------------

    def seed(self) -> None:
        ids = self.ids
        self.eventually(lambda: self.request("ingest", "get", "/health/ingest", ROOT)[1].get("channels") == 1)
        [inbox] = self.ok("conversations", "get", "/api/inboxes", MEMBER)["items"]
        ids["inbox_id"] = inbox["id"]
        ids["webhook_id"] = self.ok("notifier", "post", "/api/webhooks", ROOT,
                                    {"url": self.hook_url, "events": ["*"], "description": "matrix"})["id"]
        ids["connection_id"] = self.new_slack_connection()
        ids["mailbox_id"] = self.new_mailbox()
        ids["raw_mail"] = seeded_mail()
        self.ok("ingest", "post", f"/api/ingest/channels/{INBOX_ADDRESS}/messages", ROOT, raw=ids["raw_mail"])
        listing = f"/api/inboxes/{ids['inbox_id']}/conversations"
        [conversation] = self.eventually(lambda: self.ok("conversations", "get", listing, MEMBER)["items"])
        ids["conversation_id"] = conversation["id"]
        detail = self.ok("conversations", "get", f"/api/conversations/{conversation['id']}", MEMBER)
        [message] = [m for m in detail["messages"] if m.get("direction") == "in"]
        ids["message_id"] = message["id"]
        message = self.ok("conversations", "get", f"/api/messages/{message['id']}", MEMBER)
        [attachment] = message["attachments"]
        # /api/ingest/messages/{intake_id}/attachments/{sha256}?access=…
        path, _, query = attachment["url"].partition("?")
        parts = path.split("/")
        ids["intake_id"], ids["sha256"] = parts[parts.index("messages") + 1], parts[-1]
        ids["access"] = query.split("access=", 1)[1].split("&")[0]
        contacts = f"/api/contacts?email={CUSTOMER}"
        [contact] = self.eventually(lambda: self.ok("contacts", "get", contacts, MEMBER)["items"])
        ids["contact_id"], ids["email"] = contact["id"], CUSTOMER
        for kind in ("templates", "snippets"):
            for scope in ("account", "inbox", "personal"):
                ids[f"{kind}_{scope}"] = self.new_saved(kind, scope)
        sent = self.ok("outbound", "post", f"/api/outbound/conversations/{ids['conversation_id']}/replies", MEMBER, {
            "text": "Thanks, see the receipt.", "attachments": [{
                "filename": "receipt.pdf", "content_type": "application/pdf",
                "content_base64": base64.b64encode(PDF).decode()}]})
        ids["email_id"], ids["attachment_id"] = sent["id"], sent["attachments"][0]["id"]
        deliveries = f"/api/webhooks/{ids['webhook_id']}/deliveries"
        ids["delivery_id"] = self.eventually(lambda: self.ok("notifier", "get", deliveries)["items"])[0]["id"]


@pytest.fixture(scope="module")
def world(rabbit_admin, postgres_admin, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("permission-matrix")
    inboxes = workdir / "inboxes.yaml"
    inboxes.write_text(f"""
inboxes:
  - key: support
    name: Support
    channels: [{{address: {INBOX_ADDRESS}, name: Support, primary: true}}]
    members: [{{user_id: agent-1, email: agent@mailroom.test}}]
    access: {{visibility: specific, teams: [team-a]}}
""")
    hook = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    vhost = rabbit_admin.create_vhost()
    services = [INGEST, CONTACTS, CONVERSATIONS, OUTBOUND, NOTIFIER]
    databases = {spec.name: postgres_admin.create_database(spec.name) for spec in services}
    stack = Stack(services=services, amqp_uri=rabbit_admin.uri_for(vhost), database_urls=databases,
                  workdir=workdir / "stack", extra_env={
                      **TEST_ENV, "MAILROOM_JWT_AUDIENCE": AUDIENCE, "CONVERSATIONS_INBOXES_FILE": str(inboxes),
                      "NOTIFIER_SECRET_KEY": Fernet.generate_key().decode(),
                      "INGEST_MAILBOX_SECRET_KEY": Fernet.generate_key().decode(),
                      "NOTIFIER_WEBHOOK_ALLOW_PRIVATE": "true", "NOTIFIER_ALLOW_HTTP_WEBHOOKS": "true",
                      "SLACK_API_URL": "http://127.0.0.1:9/api/"})  # no Slack here: its posts wait
    try:
        stack.start()
        world = World(stack, f"http://127.0.0.1:{hook.server_address[1]}/hook")
        world.seed()
        yield world
    finally:
        try:
            stack.stop()
        finally:
            hook.shutdown()
            rabbit_admin.delete_vhost(vhost)
            for url in databases.values():
                postgres_admin.drop_database(url)


def _fill(value, ids: dict):
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    return value


def test_permission_matrix(world):
    """Every cell, in order (close before reopen, spam before not-spam); all mismatches at once."""
    cases = matrix()
    results: list[tuple[Case, dict[str, int]]] = []
    mismatches = []
    for case in cases:
        got = {}
        for caller in CALLERS:
            ids = {**world.ids, **{k: v.format(**world.ids) for k, v in case.ids.items()}}
            if case.fresh is not None:
                ids.update(case.fresh(world, caller))
            path = (case.path + case.query).format(**ids)
            raw = ids["raw_mail"] if case.raw is not None else None
            status, payload = world.request(case.service, case.method, path, caller, _fill(case.body, ids), raw)
            got[caller] = status
            if status != case.expect[caller]:
                detail = payload if isinstance(payload, dict) else (payload or b"")[:200]
                mismatches.append(f"{case.service} {case.name} as {caller}: expected {case.expect[caller]}, "
                                  f"got {status} {detail}")
        results.append((case, got))
    print(render(results))  # shown with -s
    assert not mismatches, "\n".join([*mismatches, "", render(results)])
    assert len(results) >= len(declared_routes())


def test_an_intake_service_token_posts_raw_mail_and_reads_nothing(world):
    """The `intake` role (docs/access.md, ingest) may post raw mail, and is nobody otherwise."""
    ids = world.ids
    got = {
        "post raw mail (a duplicate)": world.request("ingest", "post", f"/api/ingest/channels/{INBOX_ADDRESS}/messages",
                                                     INTAKE, raw=ids["raw_mail"])[0],
        "bare raw message": world.request("ingest", "get", f"/api/ingest/messages/{ids['intake_id']}/raw", INTAKE)[0],
        "quarantine": world.request("ingest", "get", "/api/ingest/quarantine", INTAKE)[0],
        "the conversation": world.request("conversations", "get", f"/api/conversations/{ids['conversation_id']}",
                                          INTAKE)[0],
    }
    assert got == {"post raw mail (a duplicate)": 200, "bare raw message": 404, "quarantine": 403,
                   "the conversation": 404}


def render(results) -> str:
    """The matrix: one line per row, `got` (and `!expected` where they differ) per caller."""
    width = max(len(f"{case.service} {case.name}") for case, _ in results)
    lines = [" " * width + " " + " ".join(f"{c:>11}" for c in CALLERS)]
    for case, got in results:
        cells = []
        for caller in CALLERS:
            cell = str(got[caller]) if got[caller] == case.expect[caller] else f"{got[caller]}!{case.expect[caller]}"
            cells.append(f"{cell:>11}")
        lines.append(f"{case.service} {case.name}".ljust(width) + " " + " ".join(cells))
    return "\n".join(lines)
