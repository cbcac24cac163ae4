"""Templates and snippets across real processes (outbound, conversations, ingest; RabbitMQ,
PostgreSQL): rendering with a conversation reads it only for a caller who may view it (404
otherwise, exactly as for one that does not exist); each template's owner scope decides who
sees, lists, renders and manages it; a malformed From is a 400."""

import urllib.error
import urllib.request
import uuid

import pytest

from mailroom_testing.specs import CONVERSATIONS, INGEST, OUTBOUND
from mailroom_testing.subscriber import EventSubscriber
from mailroom_testing.tokens import NO_AUTH, auth

pytestmark = pytest.mark.integration

MEMBER = auth("agent-a")  # member of Billing
OTHER = auth("agent-b")  # member of Legal only
AUDITOR = auth("auditor", roles=["account_access"])  # views every inbox, acts in none


def make_inbox(stack, name, address, member):
    status, inbox = stack.post("/api/inboxes", {
        "name": name, "channels": [{"address": address}],
        "members": [{"user_id": member, "email": f"{member}@mailroom.test"}], "access": {"visibility": "specific"}})
    assert status == 201, inbox
    return inbox["id"]


def customer_mail(to: str) -> bytes:
    return (f"From: Ada Customer <ada@example.com>\r\nTo: {to}\r\nSubject: Invoice 7\r\n"
            f"Message-ID: <{uuid.uuid4()}@example.com>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\nWhere is invoice 7?\r\n").encode()


@pytest.fixture
def stack(stack_factory):
    stack = stack_factory([OUTBOUND, CONVERSATIONS, INGEST], extra_env={"CONVERSATIONS_INBOXES_FILE": ""})
    stack.billing = make_inbox(stack, "Billing", "billing@mailroom.test", "agent-a")
    stack.legal = make_inbox(stack, "Legal", "legal@mailroom.test", "agent-b")
    stack.eventually(lambda: stack.get("/health/ingest")[1].get("channels") == 2, timeout=30)
    with EventSubscriber(stack.amqp_uri, [("conversations.events", "conversation_created")]) as events:
        status, body = stack.post("/api/ingest/channels/billing@mailroom.test/messages",
                                  raw=customer_mail("billing@mailroom.test"))
        assert status == 202, body
        [created] = events.wait_for("conversation_created", timeout=30)
    stack.conversation_id = created["data"]["conversation_id"]
    return stack


def delete(stack, path, headers=None) -> int:
    """DELETE's status (a 204 has no body, which Stack.request would read as JSON)."""
    request = urllib.request.Request(stack.url(path), method="DELETE")
    for key, value in {**stack.default_headers, **(headers or {})}.items():
        if value:
            request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def names(stack, what, headers):
    status, page = stack.get(f"/api/outbound/{what}", headers=headers)
    assert status == 200, page
    return sorted(item["name"] for item in page["items"])


def test_render_reads_a_conversation_only_for_who_may_view_it(stack):
    status, template = stack.post("/api/outbound/templates", {  # the admin: account-wide
        "name": "Reply", "subject": "Re: {{ conversation.subject }}",
        "html": "<p>Hi {{ contact.first_name }}, {{ inbox.name }} here</p>"})
    assert status == 201 and template["scope"] == "account", template
    path = f"/api/outbound/templates/{template['id']}/render"
    conversation = {"conversation_id": stack.conversation_id}

    status, rendered = stack.post(path, conversation, headers=MEMBER)
    assert status == 200, rendered
    assert rendered["subject"] == "Re: Invoice 7" and rendered["html"] == "<p>Hi Ada, Billing here</p>"
    status, rendered = stack.post(path, conversation, headers=AUDITOR)  # viewing is enough to render
    assert status == 200 and rendered["subject"] == "Re: Invoice 7"

    # another inbox's member: 404, word for word the answer for a conversation that does not exist
    status, refused = stack.post(path, conversation, headers=OTHER)
    assert status == 404, refused
    assert "Invoice" not in str(refused) and "ada@example.com" not in str(refused)
    missing = str(uuid.uuid4())
    status, unknown = stack.post(path, {"conversation_id": missing}, headers=OTHER)
    assert status == 404
    assert refused["error"]["message"].replace(stack.conversation_id, missing) == unknown["error"]["message"]
    status, refused = stack.post(path, {"inbox_id": stack.billing}, headers=OTHER)
    assert status == 404 and "Billing" not in str(refused)
    assert stack.post(path, conversation, headers=NO_AUTH)[0] == 401
    snippet = stack.post("/api/outbound/snippets", {"name": "Sign-off", "text": "Re {{ conversation.subject }}"})[1]
    assert stack.post(f"/api/outbound/snippets/{snippet['id']}/render", conversation, headers=OTHER)[0] == 404
    status, rendered = stack.post(f"/api/outbound/snippets/{snippet['id']}/render", conversation, headers=MEMBER)
    assert status == 200 and rendered["text"] == "Re Invoice 7"


