"""The notifier: webhook deliveries per second to a local receiver, and Slack posts per second
against a local Slack Web API (mailroom_testing.fake_slack), with real parts.

One notifier process (as the tests start it) on a fresh vhost and a fresh PostgreSQL database.
Webhooks: SUBSCRIPTIONS subscriptions to a receiver in a thread of this process (plain HTTP on
127.0.0.1, so the stack allows private targets), then N conversation_created events published
at once (50 conversations); rate = deliveries received / (first publish → the receiver has all of
them), which includes consuming the events (small next to the HTTP requests). Every delivery is
counted once per (subscription, webhook-id): a duplicate or a missing one is reported, and a
sample is verified with the `standardwebhooks` library. Slack: one connection, M events about M
conversations (each post starts its own thread), rate = posts at the local API / (first publish →
the last post).

    .venv/bin/python bench/notifier_bench.py [--events N] [--slack-events M]   (or from bench/run.py)
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography.fernet import Fernet
from standardwebhooks.webhooks import Webhook

from mailroom_shared.events.envelope import build_envelope
from mailroom_testing.fake_slack import FakeSlack
from mailroom_testing.publishing import publish_envelopes
from mailroom_testing.specs import NOTIFIER
from mailroom_testing.stack import Stack
from mailroom_testing.tokens import admin_headers

SUBSCRIPTIONS = 4
CONVERSATIONS = 50
BOT_TOKEN = "xoxb-bench"  # noqa: S105 - a local stand-in's token


class Receiver:
    """Counts deliveries per (path, webhook-id); keeps a few bodies to verify."""

    def __init__(self):
        self.seen: dict[tuple[str, str], int] = {}
        self.samples: list[tuple[str, bytes, dict]] = []
        self.lock = threading.Lock()
        self.last_at = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                key = (self.path, self.headers.get("webhook-id", ""))
                with receiver.lock:
                    receiver.seen[key] = receiver.seen.get(key, 0) + 1
                    receiver.last_at = time.monotonic()
                    if len(receiver.samples) < 20:
                        receiver.samples.append((self.path, body, {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.request_queue_size = 256
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self) -> int:
        with self.lock:
            return len(self.seen)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _events(n: int, inbox_id: str = "inbox-bench") -> list[dict]:
    conversations = [str(uuid.uuid4()) for _ in range(CONVERSATIONS)]
    return [build_envelope("conversation_created", conversations[i % CONVERSATIONS], {
        "conversation_id": conversations[i % CONVERSATIONS], "inbox_id": inbox_id, "subject": f"bench {i}",
        "status": "open", "spam": False,
        "contact_email": f"customer{i}@example.com"}) for i in range(n)]


def _wait(probe, total: int, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe() >= total:
            return time.monotonic()
        time.sleep(0.02)
    return None


def measure_webhooks(stack: Stack, n: int, log=print) -> dict:
    receiver = Receiver()
    try:
        secrets = {}
        for k in range(SUBSCRIPTIONS):
            status, hook = stack.post("/api/webhooks", {"url": f"{receiver.url}/hook{k}",
                                                        "events": ["conversation_created"]})
            assert status == 201, hook
            secrets[f"/hook{k}"] = hook["secret"]
        events = _events(n)
        wanted = n * SUBSCRIPTIONS
        log(f"  {n} events × {SUBSCRIPTIONS} subscriptions = {wanted} deliveries to a local receiver …")
        started = time.monotonic()
        publish_envelopes(stack.amqp_uri, events, exchange="conversations.events", routing_key="conversation_created")
        finished = _wait(receiver.count, wanted, timeout=max(120.0, wanted / 20))
        seconds = (finished or time.monotonic()) - started
        with receiver.lock:
            duplicates = sum(count - 1 for count in receiver.seen.values())
            samples = list(receiver.samples)
        verified = sum(1 for path, body, headers in samples if Webhook(secrets[path]).verify(body, headers))
        received = receiver.count()
        return {"deliveries": wanted, "received": received, "seconds": round(seconds, 2),
                "deliveries_per_s": round(received / seconds, 1) if seconds else None,
                "duplicates": duplicates, "missing": wanted - received, "verified_sample": verified,
                "subscriptions": SUBSCRIPTIONS, "events": n}
    finally:
        receiver.close()


def measure_slack(stack: Stack, slack: FakeSlack, n: int, log=print) -> dict:
    status, connection = stack.post("/api/slack/connections", {
        "inbox_id": "inbox-slack", "channel_id": "C0BENCH", "bot_token": BOT_TOKEN,
        "signing_secret": "bench-signing-secret", "notifications": ["new_conversations"]})
    assert status == 201, connection
    events = [build_envelope("conversation_created", str(uuid.uuid4()), {
        "conversation_id": str(uuid.uuid4()), "inbox_id": "inbox-slack", "subject": f"slack bench {i}",
        "status": "open", "spam": False, "contact_email": f"c{i}@example.com"}) for i in range(n)]
    log(f"  {n} new conversations → {n} Slack posts to a local Slack API …")
    started = time.monotonic()
    publish_envelopes(stack.amqp_uri, events, exchange="conversations.events", routing_key="conversation_created")
    finished = _wait(lambda: len(slack.posts("C0BENCH")), n, timeout=max(120.0, n / 10))
    seconds = (finished or time.monotonic()) - started
    posts = slack.posts("C0BENCH")
    keys = [json.dumps(p.get("metadata"), sort_keys=True) for p in posts]
    return {"posts": n, "posted": len(posts), "seconds": round(seconds, 2),
            "posts_per_s": round(len(posts) / seconds, 1) if seconds else None,
            "duplicates": len(keys) - len(set(keys))}


def measure(resources, workdir: Path, n: int = 2000, slack_n: int = 500, extra_env: dict | None = None,
            log=print) -> dict:
    slack = FakeSlack(token=BOT_TOKEN)
    stack = Stack(services=[NOTIFIER], amqp_uri=resources.vhost(),
                  database_urls={"notifier": resources.database("notifier")}, workdir=workdir,
                  default_headers=admin_headers(), extra_env={
                      "NOTIFIER_SECRET_KEY": Fernet.generate_key().decode(), "NOTIFIER_ALLOW_HTTP_WEBHOOKS": "true",
                      "NOTIFIER_WEBHOOK_ALLOW_PRIVATE": "true", "SLACK_API_URL": slack.url, "LOG_LEVEL": "WARNING",
                      "MAILROOM_BLOCKING_DETECTION_SECONDS": "0", "OUTBOX_POLL_SECONDS": "",  # the default
                      **(extra_env or {})})
    try:
        stack.start()
        result = {"webhooks": measure_webhooks(stack, max(1, n // SUBSCRIPTIONS), log=log)}
        log(f"  → {result['webhooks']['deliveries_per_s']} webhook deliveries/s "
            f"({result['webhooks']['received']}/{result['webhooks']['deliveries']}, "
            f"{result['webhooks']['duplicates']} duplicates)")
        result["slack"] = measure_slack(stack, slack, slack_n, log=log)
        slack_result = result["slack"]
        log(f"  → {slack_result['posts_per_s']} Slack posts/s ({slack_result['posted']}/{slack_result['posts']})")
        return result
    finally:
        stack.stop()
        slack.close()


def main() -> int:
    import sys
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import Infra, auth_env  # bench/run.py's throwaway vhosts and databases

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000, help="webhook deliveries (events × 4 subscriptions)")
    parser.add_argument("--slack-events", type=int, default=500)
    args = parser.parse_args()
    resources = Infra()
    try:
        print(json.dumps(measure(resources, Path(tempfile.mkdtemp(prefix="mailroom-notifier-bench-")),
                                 args.events, args.slack_events, extra_env=auth_env()), indent=2))
    finally:
        resources.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
