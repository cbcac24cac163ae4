"""outbound's use cases called directly with a real database session (an SQLite file) and a stand-in
for conversations: sending with Idempotency-Key, a delivery's claim and outcome, bounces, templates
and snippets. No servers."""

import dataclasses
from email import policy
from email.parser import BytesParser

import pytest
from sqlalchemy import select

from mailroom_shared.auth import Principal
from mailroom_shared.db import Database
from mailroom_shared.http import Conflict, Forbidden, HttpError, NotFound
from mailroom_shared.messaging.outbox import Outbox
from outbound import handlers, models
from outbound.domain.delivery import Outcome
from outbound.handlers import SNIPPETS, TEMPLATES
from outbound.models import Email, Snippet, Template
from outbound.settings import Settings

PUBLISHES = {"email_queued": 1, "email_sent": 1, "email_deferred": 1, "email_failed": 1, "email_bounced": 1}
INBOX = {"inbox_id": "inbox-1", "name": "Support", "primary_address": "support@mailroom.test",
         "identities": [{"email": "support@mailroom.test", "name": "Support Team"},
                        {"email": "sales@mailroom.test", "name": "Sales"}]}
SETTINGS = Settings(message_id_domain="mailroom.test", max_attempts=2, retry_base_seconds=0.0)


ADMIN = Principal("admin", roles=frozenset({"super_admin"}))
AGENT = Principal("agent-1")  # a member of inbox-1


class Conversations:
    """Answers like conversations' RPC for one inbox and one conversation; counts the calls.
    Members of inbox-1: agent-1; account-wide admins view it too."""

    def __init__(self):
        self.calls = 0

    def _allowed(self, inbox_id, principal, view):
        if inbox_id != INBOX["inbox_id"] or principal is not None and not (
                principal.user_id == "agent-1" or principal.sees_every_inbox):
            raise NotFound(f"no inbox {inbox_id}")
        if principal is not None and principal.user_id != "agent-1" and not view:
            raise Forbidden("only its members can act")

    def inbox(self, inbox_id, principal=None, *, view=False):
        self.calls += 1
        self._allowed(inbox_id, principal, view)
        return INBOX

    def reply_context(self, conversation_id, message_id, include_thread=False, principal=None, *, view=False):
        self.calls += 1
        self._allowed(INBOX["inbox_id"] if conversation_id == "conv-1" else None, principal, view)
        return {"conversation": {"id": conversation_id, "subject": "Order #42", "inbox_id": INBOX["inbox_id"],
                                 "reply_token": "tok", "contact": {"name": "Ada Lovelace", "email": "ada@example.com"}},
                "inbox": INBOX, "channel_address": "support@mailroom.test",
                "reply_address": "support+tok@mailroom.test", "message": None}

    def inbox_rights(self, principal):
        conversations = self

        class Rights:
            def prefetch(self, inbox_ids):
                pass

            def may_view(self, inbox_id):
                return inbox_id == INBOX["inbox_id"] and (principal.user_id == "agent-1" or principal.sees_every_inbox)

            def may_act(self, inbox_id):
                conversations.calls += 1
                return inbox_id == INBOX["inbox_id"] and principal.user_id == "agent-1"

        return Rights()


@pytest.fixture
def database(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'outbound.db'}")
    models.Base.metadata.create_all(database.engine)
    yield database
    database.dispose()


@pytest.fixture
def outbox():
    return Outbox(models.outbox, publishes=PUBLISHES)


def compose(database, outbox, conversations, body=None, key=None):
    body = body or {"to": [{"email": "ada@example.com", "name": "Ada"}], "subject": "Hello", "text": "Hi Ada"}
    return handlers.send(database, outbox, SETTINGS, conversations, "compose", INBOX["inbox_id"], body, key)


def events(database):
    with database.transaction() as session:
        return [row.event_type for row in session.execute(select(models.outbox).order_by(models.outbox.c.id))]


def claim(database, outbox):
    with database.transaction() as session:
        return handlers.claim_next(session, outbox, SETTINGS)


def record(database, outbox, claimed, outcome):
    with database.transaction() as session:
        return handlers.record_outcome(session, outbox, claimed, outcome, SETTINGS).state


def test_compose_queues_once_per_idempotency_key_and_another_request_with_it_is_a_conflict(database, outbox):
    conversations = Conversations()
    status, email = compose(database, outbox, conversations, key="k1")
    assert status == 202 and email["state"] == "queued" and email["from"]["email"] == "support@mailroom.test"
    assert email["reply_to"] == [{"name": "Support Team", "email": f"support+{_reply_token(database)}@mailroom.test"}]
    again_status, again = compose(database, outbox, conversations, key="k1")
    assert (again_status, again["id"]) == (200, email["id"]) and conversations.calls == 1  # no second RPC
    with pytest.raises(Conflict):
        compose(database, outbox, conversations, {"to": ["bob@example.com"], "subject": "Other", "text": "x"}, "k1")
    with pytest.raises(HttpError, match="Idempotency-Key"):
        compose(database, outbox, conversations, key="x" * 201)
    assert events(database) == ["email_queued"]


