"""The suppression list with a real database session (an SQLite file) and a stand-in for
conversations: a 5xx at RCPT TO or a DSN's hard bounce suppresses the recipient for the inbox; a
send naming it is refused (422) naming it; an email queued before the bounce leaves it out; a
member lifts it; a DSN returns the email for the recipients it names only. No servers."""

import pytest
from sqlalchemy import select

from mailroom_shared.auth import Principal
from mailroom_shared.db import Database
from mailroom_shared.http import HttpError, NotFound
from mailroom_shared.messaging.outbox import Outbox
from outbound import handlers, models, suppressions
from outbound.domain import suppression
from outbound.domain.delivery import Outcome
from outbound.models import Email, Suppression
from outbound.settings import Settings

PUBLISHES = {"email_queued": 1, "email_sent": 1, "email_deferred": 1, "email_failed": 1, "email_bounced": 1}
INBOX = {"inbox_id": "inbox-1", "name": "Support", "primary_address": "support@mailroom.test",
         "identities": [{"email": "support@mailroom.test", "name": "Support Team"}]}
OTHER_INBOX = {**INBOX, "inbox_id": "inbox-2", "identities": [{"email": "billing@mailroom.test", "name": "B"}]}
SETTINGS = Settings(message_id_domain="mailroom.test", max_attempts=3, retry_base_seconds=0.0)
AGENT = Principal("agent-1")


class Conversations:
    def inbox(self, inbox_id, principal=None, *, view=False):
        return {"inbox-1": INBOX, "inbox-2": OTHER_INBOX}[inbox_id]


@pytest.fixture
def database(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'outbound.db'}")
    models.Base.metadata.create_all(database.engine)
    yield database
    database.dispose()


@pytest.fixture
def outbox():
    return Outbox(models.outbox, publishes=PUBLISHES)


def compose(database, outbox, to, cc=(), inbox="inbox-1", key=None):
    body = {"to": list(to), "cc": list(cc), "subject": "Hello", "text": "Hi"}
    return handlers.send(database, outbox, SETTINGS, Conversations(), "compose", inbox, body, key)


def deliver(database, outbox, outcome):
    with database.transaction() as session:
        claimed = handlers.claim_next(session, outbox, SETTINGS)
    with database.transaction() as session:
        state = handlers.record_outcome(session, outbox, claimed, outcome, SETTINGS).state
    return claimed, state


def events(database, name=None):
    with database.transaction() as session:
        rows = session.execute(select(models.outbox).order_by(models.outbox.c.id)).all()
    return [(r.event_type, r.envelope["data"]) for r in rows if name is None or r.event_type == name]


def listed(database, inbox="inbox-1", include_lifted=False):
    with database.transaction() as session:
        return [s["address"] for s in suppressions.list_page(session, inbox, include_lifted, None, 50)["items"]]


# --- the rules ------------------------------------------------------------------------------------

def test_addresses_are_compared_normalised_and_hostile_ones_are_refused():
    assert suppression.normalised("  <Bob@Example.COM> ") == "bob@example.com"
    assert suppression.normalised("zoë@bücher.example") == "zoë@xn--bcher-kva.example"
    for bad in ["", "bob", "@example.com", "bob@", "bob@example.com\r\nBcc: x@y.z", "a b@example.com",
                "a@b@c", "x" * 400 + "@example.com", "bob@example.com,eve@example.com", "bob\x00@example.com"]:
        with pytest.raises(suppression.InvalidAddress):
            suppression.normalised(bad)
    with pytest.raises(suppression.InvalidAddress):
        suppression.normalised(None)


def test_only_a_5xx_at_rcpt_to_names_a_hard_bounce():
    sent = ["ada@example.com", "bob@example.com", "carol@example.com"]
    found = suppression.smtp_refusals(sent, [
        "bob@example.com: 550 5.1.1 <bob@example.com>: Recipient address rejected",
        "carol@example.com: 450 4.2.0 greylisted", "ok"])
    assert [(b.email, b.status) for b in found] == [("bob@example.com", "550")]
    assert "5.1.1" in found[0].reason
    # everyone refused: the failed email's response lists them
    found = suppression.smtp_refusals(sent[:2], [
        "RCPT TO refused: ada@example.com: 550 no such user; bob@example.com: 553 mailbox name not allowed"])
    assert [(b.email, b.status) for b in found] == [("ada@example.com", "550"), ("bob@example.com", "553")]
    # a 5xx to DATA (content refused) names nobody
    assert suppression.smtp_refusals(sent, ["DATA: 554 5.7.1 message refused as spam"]) == []
    # an address that is a prefix of another is not confused with it
    assert suppression.smtp_refusals(["b@example.co"], ["b@example.com: 550 no"]) == []


