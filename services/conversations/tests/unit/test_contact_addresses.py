"""What conversations knows of a contact's addresses follows contacts' events: created, then
updated (an address gained is the customer's, one given up no longer is)."""

from sqlalchemy import select

from conversations import handlers
from conversations.models import KnownContact


def known(database) -> dict[str, str]:
    with database.transaction() as session:
        rows = session.execute(select(KnownContact.email, KnownContact.contact_id))
        return {row.email: row.contact_id for row in rows}


def test_an_update_learns_new_addresses_and_forgets_removed_ones(database):
    with database.transaction() as session:
        handlers.learn_contact(session, "c1", ["Ada@Example.com"])
    with database.transaction() as session:
        handlers.update_contact(session, "c1", ["ada@home.example"], removed=["ada@example.com"])
    assert known(database) == {"ada@home.example": "c1"}


def test_a_removed_address_another_contact_took_stays_with_it(database):
    with database.transaction() as session:
        handlers.learn_contact(session, "c1", ["shared@example.com"])
        handlers.learn_contact(session, "c2", ["shared@example.com"])  # moved to c2 meanwhile
    with database.transaction() as session:
        handlers.update_contact(session, "c1", ["c1@example.com"], removed=["shared@example.com"])
    assert known(database) == {"shared@example.com": "c2", "c1@example.com": "c1"}