def _reply_token(database):
    with database.transaction() as session:
        return session.execute(select(Email.reply_token)).scalar_one()


def test_a_refused_request_is_a_400_naming_the_field(database, outbox):
    with pytest.raises(HttpError) as error:
        compose(database, outbox, Conversations(), {"to": ["ada@example.com"], "subject": "Hi\r\nBcc: x@y.z",
                                                    "text": "x"})
    assert error.value.status == 400 and error.value.details == {"field": "subject"}
    with pytest.raises(HttpError) as error:
        compose(database, outbox, Conversations(), {"to": ["ada@example.com"], "subject": "Hi", "text": "x",
                                                    "from": "someone@else.example"})
    assert error.value.details == {"field": "from"} and "not an address of this inbox" in error.value.message
    assert events(database) == []


def test_a_claimed_email_is_sent_with_its_bytes_and_recorded_with_its_event(database, outbox):
    _, email = compose(database, outbox, Conversations(), {"to": ["ada@example.com"], "cc": ["bob@example.com"],
                                                           "bcc": ["carol@example.com"], "subject": "Hello",
                                                           "text": "Hi", "from": "sales@mailroom.test"})
    claimed = claim(database, outbox)
    assert claimed.email_id == email["id"] and claimed.attempt == 1 and claimed.mail_from == "sales@mailroom.test"
    assert claimed.recipients == ["ada@example.com", "bob@example.com", "carol@example.com"]
    message = BytesParser(policy=policy.default).parsebytes(claimed.raw)
    assert message["Message-ID"] == f"<{email['message_id']}>" and message["Bcc"] is None
    assert claim(database, outbox) is None  # leased: no second worker sends it meanwhile
    assert record(database, outbox, claimed, Outcome("sent", 250, "2.0.0 queued as Q1", "Q1")) == "sent"
    assert events(database) == ["email_queued", "email_sent"]


def test_a_temporary_refusal_is_retried_until_the_attempts_are_used_up(database, outbox):
    compose(database, outbox, Conversations())
    assert record(database, outbox, claim(database, outbox), Outcome("temporary", 451, "451 try later")) == "deferred"
    assert record(database, outbox, claim(database, outbox), Outcome("temporary", 451, "451 again")) == "failed"
    assert events(database) == ["email_queued", "email_deferred", "email_failed"]
    with database.transaction() as session:
        assert "retries exhausted after 2 attempts" in session.execute(select(Email.last_error)).scalar_one()


def test_a_permanent_refusal_fails_at_once(database, outbox):
    compose(database, outbox, Conversations())
    assert record(database, outbox, claim(database, outbox), Outcome("permanent", 550, "550 no such user")) == "failed"
    assert events(database) == ["email_queued", "email_failed"]


def test_a_dsn_bounces_the_email_it_returns_and_one_returning_nothing_of_ours_changes_nothing(database, outbox):
    _, email = compose(database, outbox, Conversations())
    record(database, outbox, claim(database, outbox), Outcome("sent", 250, "ok", "Q1"))
    # delivery_report_received's data (mailroom_shared.events.delivery_reports)
    dsn = {"bounced_message_ids": [f"<{email['message_id']}>"], "intake_id": "intake-1",
           "reason": "Status: 5.1.1 user unknown", "raw_url": "/api/ingest/messages/intake-1/raw"}
    with database.transaction() as session:
        assert handlers.record_bounce(session, outbox, {**dsn, "bounced_message_ids": ["other@elsewhere"]}) == []
        assert handlers.record_bounce(session, outbox, {**dsn, "bounced_message_ids": []}) == []
        [bounced] = handlers.record_bounce(session, outbox, dsn)
        assert bounced.state == "bounced" and bounced.bounce_reason == "Status: 5.1.1 user unknown"
        assert bounced.bounce_intake_id == "intake-1"
    assert events(database)[-1] == "email_bounced"


