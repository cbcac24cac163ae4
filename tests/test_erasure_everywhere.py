"""Contacts you can fix (issue #17), the gaps closed, across real processes (ingest, contacts,
conversations, outbound, notifier; RabbitMQ, PostgreSQL) and a real webhook receiver:

* an erasure reaches the notifier: webhook deliveries of the person's events that were not sent
  yet are dropped (the receiver, back up, never gets them), the ones sent are redacted in the
  log, a late copy of an event produced before the erasure is not delivered, the notifier's counts
  are in the erasure report, and nothing of that person is readable through any API, the delivery
  log included — while another customer's events keep flowing;
* a merge leaves a redirect: redelivered and late events of the merged contact (contact_created,
  contact_updated, message_added) do not bring it back or point anything at it, and mail from the
  merged address arriving while the merge runs ends on the survivor in contacts and conversations."""

import datetime as dt
import json
import threading
import urllib.parse
import uuid
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

from mailroom_shared.db import normalise_url
from mailroom_shared.events.envelope import build_envelope
from mailroom_testing.publishing import publish_envelopes, publish_event
from mailroom_testing.specs import CONTACTS, CONVERSATIONS, INGEST, NOTIFIER, OUTBOUND
from mailroom_testing.subscriber import EventSubscriber
from mailroom_testing.tokens import NO_AUTH, auth

pytestmark = pytest.mark.integration

SUPPORT = "support@mailroom.test"
MEMBER = auth("agent-1", email="agent@mailroom.test")
TRACES = ("lovelace", "ada@", "account 4711", "secret contract")


class Receiver:
    """A webhook receiver that answers 503 while `down`, and keeps what it accepted."""

    def __init__(self):
        self.accepted: list[dict] = []
        self.refused = 0
        self.down = False
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    status = 503 if receiver.down else 200
                    if status == 200:
                        receiver.accepted.append(json.loads(body))
                    else:
                        receiver.refused += 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def text(self) -> str:
        with self.lock:
            return json.dumps(self.accepted).lower()

    def types_about(self, needle: str) -> list[str]:
        with self.lock:
            return [e["type"] for e in self.accepted if needle in json.dumps(e).lower()]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def inboxes_file(tmp_path):
    path = tmp_path / "inboxes.yaml"
    path.write_text(f"""
inboxes:
  - key: support
    name: Support
    channels: [{{address: {SUPPORT}, name: Support, primary: true}}]
    members: [{{user_id: agent-1, email: agent@mailroom.test}}]
""")
    return str(path)


def start(stack_factory, tmp_path, services, **env):
    started = stack_factory(services, extra_env={
        "CONVERSATIONS_INBOXES_FILE": inboxes_file(tmp_path), "MAILROOM_MESSAGE_ID_DOMAIN": "mailroom.test",
        "MAILROOM_BLOCKING_DETECTION_SECONDS": "5", **env})
    started.eventually(lambda: started.get("/health/ingest")[1].get("channels") == 1, timeout=60)
    [inbox] = started.get("/api/inboxes")[1]["items"]
    started.inbox_id = inbox["id"]
    return started