def test_a_dsn_verdict_names_the_failed_recipients_and_ignores_delays():
    sent = ["ada@example.com", "Bob@Example.com"]
    verdict = suppression.dsn_verdict(sent, [
        {"email": "bob@example.com", "action": "failed", "status": "5.1.1", "diagnostic": "smtp; 550 5.1.1 unknown"},
        {"email": "ada@example.com", "action": "delayed", "status": "4.4.1"}], "5.1.1")
    assert [b.email for b in verdict.bounced] == ["Bob@Example.com"] and verdict.hard == {"bob@example.com"}
    assert not verdict.unknown and verdict.bounced[0].reason == "smtp; 550 5.1.1 unknown"
    assert suppression.dsn_verdict(sent, [{"email": "ada@example.com", "action": "delayed", "status": "4.4.1"}],
                                   "x") is None
    # a failure with a 4.x.x status is a bounce for that recipient but not a hard one: not suppressed
    soft = suppression.dsn_verdict(sent, [{"email": "ada@example.com", "action": "failed", "status": "4.2.2"}], "x")
    assert [b.email for b in soft.bounced] == ["ada@example.com"] and soft.hard == set()
    # none of ours named: with several recipients, who is unknown (the whole email, as before)
    assert suppression.dsn_verdict(sent, [{"email": "alias@else.example", "action": "failed", "status": "5.1.1"}],
                                   "x").unknown
    # ... with one recipient it can only be that one
    one = suppression.dsn_verdict(["ada@example.com"], [{"email": "a@else.example", "action": "failed",
                                                         "status": "5.1.1"}], "x")
    assert one.hard == {"ada@example.com"}
    # hostile report entries are skipped, not trusted
    junk = [None, "x", {"email": None, "action": "failed"}, {"email": "ada@example.com\r\nX: y", "action": "failed"}]
    assert suppression.dsn_verdict(sent, junk, "x").unknown


# --- sending and delivery ---------------------------------------------------------------------------

def test_a_5xx_for_one_recipient_suppresses_it_and_a_send_naming_it_is_refused(database, outbox):
    compose(database, outbox, ["ada@example.com"], cc=["bob@example.com"])
    claimed, state = deliver(database, outbox, Outcome(
        "sent", 250, "2.0.0 queued as Q1", "Q1", refused=["bob@example.com: 550 5.1.1 no such user"]))
    assert state == "sent" and claimed.recipients == ["ada@example.com", "bob@example.com"]
    assert listed(database) == ["bob@example.com"]
    for to, cc in ((["BOB@example.com"], []), (["carol@example.com"], ["bob@example.com"])):
        with pytest.raises(HttpError) as error:
            compose(database, outbox, to, cc=cc)
        assert error.value.status == 422 and error.value.code == "recipient_suppressed"
        assert "bob@example.com" in error.value.message and "5.1.1" in error.value.message
        assert [s["address"] for s in error.value.details["suppressed"]] == ["bob@example.com"]
    assert [e for e, _ in events(database)] == ["email_queued", "email_sent"]  # nothing more queued
    # per inbox: another inbox still sends to bob
    assert compose(database, outbox, ["bob@example.com"], inbox="inbox-2")[0] == 202
    assert listed(database, "inbox-2") == []


def test_every_recipient_refused_permanently_suppresses_each_and_a_retry_leaves_them_out(database, outbox):
    compose(database, outbox, ["ada@example.com", "bob@example.com", "carol@example.com"])
    _, state = deliver(database, outbox, Outcome("temporary", 451, "RCPT TO refused: ada@example.com: 550 no; "
                                                                   "bob@example.com: 451 later; carol@example.com: "
                                                                   "452 full"))
    assert state == "deferred" and listed(database) == ["ada@example.com"]  # a 4xx suppresses nobody
    claimed, state = deliver(database, outbox, Outcome("permanent", 550, "RCPT TO refused: bob@example.com: 550 no; "
                                                                         "carol@example.com: 550 no"))
    assert claimed.recipients == ["bob@example.com", "carol@example.com"]  # the retry leaves ada out
    assert state == "failed" and sorted(listed(database)) == ["ada@example.com", "bob@example.com",
                                                              "carol@example.com"]


def test_an_email_queued_before_its_recipient_bounced_leaves_it_out_or_fails(database, outbox):
    compose(database, outbox, ["ada@example.com"], cc=["bob@example.com"])
    compose(database, outbox, ["bob@example.com"])
    with database.transaction() as session:
        suppressions.suppress(session, "inbox-1", suppression.HardBounce("bob@example.com", "5.1.1", "unknown"),
                              "dsn", None)
    claimed, state = deliver(database, outbox, Outcome("sent", 250, "ok", "Q1"))
    assert claimed.recipients == ["ada@example.com"] and state == "sent"
    with database.transaction() as session:
        assert handlers.claim_next(session, outbox, SETTINGS).raw == b""  # nobody left: failed, not sent
        failed = session.execute(select(Email).where(Email.state == "failed")).scalar_one()
        assert "suppression list" in failed.last_error and failed.attempts == 0