def test_templates_and_snippets_are_checked_when_saved(database):
    conversations = Conversations()
    template = handlers.create_saved(database, conversations, TEMPLATES,
                                     {"name": "Welcome", "subject": "Hi {{ contact.first_name }}"}, ADMIN)
    handlers.create_saved(database, conversations, SNIPPETS,
                          {"name": "Thanks", "shortcut": "thx", "text": "Thank you!"}, ADMIN)
    for values, field in (({"name": "Empty"}, "html"), ({"name": "Broken", "html": "{{ oops"}, "html"),
                          ({"name": "Bad subject", "subject": "a\nBcc: x@y.z"}, "subject")):
        with pytest.raises(HttpError) as error:
            handlers.create_saved(database, conversations, TEMPLATES, values, ADMIN)
        assert error.value.status == 400 and error.value.details == {"field": field}, values
    with pytest.raises(Conflict):
        handlers.create_saved(database, conversations, SNIPPETS,
                              {"name": "Again", "shortcut": "thx", "text": "Thanks again"}, ADMIN)
    with pytest.raises(NotFound):
        handlers.update_saved(database, conversations, SNIPPETS, "no-such-snippet", {"text": "x"}, ADMIN)
    handlers.update_saved(database, conversations, TEMPLATES, template["id"],
                          {"subject": "Hello {{ contact.first_name }}"}, ADMIN)
    with database.transaction() as session:
        assert [t.subject for t in session.scalars(select(Template))] == ["Hello {{ contact.first_name }}"]
        assert [s.shortcut for s in session.scalars(select(Snippet))] == ["thx"]


def test_a_saved_template_renders_with_a_conversations_tokens(database):
    conversations = Conversations()
    template = handlers.create_saved(database, conversations, TEMPLATES, {
        "name": "Reply", "subject": "Re: {{ conversation.subject }}",
        "html": "<p>Hi {{ contact.first_name }}<script>x</script></p>"}, ADMIN)

    def render(settings=SETTINGS, caller=AGENT, args=None):
        return handlers.render_saved(database, conversations, TEMPLATES, template["id"],
                                     args or {"conversation_id": "conv-1"}, caller, settings)

    assert render() == {"html": "<p>Hi Ada</p>", "text": None, "subject": "Re: Order #42"}
    handlers.update_saved(database, conversations, TEMPLATES, template["id"], {"text": "{{ contact.phone }}"}, ADMIN)
    with pytest.raises(HttpError, match="contact.phone"):
        render()
    lenient = dataclasses.replace(SETTINGS, template_on_missing="empty")
    handlers.update_saved(database, conversations, TEMPLATES, template["id"], {"text": "Call {{ contact.phone }}"},
                          ADMIN)
    assert render(lenient)["text"] == "Call "


def test_rendering_with_a_conversation_or_inbox_the_caller_may_not_view_is_a_404(database):
    conversations = Conversations()
    template = handlers.create_saved(database, conversations, TEMPLATES,
                                     {"name": "Reply", "subject": "Re: {{ conversation.subject }}",
                                      "on_missing": "empty"}, ADMIN)
    stranger = Principal("stranger")
    for args in ({"conversation_id": "conv-1"}, {"inbox_id": "inbox-1"}):
        with pytest.raises(NotFound):
            handlers.render_saved(database, conversations, TEMPLATES, template["id"], args, stranger, SETTINGS)
        # viewing is enough: an account-wide admin who is not a member renders
        auditor = Principal("auditor", roles=frozenset({"account_access"}))
        assert handlers.render_saved(database, conversations, TEMPLATES, template["id"], args, auditor, SETTINGS)
    # without a conversation, nothing of an inbox is read: anyone signed in renders an account-wide one
    assert handlers.render_saved(database, conversations, TEMPLATES, template["id"], {}, stranger, SETTINGS) == {
        "html": None, "text": None, "subject": "Re: "}