def mail(sender: str, subject: str, body: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = SUPPORT
    message["Subject"] = subject
    message["Message-ID"] = f"<{uuid.uuid4()}@example.com>"
    message.set_content(body)
    return message.as_bytes()


def deliver(stack, raw: bytes) -> str:
    status, body = stack.post(f"/api/ingest/channels/{SUPPORT}/messages", raw=raw)
    assert status == 202, body
    return body["intake_ids"][0]


def contact_of(stack, email):
    items = stack.get(f"/api/contacts?email={urllib.parse.quote(email)}")[1]["items"]
    return items[0] if items else None


def conversations_with(stack, subject):
    page = stack.get(f"/api/inboxes/{stack.inbox_id}/conversations?view=all&limit=100")[1]
    return [c for c in page["items"] if c["subject"] == subject]


def contact_id_of(stack, conversation_id):
    return stack.get(f"/api/conversations/{conversation_id}")[1]["contact"]["contact_id"]


def plain(envelope: dict) -> dict:
    """An envelope as the subscriber got it, without the subscriber's own notes."""
    return {k: v for k, v in envelope.items() if not k.startswith("_")}


def query(url: str, sql: str, **params):
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as connection:
            return connection.execute(text(sql), params).all()
    finally:
        engine.dispose()


# --- erasure reaches the notifier ------------------------------------------------------------------

@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


def test_an_erasure_leaves_nothing_of_the_person_in_the_notifier_and_nothing_reaches_subscribers_after_it(
        stack_factory, tmp_path, receiver):
    stack = start(stack_factory, tmp_path, [INGEST, CONTACTS, CONVERSATIONS, OUTBOUND, NOTIFIER],
                  NOTIFIER_SECRET_KEY=Fernet.generate_key().decode(), NOTIFIER_ALLOW_HTTP_WEBHOOKS="true",
                  NOTIFIER_WEBHOOK_ALLOW_PRIVATE="true", NOTIFIER_WEBHOOK_RETRY_SCHEDULE="20s,20s,20s,20s,20s",
                  NOTIFIER_POLL_SECONDS="0.2")
    status, webhook = stack.post("/api/webhooks", {"url": receiver.url, "events": ["*"]})
    assert status == 201, webhook

    # Bob's mail goes out to the subscriber while it is up
    deliver(stack, mail("Bob Builder <bob@example.com>", "Bob's question", "Bob's text"))
    stack.eventually(lambda: "conversation_created" in " ".join(receiver.types_about("bob@example.com")), timeout=60)

    # the subscriber is down while Ada's mail comes in: her deliveries wait in the queue
    receiver.down = True
    deliver(stack, mail("Ada Lovelace <ada@example.com>", "My secret contract", "Ada's account 4711"))
    ada = stack.eventually(lambda: contact_of(stack, "ada@example.com"), timeout=60)
    [conversation] = stack.eventually(lambda: conversations_with(stack, "My secret contract"), timeout=60)
    log_path = f"/api/webhooks/{webhook['id']}/deliveries?limit=100"

    def hers():
        items = stack.get(log_path)[1]["items"]
        return [d for d in items if d["conversation_id"] == conversation["id"] or d["event_type"] == "contact_created"]
    stack.eventually(lambda: len([d for d in hers() if d["state"] == "pending" and d["attempts"] >= 1]) >= 2,
                     timeout=60)
    assert "ada@" not in receiver.text()

    with EventSubscriber(stack.amqp_uri, [("notifier.events", "contact_notifications_erased")]) as events:
        status, report = stack.post(f"/api/contacts/{ada['id']}/erase")
        assert status == 202, report
        [confirmation] = events.wait_for("contact_notifications_erased", timeout=60)
    assert confirmation["data"]["erasure_id"] == report["id"]
    done = stack.eventually(lambda: (lambda r: r if r["status"] == "complete" else None)(
        stack.get(f"/api/contacts/erasures/{report['id']}")[1]), timeout=90)
    notified = done["services"]["notifier"]
    assert notified["deliveries_dropped"] >= 2 and notified == confirmation["data"]["erased"]
    assert "ada@" not in json.dumps(done).lower()

    # the subscriber is back: Carol's events arrive, nothing of Ada ever does
    receiver.down = False
    deliver(stack, mail("Carol <carol@example.com>", "Carol's order", "Carol's text"))
    stack.eventually(lambda: "conversation_created" in " ".join(receiver.types_about("carol@example.com")),
                     timeout=60)
    # a late copy (produced before the erasure, redelivered now) is not delivered either: a marker
    # published after it on the same queue shows that it was handled
    before = (dt.datetime.fromisoformat(report["requested_at"]) - dt.timedelta(seconds=30)).isoformat()
    late_copy = dict(build_envelope("contact_created", ada["id"], {
        "contact_id": ada["id"], "name": "Ada Lovelace", "emails": ["ada@example.com"], "created_from": "x"}),
        time=before)
    publish_envelopes(stack.amqp_uri, [late_copy], exchange="contacts.events", routing_key="contact_created")
    marker = publish_event(stack.amqp_uri, "contact_created", "c-marker", {
        "contact_id": "c-marker", "name": None, "emails": ["marker@example.com"], "created_from": "x"})
    stack.eventually(lambda: receiver.types_about("marker@example.com"), timeout=60)
    assert marker["id"] in receiver.text()
    accepted = receiver.text()
    assert late_copy["id"] not in accepted
    for trace in TRACES:
        assert trace not in accepted, trace

    # the delivery log: her waiting deliveries erased (never sent, not sent again on request), nothing readable
    log = stack.get(log_path)[1]
    assert {d["state"] for d in hers()} <= {"erased", "delivered"}
    erased = [d for d in log["items"] if d["state"] == "erased"]
    assert len(erased) >= 2
    redeliver = f"/api/webhooks/{webhook['id']}/deliveries/{erased[0]['id']}/redeliver"
    assert stack.post(redeliver)[0] == 409
    assert stack.post(redeliver, headers=MEMBER)[0] == 403
    assert stack.post(redeliver, headers=NO_AUTH)[0] == 401
    for trace in TRACES:
        assert trace not in json.dumps(log).lower(), trace
    # and the notifier's database keeps no copy: not in a delivery body, a Slack post or the outbox
    rows = query(stack.database_urls["notifier"], "SELECT body FROM webhook_deliveries")
    stored = json.dumps([r.body for r in rows]).lower()
    assert "carol@example.com" in stored
    for trace in TRACES:
        assert trace not in stored, trace
    assert not query(stack.database_urls["notifier"],
                     "SELECT 1 FROM erased_keys WHERE fingerprint LIKE '%@%'")  # fingerprints only


# --- a merge leaves a redirect ---------------------------------------------------------------------

def test_late_and_redelivered_events_of_a_merged_contact_and_mail_racing_the_merge_end_on_the_survivor(
        stack_factory, tmp_path):
    stack = start(stack_factory, tmp_path, [INGEST, CONTACTS, CONVERSATIONS])
    with EventSubscriber(stack.amqp_uri, [("contacts.events", "contact_created"),
                                          ("conversations.events", "message_added")]) as events:
        deliver(stack, mail("Ada Lovelace <ada@example.com>", "Order 1", "first"))
        deliver(stack, mail("A. Lovelace <ada@work.example>", "Order 2", "second"))
        ada = stack.eventually(lambda: contact_of(stack, "ada@example.com"), timeout=60)
        work = stack.eventually(lambda: contact_of(stack, "ada@work.example"), timeout=60)
        [created_work] = [plain(e) for e in events.wait_for(
            "contact_created", lambda e: e["data"]["contact_id"] == work["id"], timeout=60)]
        [second] = stack.eventually(lambda: conversations_with(stack, "Order 2"), timeout=60)
        [added_work] = [plain(e) for e in events.wait_for(
            "message_added", lambda e: e["data"]["conversation_id"] == second["id"], timeout=60)]
    stack.eventually(lambda: contact_id_of(stack, second["id"]) == work["id"], timeout=60)

    # mail from the merged address arrives while the merge runs
    racing = [mail("A. Lovelace <ada@work.example>", f"Race {n}", f"race {n}") for n in range(6)]
    threads = [threading.Thread(target=deliver, args=(stack, raw)) for raw in racing]
    for thread in threads[:3]:
        thread.start()
    status, merged = stack.post(f"/api/contacts/{ada['id']}/merge", {"contact_id": work["id"]}, headers=MEMBER)
    for thread in threads[3:]:
        thread.start()
    for thread in threads:
        thread.join()
    assert status == 200, merged

    # the old events again: the same ones (redelivered) and copies with new ids (late), and an
    # address added to the merged contact
    created_late = dict(created_work, id=str(uuid.uuid4()))
    publish_envelopes(stack.amqp_uri, [created_work, created_late], exchange="contacts.events",
                      routing_key="contact_created")
    updated_late = publish_event(stack.amqp_uri, "contact_updated", work["id"], {
        "contact_id": work["id"], "name": "A. Lovelace", "emails": ["ada@work.example", "ada@lab.example"],
        "added": ["ada@lab.example"], "removed": [], "previous_name": None, "updated_by": "agent-1"})
    publish_envelopes(stack.amqp_uri, [added_work, dict(added_work, id=str(uuid.uuid4()))],
                      exchange="conversations.events", routing_key="message_added")
    conversations_db = stack.database_urls["conversations"]

    def handled():  # the late events were consumed (not merely queued)
        return all(query(conversations_db, "SELECT 1 FROM processed_events WHERE event_id = :i", i=i)
                   for i in (created_late["id"], updated_late["id"]))
    stack.eventually(handled, timeout=60)

    # nothing points at the merged contact: not conversations' addresses, not a conversation
    known = dict(query(conversations_db, "SELECT email, contact_id FROM known_contacts"))
    assert known["ada@work.example"] == ada["id"] and known.get("ada@lab.example") == ada["id"]
    assert work["id"] not in known.values()
    for n in range(6):
        [race] = stack.eventually(lambda n=n: conversations_with(stack, f"Race {n}"), timeout=90)
        stack.eventually(lambda race=race: contact_id_of(stack, race["id"]) == ada["id"], timeout=60)
    assert contact_id_of(stack, second["id"]) == ada["id"]
    assert not query(conversations_db, "SELECT 1 FROM conversations WHERE contact_id = :c", c=work["id"])
    # contacts: the merged contact stays gone and every racing email is on the survivor's timeline
    assert stack.get(f"/api/contacts/{work['id']}")[0] == 404
    assert contact_of(stack, "ada@work.example")["id"] == ada["id"]
    stack.eventually(lambda: len(stack.get(f"/api/contacts/{ada['id']}/timeline?limit=50")[1]["items"]) == 8,
                     timeout=90)
    assert not query(stack.database_urls["contacts"], "SELECT 1 FROM contacts WHERE id = :c", c=work["id"])
