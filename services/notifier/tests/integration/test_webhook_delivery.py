"""Webhooks against real parts: a notifier process on its own PostgreSQL database and RabbitMQ
vhost, events published into the vhost as their producers would, and a local HTTP receiver (on
127.0.0.1, so the stack allows private targets) that verifies every request with the
`standardwebhooks` reference library."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.fernet import Fernet
from standardwebhooks.webhooks import Webhook

from mailroom_testing.publishing import publish_event
from mailroom_testing.specs import NOTIFIER
from mailroom_testing.subscriber import EventSubscriber
from mailroom_testing.tokens import auth

pytestmark = pytest.mark.integration
# a shared, loaded machine: a start (imports) may hold a loop over the stack's default 1 s; a
# blocking call in the delivery path would still be seen at 5 s
LOADED_MACHINE = {"MAILROOM_BLOCKING_DETECTION_SECONDS": "5"}


class Receiver:
    """Records every request per path; answers each path from a script (then 200)."""

    def __init__(self):
        self.requests: dict[str, list[dict]] = {}
        self.scripts: dict[str, list[int]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    script = receiver.scripts.get(self.path, [])
                    status = script.pop(0) if script else 200
                    receiver.requests.setdefault(self.path, []).append(
                        {"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body, "status": status})
                if status == 0:  # hang: the sender is killed meanwhile
                    time.sleep(6)
                    status = 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def got(self, path: str) -> list[dict]:
        with self.lock:
            return list(self.requests.get(path, []))

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def stack(stack_factory):
    return stack_factory([NOTIFIER], extra_env={
        **LOADED_MACHINE, "NOTIFIER_SECRET_KEY": Fernet.generate_key().decode(), "NOTIFIER_ALLOW_HTTP_WEBHOOKS": "true",
        "NOTIFIER_WEBHOOK_ALLOW_PRIVATE": "true", "NOTIFIER_WEBHOOK_RETRY_SCHEDULE": "1s,1s,1s",
        "NOTIFIER_POLL_SECONDS": "0.2"})


def subscribe(stack, url, events, **extra):
    status, body = stack.post("/api/webhooks", {"url": url, "events": events, **extra})
    assert status == 201, body
    return body


def conversation_created(stack, inbox_id="inbox-1", event_id=None, conversation_id=None):
    return publish_event(stack.amqp_uri, "conversation_created", "c-1", {
        "conversation_id": conversation_id or f"c-{uuid.uuid4()}", "inbox_id": inbox_id, "subject": "Hello",
        "status": "open",
        "spam": False, "contact_email": "alice@example.org"}, event_id=event_id)


def deliveries(stack, webhook_id):
    status, body = stack.get(f"/api/webhooks/{webhook_id}/deliveries")
    assert status == 200, body
    return body["items"]


def verified(secret, request) -> dict:
    """The body, verified; without the `sequence` attribute the notifier adds, which the other
    tests do not look at (test_events_of_a_conversation_carry_its_sequence does)."""
    body = dict(Webhook(secret).verify(request["body"], request["headers"]))
    body.pop("sequence", None)
    return body


def test_an_event_reaches_the_receiver_signed_and_the_secret_is_shown_once(stack, receiver):
    hook = subscribe(stack, receiver.url + "/ok", ["conversation_created"], description="CRM")
    secret = hook["secret"]
    assert secret.startswith("whsec_")
    envelope = conversation_created(stack)
    [request] = stack.eventually(lambda: receiver.got("/ok"))
    assert verified(secret, request) == envelope  # the CloudEvents envelope, exactly as on RabbitMQ
    assert request["headers"]["webhook-id"] == envelope["id"]
    [delivery] = stack.eventually(lambda: [d for d in deliveries(stack, hook["id"]) if d["state"] == "delivered"])
    assert delivery["event_id"] == envelope["id"] and [a["status"] for a in delivery["log"]] == [200]
    answers = [stack.get(f"/api/webhooks/{hook['id']}"), stack.get("/api/webhooks"),
               stack.get(f"/api/webhooks/{hook['id']}/deliveries"),
               stack.request("PATCH", f"/api/webhooks/{hook['id']}", {"description": "CRM 2"})]
    for status, body in answers:
        assert status == 200 and secret not in json.dumps(body) and secret[6:] not in json.dumps(body)
    assert "secret" not in answers[0][1] and answers[3][1]["description"] == "CRM 2"
    log = stack.log("notifier")
    assert secret not in log and secret[6:] not in log
    status, rotated = stack.post(f"/api/webhooks/{hook['id']}/rotate-secret")
    assert status == 200 and rotated["secret"] not in (None, secret)
    second = conversation_created(stack)
    request = stack.eventually(lambda: receiver.got("/ok")[1:])[0]
    assert verified(rotated["secret"], request) == second
    assert verified(secret, request) == second  # the old secret still verifies for 24 hours


def test_a_500_then_200_is_delivered_twice_with_one_id_and_both_attempts_logged(stack, receiver):
    receiver.scripts["/flaky"] = [500]
    hook = subscribe(stack, receiver.url + "/flaky", ["*"])
    envelope = conversation_created(stack)
    requests = stack.eventually(lambda: receiver.got("/flaky")[1:] and receiver.got("/flaky"), timeout=20)
    assert [r["status"] for r in requests] == [500, 200]
    assert {r["headers"]["webhook-id"] for r in requests} == {envelope["id"]}
    assert all(verified(hook["secret"], r) == envelope for r in requests)
    [delivery] = stack.eventually(lambda: [d for d in deliveries(stack, hook["id"]) if d["state"] == "delivered"])
    assert [(a["attempt"], a["status"], a["outcome"]) for a in delivery["log"]] == [
        (1, 500, "retry"), (2, 200, "delivered")]
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.ports['notifier']}/metrics", timeout=10) as answer:
        metrics = answer.read().decode()
    assert 'mailroom_deliveries_total{channel="webhook",state="deferred"} 1.0' in metrics
    assert 'mailroom_deliveries_total{channel="webhook",state="sent"} 1.0' in metrics
    assert 'mailroom_delivery_duration_seconds_count{channel="webhook"} 2.0' in metrics


def test_a_410_fails_at_once_and_a_manual_redelivery_sends_it_again(stack, receiver):
    receiver.scripts["/gone"] = [410]
    hook = subscribe(stack, receiver.url + "/gone", ["conversation_created"])
    conversation_created(stack)
    [delivery] = stack.eventually(lambda: [d for d in deliveries(stack, hook["id"]) if d["state"] == "failed"])
    assert delivery["attempts"] == 1 and delivery["last_status"] == 410
    assert len(receiver.got("/gone")) == 1
    status, body = stack.post(f"/api/webhooks/{hook['id']}/deliveries/{delivery['id']}/redeliver")
    assert status == 202, body
    stack.eventually(lambda: [d for d in deliveries(stack, hook["id"]) if d["state"] == "delivered"])
    assert [r["status"] for r in receiver.got("/gone")] == [410, 200]


def test_an_event_redelivered_by_rabbitmq_is_delivered_once_and_other_types_get_nothing(stack, receiver):
    hook = subscribe(stack, receiver.url + "/once", ["conversation_created"])
    other = subscribe(stack, receiver.url + "/other", ["message_added"])
    elsewhere = subscribe(stack, receiver.url + "/elsewhere", ["*"], inbox_ids=["inbox-2"])
    event_id = str(uuid.uuid4())
    conversation_created(stack, event_id=event_id)
    conversation_created(stack, event_id=event_id)  # the same event again
    stack.eventually(lambda: receiver.got("/once"))
    marker = conversation_created(stack)  # published after both copies: once it is in, they were handled
    stack.eventually(lambda: len(receiver.got("/once")) >= 2)
    ids = [r["headers"]["webhook-id"] for r in receiver.got("/once")]
    assert ids.count(event_id) == 1 and marker["id"] in ids
    assert receiver.got("/other") == [] and receiver.got("/elsewhere") == []
    assert deliveries(stack, other["id"]) == [] and deliveries(stack, elsewhere["id"]) == []
    assert len(deliveries(stack, hook["id"])) == 2


def test_only_super_admins_manage_webhooks_and_bad_subscriptions_are_refused(stack, receiver):
    member = auth("agent-1", teams=["t1"])
    status, _ = stack.post("/api/webhooks", {"url": receiver.url, "events": ["*"]}, headers=member)
    assert status == 403
    assert stack.get("/api/webhooks", headers=member)[0] == 403
    assert stack.post("/api/webhooks", {"url": receiver.url, "events": ["nope"]})[0] == 400
    assert stack.post("/api/webhooks", {"url": "ftp://x.example", "events": ["*"]})[0] == 400
    hook = subscribe(stack, receiver.url + "/gone-soon", ["*"])
    assert stack.request("DELETE", f"/api/webhooks/{hook['id']}")[0] == 204
    assert stack.get(f"/api/webhooks/{hook['id']}")[0] == 404


def test_without_the_private_targets_switch_a_loopback_receiver_is_refused(stack_factory, receiver):
    stack = stack_factory([NOTIFIER], extra_env={
        **LOADED_MACHINE, "NOTIFIER_SECRET_KEY": Fernet.generate_key().decode(),
        "NOTIFIER_ALLOW_HTTP_WEBHOOKS": "true"})
    status, body = stack.post("/api/webhooks", {"url": receiver.url + "/in", "events": ["*"]})
    assert status == 400 and "loopback" in body["error"]["message"]
    status, body = stack.post("/api/webhooks", {"url": "https://localhost/in", "events": ["*"]})
    assert status == 400


def test_a_notifier_killed_mid_delivery_sends_it_again_after_the_lease(stack_factory, receiver):
    stack = stack_factory([NOTIFIER], extra_env={
        **LOADED_MACHINE, "NOTIFIER_SECRET_KEY": Fernet.generate_key().decode(), "NOTIFIER_ALLOW_HTTP_WEBHOOKS": "true",
        "NOTIFIER_WEBHOOK_ALLOW_PRIVATE": "true", "NOTIFIER_WEBHOOK_TIMEOUT_SECONDS": "4",
        "NOTIFIER_WEBHOOK_CONNECT_TIMEOUT_SECONDS": "1", "NOTIFIER_DELIVERY_LEASE_SECONDS": "5",
        "NOTIFIER_POLL_SECONDS": "0.2"})
    receiver.scripts["/hang"] = [0]
    hook = subscribe(stack, receiver.url + "/hang", ["conversation_created"])
    envelope = conversation_created(stack)
    stack.eventually(lambda: receiver.got("/hang"))
    stack.kill_process("notifier")  # SIGKILL while the request is in flight
    stack.restart_process("notifier")
    [delivery] = stack.eventually(lambda: [d for d in deliveries(stack, hook["id"]) if d["state"] == "delivered"],
                                  timeout=20)
    ids = [r["headers"]["webhook-id"] for r in receiver.got("/hang")]
    assert ids == [envelope["id"], envelope["id"]]
    assert [a["attempt"] for a in delivery["log"]] == [2]  # the first attempt died with its process
    assert delivery["attempts"] == 2 and all(verified(hook["secret"], r) == envelope for r in receiver.got("/hang"))


def test_events_of_a_conversation_carry_its_sequence(stack, receiver):
    hook = subscribe(stack, receiver.url + "/seq", ["conversation_created"])
    sent = [conversation_created(stack, conversation_id="c-ordered") for _ in range(3)]
    sent.append(conversation_created(stack, conversation_id="c-other"))
    requests = stack.eventually(lambda: len(receiver.got("/seq")) == 4 and receiver.got("/seq"))
    bodies = {body["id"]: body for body in (Webhook(hook["secret"]).verify(r["body"], r["headers"])
                                            for r in requests)}
    ordered = sorted(bodies[e["id"]]["sequence"] for e in sent[:3])
    assert ordered == ["00000000000000000001", "00000000000000000002", "00000000000000000003"]
    assert bodies[sent[3]["id"]]["sequence"] == "00000000000000000001"  # counted per conversation
    for envelope in sent:  # otherwise the envelope exactly as on RabbitMQ
        assert {k: v for k, v in bodies[envelope["id"]].items() if k != "sequence"} == envelope
    items = deliveries(stack, hook["id"])
    assert sorted(d["sequence"] for d in items if d["conversation_id"] == "c-ordered") == [1, 2, 3]


def test_a_dead_receiver_is_disabled_after_the_schedule_with_a_webhook_disabled_event(stack, receiver):
    receiver.scripts["/dead"] = [503, 503, 503, 503]  # every attempt of a 3-retry schedule
    hook = subscribe(stack, receiver.url + "/dead", ["conversation_created"])
    with EventSubscriber(stack.amqp_uri, [("notifier.events", "webhook_disabled")]) as events:
        envelope = conversation_created(stack)
        [disabled] = events.wait_for("webhook_disabled", timeout=30)
    assert disabled["type"] == "mailroom.webhook_disabled.v1" and disabled["source"] == "mailroom/notifier"
    assert disabled["data"]["webhook_id"] == hook["id"] and disabled["data"]["attempts"] == 4
    assert disabled["data"]["event_id"] == envelope["id"] and disabled["data"]["last_status"] == 503
    assert hook["secret"] not in json.dumps(disabled)
    assert stack.get(f"/api/webhooks/{hook['id']}")[1]["enabled"] is False
    marker = subscribe(stack, receiver.url + "/marker", ["conversation_created"])
    later = conversation_created(stack)  # not sent while disabled
    stack.eventually(lambda: later["id"] in [r["headers"]["webhook-id"] for r in receiver.got("/marker")])
    assert marker  # the marker got it: the event was handled while the subscription was disabled
    status, body = stack.request("PATCH", f"/api/webhooks/{hook['id']}", {"enabled": True})
    assert status == 200 and body["enabled"] is True and body["url"] == receiver.url + "/dead"
    after = conversation_created(stack)
    stack.eventually(lambda: after["id"] in [r["headers"]["webhook-id"] for r in receiver.got("/dead")])
    ids = [r["headers"]["webhook-id"] for r in receiver.got("/dead")]
    assert later["id"] not in ids and ids.count(envelope["id"]) == 4