def test_scopes_decide_who_sees_lists_renders_and_manages(database):
    conversations = Conversations()
    agent_2 = Principal("agent-2")
    auditor = Principal("auditor", roles=frozenset({"account_access"}))
    account = handlers.create_saved(database, conversations, TEMPLATES, {"name": "A", "text": "a"}, ADMIN)
    assert account["scope"] == "account" and account["owner_user_id"] is None
    with pytest.raises(Forbidden, match="super admins"):
        handlers.create_saved(database, conversations, TEMPLATES, {"name": "A2", "text": "a"}, AGENT)
    inbox = handlers.create_saved(database, conversations, TEMPLATES,
                                  {"name": "I", "text": "i", "inbox_id": "inbox-1"}, AGENT)
    assert inbox["scope"] == "inbox"
    with pytest.raises(NotFound, match="no inbox inbox-1"):  # may not see the inbox: as if it did not exist
        handlers.create_saved(database, conversations, TEMPLATES, {"name": "I2", "text": "i", "inbox_id": "inbox-1"},
                              agent_2)
    with pytest.raises(Forbidden, match="members"):  # views the inbox, is not a member
        handlers.create_saved(database, conversations, TEMPLATES, {"name": "I3", "text": "i", "inbox_id": "inbox-1"},
                              auditor)
    mine = handlers.create_saved(database, conversations, TEMPLATES, {"name": "P", "text": "p", "scope": "personal"},
                                 agent_2)
    assert (mine["scope"], mine["owner_user_id"]) == ("personal", "agent-2")

    def names(caller):
        return [t["name"] for t in handlers.list_saved(database, conversations, TEMPLATES, caller, None)["items"]]

    assert names(AGENT) == ["A", "I"]
    assert names(agent_2) == ["A", "P"]
    assert names(auditor) == ["A", "I"]  # views every inbox, never someone's personal ones
    assert names(ADMIN) == ["A", "I"]
    with pytest.raises(NotFound):
        handlers.read_saved(database, conversations, TEMPLATES, inbox["id"], agent_2)
    with pytest.raises(NotFound):
        handlers.render_saved(database, conversations, TEMPLATES, mine["id"], {}, AGENT, SETTINGS)
    with pytest.raises(NotFound):
        handlers.delete_saved(database, conversations, TEMPLATES, mine["id"], ADMIN)
    with pytest.raises(Forbidden):
        handlers.update_saved(database, conversations, TEMPLATES, account["id"], {"text": "b"}, AGENT)
    with pytest.raises(Forbidden):
        handlers.delete_saved(database, conversations, TEMPLATES, inbox["id"], auditor)
    # moving one's own personal template into an inbox needs membership of that inbox
    with pytest.raises(NotFound):
        handlers.update_saved(database, conversations, TEMPLATES, mine["id"], {"scope": "inbox",
                                                                              "inbox_id": "inbox-1"}, agent_2)
    shared = handlers.update_saved(database, conversations, TEMPLATES, inbox["id"], {"scope": "personal"}, AGENT)
    assert (shared["scope"], shared["owner_user_id"]) == ("personal", "agent-1")
    assert names(auditor) == ["A"]
    handlers.delete_saved(database, conversations, TEMPLATES, shared["id"], AGENT)
    assert names(AGENT) == ["A"]


def test_snippet_shortcuts_are_unique_per_owner(database):
    conversations = Conversations()
    for caller in (AGENT, Principal("agent-2")):
        handlers.create_saved(database, conversations, SNIPPETS,
                              {"name": "Thanks", "shortcut": "thx", "text": "x", "scope": "personal"}, caller)
    handlers.create_saved(database, conversations, SNIPPETS, {"name": "Thanks", "shortcut": "thx", "text": "x"}, ADMIN)
    with pytest.raises(Conflict, match="thx"):
        handlers.create_saved(database, conversations, SNIPPETS,
                              {"name": "Again", "shortcut": "thx", "text": "y", "scope": "personal"}, AGENT)


def test_a_send_may_use_only_a_template_the_caller_may_see(database, outbox):
    conversations = Conversations()
    theirs = handlers.create_saved(database, conversations, TEMPLATES,
                                   {"name": "P", "subject": "Secret", "text": "p", "scope": "personal"},
                                   Principal("agent-2"))
    body = {"to": ["ada@example.com"], "template_id": theirs["id"]}
    with pytest.raises(HttpError) as error:
        handlers.send(database, outbox, SETTINGS, conversations, "compose", INBOX["inbox_id"], body, None, AGENT)
    assert error.value.status == 400 and error.value.details == {"field": "template_id"}
    assert "no template" in error.value.message
    mine = handlers.create_saved(database, conversations, TEMPLATES,
                                 {"name": "Mine", "subject": "Hello", "text": "hi", "scope": "personal"}, AGENT)
    status, email = handlers.send(database, outbox, SETTINGS, conversations, "compose", INBOX["inbox_id"],
                                  {**body, "template_id": mine["id"]}, None, AGENT)
    assert status == 202 and email["subject"] == "Hello"


def test_email_sent_lists_the_attachments_the_email_has_and_the_attempt_is_finished(database, outbox):
    """The claim notes whether an email has attachments; record_outcome looks for them only then
    (issue #16), and updates the delivery attempt without reading it first."""
    compose(database, outbox, Conversations(), {"to": ["ada@example.com"], "subject": "Invoice", "text": "Attached",
                                                "attachments": [{"filename": "a.txt", "content_base64": "YQ=="}]})
    compose(database, outbox, Conversations(), {"to": ["bob@example.com"], "subject": "Plain", "text": "None"})
    for _ in range(2):
        claimed = claim(database, outbox)
        assert record(database, outbox, claimed, Outcome("sent", 250, "2.0.0 ok", "Q")) == "sent"
    with database.transaction() as session:
        sent = {row.envelope["data"]["subject"]: row.envelope["data"]["attachments"] for row in session.execute(
            select(models.outbox).where(models.outbox.c.event_type == "email_sent"))}
        attempts = session.execute(select(models.DeliveryAttempt)).scalars().all()
    assert [a["filename"] for a in sent["Invoice"]] == ["a.txt"] and sent["Plain"] == []
    assert len(attempts) == 2 and all(a.outcome == "sent" and a.finished_at and a.smtp_code == 250 for a in attempts)
