"""Merging contacts and removing addresses when requests race, through the HTTP API of a real
contacts process (RabbitMQ, PostgreSQL): the database decides, nobody gets a 500, and no contact
is left without an address or with another's."""

import concurrent.futures
import threading
import uuid

import pytest

from mailroom_testing.specs import CONTACTS
from mailroom_testing.tokens import auth

pytestmark = pytest.mark.integration

AGENT = auth("agent-1")


@pytest.fixture
def contacts(stack_factory):
    return stack_factory([CONTACTS])


def create(stack, name, *emails):
    status, contact = stack.post("/api/contacts", {"name": name, "emails": list(emails)}, headers=AGENT)
    assert status == 201, contact
    return contact


def race(requests):
    barrier = threading.Barrier(len(requests))

    def run(request):
        barrier.wait()
        return request()

    with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(run, requests))


def test_removing_a_contacts_last_two_addresses_at_once_leaves_it_one(contacts):
    for _ in range(5):
        tag = uuid.uuid4().hex[:8]
        bea = create(contacts, "Bea", f"bea-{tag}@example.com", f"bea-{tag}@work.example")
        answers = race([lambda e=e: contacts.request("DELETE", f"/api/contacts/{bea['id']}/emails/{e}", headers=AGENT)
                        for e in bea["emails"]])
        assert sorted(status for status, _ in answers) == [200, 409], answers
        assert len(contacts.get(f"/api/contacts/{bea['id']}")[1]["emails"]) == 1


def test_two_merges_of_the_same_pair_in_opposite_directions_one_wins(contacts):
    for _ in range(5):
        tag = uuid.uuid4().hex[:8]
        ada, eve = create(contacts, "Ada", f"ada-{tag}@example.com"), create(contacts, "Eve", f"eve-{tag}@example.com")
        answers = race([
            lambda: contacts.post(f"/api/contacts/{ada['id']}/merge", {"contact_id": eve["id"]}, headers=AGENT),
            lambda: contacts.post(f"/api/contacts/{eve['id']}/merge", {"contact_id": ada["id"]}, headers=AGENT)])
        assert sorted(status for status, _ in answers) == [200, 404], answers
        [(_, survivor)] = [(s, body) for s, body in answers if s == 200]
        assert sorted(survivor["emails"]) == sorted([f"ada-{tag}@example.com", f"eve-{tag}@example.com"])
        for email in survivor["emails"]:
            assert contacts.get(f"/api/contacts?email={email}")[1]["items"][0]["id"] == survivor["id"]


def test_an_address_added_to_a_contact_being_merged_away_is_never_lost(contacts):
    for _ in range(5):
        tag = uuid.uuid4().hex[:8]
        ada, eve = create(contacts, "Ada", f"ada-{tag}@example.com"), create(contacts, "Eve", f"eve-{tag}@example.com")
        new = f"new-{tag}@example.com"
        merge, add = race([
            lambda: contacts.post(f"/api/contacts/{ada['id']}/merge", {"contact_id": eve["id"]}, headers=AGENT),
            lambda: contacts.post(f"/api/contacts/{eve['id']}/emails", {"email": new}, headers=AGENT)])
        assert merge[0] == 200, merge
        assert add[0] in (201, 404, 409), add  # added before the merge (then moved), or eve was gone: never 500
        holders = contacts.get(f"/api/contacts?email={new}")[1]["items"]
        if add[0] == 201:
            assert [h["id"] for h in holders] == [ada["id"]]  # it moved with the merge
        else:
            assert holders == []
