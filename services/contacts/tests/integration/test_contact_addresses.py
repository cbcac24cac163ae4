"""A contact's addresses through the HTTP API of a real contacts process (RabbitMQ, PostgreSQL):
every change is announced with all of the contact's addresses, and requests racing for one
address are decided by the database — one wins, the others get 409 naming the winner's
contact, never a 500."""

import concurrent.futures
import threading
import time
import urllib.parse

import pytest

from mailroom_testing.specs import CONTACTS
from mailroom_testing.subscriber import EventSubscriber
from mailroom_testing.tokens import NO_AUTH, auth

pytestmark = pytest.mark.integration

AGENT = auth("agent-1")  # any signed-in user: contacts are account-wide


@pytest.fixture
def contacts(stack_factory):
    return stack_factory([CONTACTS])


def create(stack, name, *emails):
    status, contact = stack.post("/api/contacts", {"name": name, "emails": list(emails)}, headers=AGENT)
    assert status == 201, contact
    return contact


def race(requests, threads=10):
    """Run the requests at the same moment (a barrier releases them together)."""
    barrier = threading.Barrier(len(requests))

    def run(request):
        barrier.wait()
        return request()

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return list(pool.map(run, requests))


def test_contact_created_and_contact_updated_carry_every_address(contacts):
    with EventSubscriber(contacts.amqp_uri, [("contacts.events", "#")]) as events:
        bea = create(contacts, "Bea", "Bea@Example.com", "bea@work.example", "BEA@example.com")
        assert bea["emails"] == ["bea@example.com", "bea@work.example"]
        [created] = events.wait_for("contact_created")
        assert created["data"]["emails"] == ["bea@example.com", "bea@work.example"]

        path = f"/api/contacts/{bea['id']}"
        status, changed = contacts.post(f"{path}/emails", {"email": "B.Smith@Example.org"}, headers=AGENT)
        assert status == 201 and changed["emails"] == ["bea@example.com", "bea@work.example", "b.smith@example.org"]
        status, again = contacts.post(f"{path}/emails", {"email": "b.smith@example.org"}, headers=AGENT)
        assert status == 200 and again["emails"] == changed["emails"]  # already hers: nothing changes
        status, changed = contacts.request("DELETE", f"{path}/emails/{urllib.parse.quote('BEA@example.com')}",
                                           headers=AGENT)
        assert status == 200 and changed["emails"] == ["bea@work.example", "b.smith@example.org"]
        status, changed = contacts.request("PATCH", path, {"name": "Beatrice Smith"}, headers=AGENT)
        assert status == 200 and changed["name"] == "Beatrice Smith"

        updates = events.wait_for("contact_updated", count=3)
    assert [(u["type"], u["source"]) for u in updates] == [("mailroom.contact_updated.v1", "mailroom/contacts")] * 3
    assert [(u["data"]["added"], u["data"]["removed"], u["data"]["emails"], u["data"]["name"]) for u in updates] == [
        (["b.smith@example.org"], [], ["bea@example.com", "bea@work.example", "b.smith@example.org"], "Bea"),
        ([], ["bea@example.com"], ["bea@work.example", "b.smith@example.org"], "Bea"),
        ([], [], ["bea@work.example", "b.smith@example.org"], "Beatrice Smith")]
    assert {u["data"]["updated_by"] for u in updates} == {"agent-1"}
    assert contacts.get("/api/contacts?email=bea@example.com")[1]["items"] == []  # free again

    # refusals: the last address, an address it does not have, another contact's address, no token
    cy = create(contacts, "Cy", "cy@example.com")
    status, body = contacts.request("DELETE", f"/api/contacts/{cy['id']}/emails/cy@example.com", headers=AGENT)
    assert status == 409 and "last address" in body["error"]["message"]
    assert contacts.request("DELETE", f"/api/contacts/{cy['id']}/emails/x@example.com", headers=AGENT)[0] == 404
    status, body = contacts.post(f"/api/contacts/{cy['id']}/emails", {"email": "bea@work.example"}, headers=AGENT)
    assert status == 409 and body["error"]["details"] == {"email": "bea@work.example", "contact_id": bea["id"]}
    assert contacts.post(f"/api/contacts/{cy['id']}/emails", {"email": "nope"}, headers=AGENT)[0] == 400
    assert contacts.post("/api/contacts/missing/emails", {"email": "z@example.com"}, headers=AGENT)[0] == 404
    assert contacts.post(f"/api/contacts/{cy['id']}/emails", {"email": "z@example.com"}, headers=NO_AUTH)[0] == 401
    assert contacts.request("PATCH", f"/api/contacts/{cy['id']}", {"name": "C"}, headers=NO_AUTH)[0] == 401


def test_ten_requests_adding_one_address_to_ten_contacts_one_wins_the_others_get_409_naming_it(contacts):
    rivals = [create(contacts, f"Rival {i}", f"rival{i}@example.com") for i in range(10)]
    with EventSubscriber(contacts.amqp_uri, [("contacts.events", "contact_updated")]) as events:
        answers = race([lambda c=c: contacts.post(f"/api/contacts/{c['id']}/emails", {"email": "Shared@Example.com"},
                                                  headers=AGENT) for c in rivals])
        statuses = sorted(status for status, _ in answers)
        assert statuses == [201] + [409] * 9, answers
        [winner] = [body for status, body in answers if status == 201]
        for status, body in answers:
            if status == 409:
                assert body["error"]["details"] == {"email": "shared@example.com", "contact_id": winner["id"]}
                assert winner["id"] in body["error"]["message"]
        [update] = events.wait_for("contact_updated")
        assert update["data"]["contact_id"] == winner["id"] and update["data"]["added"] == ["shared@example.com"]
        [holder] = contacts.get("/api/contacts?email=shared@example.com")[1]["items"]
        assert holder["id"] == winner["id"]
        time.sleep(1)
        assert len(events.of_type("contact_updated")) == 1  # the losers announced nothing

    # new contacts racing for the same addresses (given in different orders): one is created
    answers = race([lambda i=i: contacts.post("/api/contacts", {
        "name": f"New {i}", "emails": ["first@example.com", "second@example.com"][::1 if i % 2 else -1]},
        headers=AGENT) for i in range(10)])
    assert sorted(status for status, _ in answers) == [201] + [409] * 9, answers
    [created] = [body for status, body in answers if status == 201]
    assert {b["error"]["details"]["contact_id"] for s, b in answers if s == 409} == {created["id"]}