def test_a_member_lifts_a_suppression_once_and_the_address_may_be_sent_to_again(database, outbox):
    with database.transaction() as session:
        bounce = suppression.HardBounce("bob@example.com", "550", "550 no such user")
        suppressions.suppress(session, "inbox-1", bounce, "smtp", None)
        row = suppressions.suppress(session, "inbox-1", bounce, "smtp", None)  # the same bounce again: counted
        assert row.bounces == 2
    with database.transaction() as session:
        with pytest.raises(HttpError) as error:
            suppressions.lift(session, "inbox-1", "not an address", AGENT)
        assert error.value.status == 400
        with pytest.raises(NotFound):
            suppressions.lift(session, "inbox-2", "bob@example.com", AGENT)  # another inbox's list
        lifted = suppressions.lift(session, "inbox-1", "Bob@Example.com", AGENT)
        assert lifted["lifted_by"] == "agent-1" and lifted["lifted_at"]
    with database.transaction() as session, pytest.raises(NotFound):
        suppressions.lift(session, "inbox-1", "bob@example.com", AGENT)  # lifting twice: 404
    assert listed(database) == [] and listed(database, include_lifted=True) == ["bob@example.com"]
    assert compose(database, outbox, ["bob@example.com"])[0] == 202
    with database.transaction() as session:  # bounced again: suppressed again
        suppressions.suppress(session, "inbox-1", bounce, "smtp", None)
        assert session.execute(select(Suppression)).scalar_one().lifted_at is None
    assert listed(database) == ["bob@example.com"]


# --- bounces (DSN) ----------------------------------------------------------------------------------

def dsn(email, reported, intake="intake-1"):
    """delivery_report_received's data for a DSN returning `email`."""
    return {"bounced_message_ids": [f"<{email['message_id']}>"], "intake_id": intake,
            "reason": "Delivery failed.", "raw_url": f"/api/ingest/messages/{intake}/raw",
            "bounced_recipients": reported}


def test_a_dsn_for_one_of_two_recipients_bounces_only_that_one_and_a_repeat_changes_nothing(database, outbox):
    _, email = compose(database, outbox, ["ada@example.com"], cc=["bob@example.com"])
    deliver(database, outbox, Outcome("sent", 250, "ok", "Q1"))
    bob = {"email": "bob@example.com", "action": "failed", "status": "5.1.1", "diagnostic": "550 5.1.1 unknown"}
    with database.transaction() as session:  # a delay report is not a bounce
        assert handlers.record_bounce(session, outbox, dsn(email, [
            {"email": "ada@example.com", "action": "delayed", "status": "4.4.1"}])) == []
        [partial] = handlers.record_bounce(session, outbox, dsn(email, [bob]))
        assert partial.state == "sent" and [r["email"] for r in partial.bounced_recipients] == ["bob@example.com"]
        assert handlers.record_bounce(session, outbox, dsn(email, [bob], "intake-2")) == []  # again: nothing
    [(_, first)] = events(database, "email_bounced")
    assert first["partial"] is True and first["recipients"] == [
        {"email": "bob@example.com", "status": "5.1.1", "reason": "550 5.1.1 unknown", "suppressed": True}]
    assert listed(database) == ["bob@example.com"]
    with database.transaction() as session:  # now ada too: every recipient bounced
        [whole] = handlers.record_bounce(session, outbox, dsn(email, [
            {"email": "ada@example.com", "action": "failed", "status": "5.2.2", "diagnostic": "mailbox full"}]))
        assert whole.state == "bounced" and whole.bounce_reason == "mailbox full"
    last = events(database, "email_bounced")[-1][1]
    assert last["partial"] is False and [r["email"] for r in last["recipients"]] == ["ada@example.com"]


def test_a_dsn_without_per_recipient_fields_bounces_the_whole_email_as_before(database, outbox):
    _, email = compose(database, outbox, ["ada@example.com"], cc=["bob@example.com"])
    deliver(database, outbox, Outcome("sent", 250, "ok", "Q1"))
    with database.transaction() as session:
        [bounced] = handlers.record_bounce(session, outbox, {**dsn(email, []), "reason": "Status: 5.1.1 unknown"})
        assert bounced.state == "bounced"
    with database.transaction() as session:  # the same DSN again (e.g. by the old and new path in an upgrade)
        assert handlers.record_bounce(session, outbox, {**dsn(email, [], "intake-2"), "reason": "again"}) == []
    assert len(events(database, "email_bounced")) == 1
    data = events(database, "email_bounced")[-1][1]
    assert data["partial"] is False and data["recipients"] == [] and listed(database) == []


def test_the_email_view_lists_the_bounced_recipients(database, outbox):
    _, email = compose(database, outbox, ["ada@example.com", "bob@example.com"])
    deliver(database, outbox, Outcome("sent", 250, "ok", "Q1"))
    with database.transaction() as session:
        handlers.record_bounce(session, outbox, dsn(email, [{"email": "bob@example.com", "action": "failed",
                                                             "status": "5.1.1"}]))
    with database.transaction() as session:
        view = handlers.queries.email_view(session, session.get(Email, email["id"]))
    assert view["state"] == "sent" and view["bounced_recipients"][0]["email"] == "bob@example.com"
