"""outbound's use cases called directly with a real database session (an SQLite file) and a stand-in
for conversations: sending with Idempotency-Key, a delivery's claim and outcome, bounces, templates
and snippets. No servers."""

import dataclasses
from email import policy
from email.parser import BytesParser

import pytest
from sqlalchemy import select

from mailroom_shared.db import Database
from mailroom_shared.http import Conflict, HttpError, NotFound
from mailroom_shared.messaging.outbox import Outbox
from outbound import handlers, models
from outbound.domain.delivery import Outcome
from outbound.models import Email, Snippet, Template
from outbound.settings import Settings

PUBLISHES = {"email_queued": 1, "email_sent": 1, "email_deferred": 1, "email_failed": 1, "email_bounced": 1}
INBOX = {"inbox_id": "inbox-1", "name": "Support", "primary_address": "support@mailroom.test",
         "identities": [{"email": "support@mailroom.test", "name": "Support Team"},
                        {"email": "sales@mailroom.test", "name": "Sales"}]}
SETTINGS = Settings(message_id_domain="mailroom.test", max_attempts=2, retry_base_seconds=0.0)


class Conversations:
    """Answers like conversations' RPC for one inbox and one conversation; counts the calls."""

    def __init__(self):
        self.calls = 0

    def inbox(self, inbox_id, principal=None):
        self.calls += 1
        if inbox_id != INBOX["inbox_id"]:
            raise NotFound(f"no inbox {inbox_id}")
        return INBOX

    def reply_context(self, conversation_id, message_id, include_thread=False, principal=None):
        self.calls += 1
        return {"conversation": {"id": conversation_id, "subject": "Order #42", "inbox_id": INBOX["inbox_id"],
                                 "reply_token": "tok", "contact": {"name": "Ada Lovelace", "email": "ada@example.com"}},
                "inbox": INBOX, "channel_address": "support@mailroom.test",
                "reply_address": "support+tok@mailroom.test", "message": None}


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


def test_a_dsn_bounces_the_email_it_returns_and_other_mail_changes_nothing(database, outbox):
    _, email = compose(database, outbox, Conversations())
    record(database, outbox, claim(database, outbox), Outcome("sent", 250, "ok", "Q1"))
    dsn = {"flags": {"bounce": True}, "bounced_message_ids": [f"<{email['message_id']}>"], "intake_id": "intake-1",
           "text": "Delivery failed.\nStatus: 5.1.1 user unknown\n", "raw_url": None}
    with database.transaction() as session:
        assert handlers.record_bounce(session, outbox, {**dsn, "flags": {}}) == []
        [bounced] = handlers.record_bounce(session, outbox, dsn)
        assert bounced.state == "bounced" and bounced.bounce_reason == "Status: 5.1.1 user unknown"
    assert events(database)[-1] == "email_bounced"


def test_templates_and_snippets_are_checked_when_saved(database):
    with database.transaction() as session:
        template = handlers.save_template(session, {"name": "Welcome", "subject": "Hi {{ contact.first_name }}"})
        handlers.save_snippet(session, {"name": "Thanks", "shortcut": "thx", "text": "Thank you!"})
    for values, field in (({"name": "Empty"}, "html"), ({"name": "Broken", "html": "{{ oops"}, "html"),
                          ({"name": "Bad subject", "subject": "a\nBcc: x@y.z"}, "subject")):
        with pytest.raises(HttpError) as error, database.transaction() as session:
            handlers.save_template(session, values)
        assert error.value.status == 400 and error.value.details == {"field": field}, values
    with pytest.raises(Conflict), database.transaction() as session:
        handlers.save_snippet(session, {"name": "Again", "shortcut": "thx", "text": "Thanks again"})
    with pytest.raises(NotFound), database.transaction() as session:
        handlers.save_snippet(session, {"text": "x"}, "no-such-snippet")
    with database.transaction() as session:
        handlers.save_template(session, {"subject": "Hello {{ contact.first_name }}"}, template.id)
        assert [t.subject for t in session.scalars(select(Template))] == ["Hello {{ contact.first_name }}"]
        assert [s.shortcut for s in session.scalars(select(Snippet))] == ["thx"]


def test_a_saved_template_renders_with_a_conversations_tokens(database):
    with database.transaction() as session:
        template = handlers.save_template(session, {"name": "Reply", "subject": "Re: {{ conversation.subject }}",
                                                    "html": "<p>Hi {{ contact.first_name }}<script>x</script></p>"})
    tokens = handlers.render_tokens(Conversations(), {"conversation_id": "conv-1"})
    with database.transaction() as session:
        rendered = handlers.render_saved(session, Template, template.id, "template", tokens, SETTINGS)
        assert rendered == {"html": "<p>Hi Ada</p>", "text": None, "subject": "Re: Order #42"}
        with pytest.raises(HttpError, match="contact.phone"):
            handlers.save_template(session, {"text": "{{ contact.phone }}"}, template.id)
            handlers.render_saved(session, Template, template.id, "template", tokens, SETTINGS)
    lenient = dataclasses.replace(SETTINGS, template_on_missing="empty")
    with database.transaction() as session:
        handlers.save_template(session, {"text": "Call {{ contact.phone }}"}, template.id)
        assert handlers.render_saved(session, Template, template.id, "template", tokens, lenient)["text"] == "Call "