def test_template_and_snippet_scopes_by_role(stack):
    # account-wide: super admins only (the tests' default caller is one)
    assert stack.post("/api/outbound/templates", {"name": "Mine?", "text": "x"}, headers=MEMBER)[0] == 403
    assert stack.post("/api/outbound/templates", {"name": "Mine?", "text": "x"}, headers=AUDITOR)[0] == 403
    status, everyone = stack.post("/api/outbound/templates", {"name": "Everyone", "text": "hello"})
    assert status == 201
    # an inbox's: its members; a viewer who is not a member 403, anyone else 404
    billing = {"name": "Billing reply", "text": "about your invoice", "inbox_id": stack.billing}
    assert stack.post("/api/outbound/templates", billing, headers=OTHER)[0] == 404
    status, refused = stack.post("/api/outbound/templates", billing, headers=AUDITOR)
    assert status == 403 and "members" in refused["error"]["message"]
    status, in_billing = stack.post("/api/outbound/templates", billing, headers=MEMBER)
    assert status == 201 and (in_billing["scope"], in_billing["inbox_id"]) == ("inbox", stack.billing)
    # personal: its owner only, whoever else asks (admins too)
    status, personal = stack.post("/api/outbound/templates", {"name": "My notes", "text": "n", "scope": "personal"},
                                  headers=OTHER)
    assert status == 201 and personal["owner_user_id"] == "agent-b"

    assert names(stack, "templates", MEMBER) == ["Billing reply", "Everyone"]
    assert names(stack, "templates", OTHER) == ["Everyone", "My notes"]
    assert names(stack, "templates", AUDITOR) == ["Billing reply", "Everyone"]
    assert names(stack, "templates", {}) == ["Billing reply", "Everyone"]  # the super admin
    assert names(stack, "templates?inbox_id=" + stack.billing, OTHER) == ["Everyone", "My notes"]
    assert stack.get("/api/outbound/templates", headers=NO_AUTH)[0] == 401

    one = f"/api/outbound/templates/{in_billing['id']}"
    assert stack.get(one, headers=MEMBER)[0] == 200 and stack.get(one, headers=AUDITOR)[0] == 200
    assert stack.get(one, headers=OTHER)[0] == 404
    theirs = f"/api/outbound/templates/{personal['id']}"
    assert stack.get(theirs, headers=OTHER)[0] == 200
    assert stack.get(theirs, headers=MEMBER)[0] == 404 and stack.get(theirs)[0] == 404
    assert stack.post(f"{theirs}/render", {}, headers=MEMBER)[0] == 404

    assert stack.request("PUT", f"/api/outbound/templates/{everyone['id']}", {"text": "x"}, headers=MEMBER)[0] == 403
    status, changed = stack.request("PUT", one, {"text": "about invoice {{ contact.name }}"}, headers=MEMBER)
    assert status == 200 and changed["scope"] == "inbox", changed
    assert stack.request("PUT", one, {"text": "x"}, headers=OTHER)[0] == 404
    assert delete(stack, one, AUDITOR) == 403
    assert delete(stack, theirs, MEMBER) == 404
    assert delete(stack, theirs) == 404  # a super admin does not see others' personal templates
    # moving one's own template into an inbox one may not act in: refused; into one's own inbox: shared there
    assert stack.request("PUT", theirs, {"scope": "inbox", "inbox_id": stack.billing}, headers=OTHER)[0] == 404
    status, shared = stack.request("PUT", theirs, {"scope": "inbox", "inbox_id": stack.legal}, headers=OTHER)
    assert status == 200 and (shared["scope"], shared["owner_user_id"]) == ("inbox", None)
    assert delete(stack, one, MEMBER) == 204
    assert names(stack, "templates", MEMBER) == ["Everyone"]

    # snippets: the same rules; a shortcut is unique per owner, so two people may both have `thx`
    for headers in (MEMBER, OTHER):
        status, snippet = stack.post("/api/outbound/snippets", {"name": "Thanks", "shortcut": "thx", "text": "Thanks!",
                                                                "scope": "personal"}, headers=headers)
        assert status == 201, snippet
    status, clash = stack.post("/api/outbound/snippets", {"name": "Again", "shortcut": "thx", "text": "x",
                                                          "scope": "personal"}, headers=MEMBER)
    assert status == 409 and "thx" in clash["error"]["message"]
    assert names(stack, "snippets", MEMBER) == ["Thanks"] and names(stack, "snippets", AUDITOR) == []


def test_a_malformed_from_is_a_400_naming_it(stack):
    for bad in ("not an address", "billing@mailroom.test, evil@example.com", {"email": None}):
        status, answer = stack.post(f"/api/outbound/inboxes/{stack.billing}/emails", {
            "to": ["ada@example.com"], "subject": "Hi", "text": "x", "from": bad}, headers=MEMBER)
        assert status == 400, (bad, answer)
        assert answer["error"]["details"]["field"] == "from"
