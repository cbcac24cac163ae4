"""outbound's part of a contact's erasure (erasure.py) against an SQLite file: what was sent to the
person loses its content (one still queued is failed, never sent), their suppression goes, anyone
else's email stays, hostile addresses erase nothing, and a redelivery is confirmed again."""

import datetime as dt
import uuid

import pytest
from sqlalchemy import select

from mailroom_shared.db import Database
from mailroom_shared.messaging.outbox import Outbox
from outbound import erasure, models
from outbound.models import Attachment, Email, Suppression

OUTBOX = Outbox(models.outbox, publishes={"contact_sent_mail_erased": 1})


@pytest.fixture
def database(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'outbound.db'}")
    models.Base.metadata.create_all(database.engine)
    yield database
    database.dispose()


def sent(session, to, state="sent", cc=()):
    email = Email(id=str(uuid.uuid4()), kind="reply", inbox_id="inbox-1", conversation_id=str(uuid.uuid4()),
                  rfc_message_id=f"{uuid.uuid4()}@mailroom.test", from_address={"email": "support@mailroom.test"},
                  to=[{"email": to, "name": "Someone"}], cc=[{"email": c} for c in cc], subject=f"About {to}",
                  text=f"Dear {to}, account 4711", html=None, raw=f"To: {to}\r\n\r\naccount 4711".encode(),
                  state=state, created_at=dt.datetime.now(dt.UTC))
    session.add(email)
    session.add(Attachment(id=str(uuid.uuid4()), email_id=email.id, position=0, filename="contract.pdf",
                           content_type="application/pdf", size=3, sha256="0" * 64, disposition="attachment",
                           data=b"pdf"))
    return email.id


def test_mail_sent_to_the_person_loses_its_content_and_a_queued_one_is_never_sent(database):
    with database.transaction() as session:
        delivered = sent(session, "Ada@Customer.example")
        waiting = sent(session, "bob@customer.example", state="queued", cc=["ada@customer.example"])
        others = sent(session, "bob@customer.example")
        session.add(Suppression(id=str(uuid.uuid4()), inbox_id="inbox-1", address="ada@customer.example",
                                source="dsn", reason="550 no such user"))
    with database.transaction() as session:  # hostile: LIKE wildcards match only themselves
        assert erasure.erase_contact(session, OUTBOX, {
            "erasure_id": "e-0", "contact_id": "c-0", "emails": ["%@customer.example", "_"],
            "identities": [{"kind": "phone", "value": "%"}]})["emails"] == 0
    data = {"erasure_id": "e-1", "contact_id": "c-ada", "emails": ["ada@customer.example"]}
    with database.transaction() as session:
        erased = erasure.erase_contact(session, OUTBOX, data)
    assert erased == {"emails": 2, "attachments": 2, "chat_messages": 0, "suppressions": 1,
                      "auto_acknowledgements": 0, "pending_events": erased["pending_events"]}
    with database.transaction() as session:
        for email_id in (delivered, waiting):
            email = session.get(Email, email_id)
            assert (email.subject, email.text, email.to, email.cc, email.attachments) == ("[erased]", None, [], [], [])
            assert session.execute(select(Email.raw).where(Email.id == email_id)).scalar_one() == b""
        assert session.get(Email, delivered).state == "sent"
        assert (session.get(Email, waiting).state, session.get(Email, waiting).last_error) == ("failed", "erased")
        other = session.get(Email, others)
        assert other.text == "Dear bob@customer.example, account 4711" and len(other.attachments) == 1
        assert session.execute(select(Suppression)).scalars().all() == []
    with database.transaction() as session:  # redelivered: the same two rows, nothing left to erase in them
        assert erasure.erase_contact(session, OUTBOX, data)["attachments"] == 0


def pending(session, event_type, data, published=False):
    event_id = str(uuid.uuid4())
    session.execute(models.outbox.insert().values(
        event_id=event_id, event_type=event_type, attempts=0, created_at=dt.datetime.now(dt.UTC),
        published_at=dt.datetime.now(dt.UTC) if published else None,
        envelope={"id": event_id, "source": "mailroom/outbound", "type": f"mailroom.{event_type}.v1", "data": data}))
    return event_id


def test_the_persons_events_not_relayed_yet_are_dropped_and_no_one_elses(database):
    """An email_sent to her still in the outbox would put her back on a timeline after the erasure."""
    with database.transaction() as session:
        hers = pending(session, "email_sent", {"to": [{"email": "ADA@customer.example"}], "text": "4711"})
        as_cc = pending(session, "email_queued", {"to": [{"email": "bob@customer.example"}],
                                                   "cc": [{"email": "ada@customer.example", "name": "Ada"}]})
        bobs = pending(session, "email_sent", {"to": [{"email": "bob@customer.example"}]})
        lookalike = pending(session, "email_sent", {"to": [{"email": "xada@customer.example"}]})
        relayed = pending(session, "email_sent", {"to": [{"email": "ada@customer.example"}]}, published=True)
    data = {"erasure_id": "e-9", "contact_id": "c-ada", "emails": ["ada@customer.example"]}
    with database.transaction() as session:
        assert erasure.erase_contact(session, OUTBOX, data)["pending_events"] == 2
    with database.transaction() as session:
        left = set(session.execute(select(models.outbox.c.event_id)).scalars())
        confirmation = session.execute(select(models.outbox.c.envelope).where(
            models.outbox.c.event_type == "contact_sent_mail_erased")).scalar_one()
    assert hers not in left and as_cc not in left
    assert {bobs, lookalike, relayed} <= left
    assert confirmation["data"]["erased"]["pending_events"] == 2  # the confirmation itself goes out
