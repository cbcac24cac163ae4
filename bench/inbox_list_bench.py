"""The web inbox's reads at 10,000 conversations in one inbox (issue #18): how long the
conversations service takes to answer the list's first page, a deep page (by cursor), the view
counts with unread counts, and searches.

    .venv/bin/python bench/inbox_list_bench.py [--conversations 10000] [--requests 100]
    .venv/bin/python bench/run.py --only inbox-list     # the same, inside `make bench`

The conversations service runs as a service process (as the tests start it) on a fresh
PostgreSQL database and RabbitMQ vhost, dropped afterwards. The inbox is created through the API;
then the conversations, their messages and the reader's read marks are inserted directly in SQL
(INSERT … SELECT FROM generate_series), followed by VACUUM ANALYZE:

- C conversations (default 10,000) over the last 90 days, 75 % open, 20 % closed, 5 % spam, a
  third of the open ones assigned to the reader; each with 3 messages (the customer's, our reply,
  the customer's answer), texts of 300–900 characters; 1 in 100 mentions a "warranty" and the
  customers have distinct addresses (customerN@…).
- The reader (a member) has read 60 % of them; a tenth of those got an answer after the mark.

Each request is sent by one client over one keep-alive HTTP connection, one at a time, after 10
warm-up requests; the numbers are the client's wall time from sending the request to the last
byte of the answer (JSON included). Nothing is asserted: speed is never a test.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import psycopg2

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from mailroom_testing.specs import CONVERSATIONS  # noqa: E402
from mailroom_testing.stack import Stack  # noqa: E402
from mailroom_testing.tokens import TEST_ENV, auth  # noqa: E402

READER = "bench-agent"
READER_HEADERS = auth(READER, email="bench-agent@mailroom.test")
TEXT = ("Hello team, I am writing about my order which has not arrived yet. The tracking page says the parcel "
        "left the warehouse last Monday but nothing has moved since. Could you please check with the courier "
        "and let me know when I can expect it? I also noticed that the invoice lists the wrong billing address, "
        "the street number should be 42 and not 24. If a replacement is needed please send it to the same "
        "address. Thanks a lot for your help, and kind regards from a patient customer. ")

# {c}: conversations; {inbox}: the inbox id; {txt}: the text, dollar-quoted. Conversation k (1..C):
# id md5('conv'||k)::uuid, last activity spread over 90 days (k = C the newest).
SEED_SQL = """
INSERT INTO conversations (id, inbox_id, subject, status, spam, reply_token, contact_email, contact_name,
    message_count, snippet, created_at, last_message_at, closed_at, assignee_user_id, channel_type)
SELECT md5('conv' || k)::uuid::text, '{inbox}',
    CASE WHEN k % 7 = 0 THEN 'Invoice ' || k || ' has the wrong address' ELSE 'Order ' || k || ' has not arrived' END,
    CASE WHEN k % 20 < 15 THEN 'open' ELSE 'closed' END, k % 20 = 19, md5('token' || k),
    'customer' || k || '@customer' || (k % 8) || '.example', 'Customer ' || k, 3,
    substr({txt}, 1 + k % 200, 120), t - interval '2 days', t,
    CASE WHEN k % 20 >= 15 THEN t END, CASE WHEN k % 20 < 15 AND k % 3 = 0 THEN '{reader}' END, 'email'
FROM generate_series(1, {c}) AS k, LATERAL (SELECT now() - ({c} - k) * (interval '90 days' / {c}) AS t) AS x;

INSERT INTO messages (id, conversation_id, inbox_id, rfc_message_id, direction, intake_id, channel_address, via,
    subject, sender, attributed_to, "to", cc, reply_to, in_reply_to, "references", text, html, html_truncated,
    remote_images_blocked, snippet, size, full_message_url, attachments, forward, flags, received_at, created_at)
SELECT md5('msg' || k || '-' || m)::uuid::text, md5('conv' || k)::uuid::text, '{inbox}',
    'bench-' || k || '-' || m || '@customer.example', CASE WHEN m = 2 THEN 'out' ELSE 'in' END,
    CASE WHEN m = 2 THEN NULL ELSE md5('intake' || k || '-' || m)::uuid::text END, 'support@inbox-bench.test',
    CASE WHEN m = 2 THEN 'outbound' ELSE 'smtp' END, 'Order ' || k,
    (CASE WHEN m = 2 THEN '{{"name":"Support","email":"support@inbox-bench.test"}}'
     ELSE '{{"name":"Customer ' || k || '","email":"customer' || k || '@customer' || (k % 8) || '.example"}}'
     END)::json,
    NULL, '[]', '[]', '[]', '[]', '[]',
    substr({txt} || {txt}, 1 + (k * 7 + m) % 400, 300 + (k * 13 + m) % 600)
        || CASE WHEN k % 100 = 0 AND m = 1 THEN ' The warranty card is missing too.' ELSE '' END,
    NULL, false, 0, substr({txt}, 1 + k % 200, 120), 2000, NULL, '[]', NULL,
    '{{"auto_submitted":false,"bounce":false,"spam":false,"loop":false,"reasons":[]}}',
    t - (3 - m) * interval '1 hour', t - (3 - m) * interval '1 hour'
FROM generate_series(1, {c}) AS k, generate_series(1, 3) AS m,
     LATERAL (SELECT now() - ({c} - k) * (interval '90 days' / {c}) AS t) AS x;

-- the reader read 60 %: up to the last message (a tenth of them: only up to the first, so the
-- customer's answer came after the mark)
INSERT INTO read_marks (user_id, conversation_id, read_up_to, marked_unread, marked_at)
SELECT '{reader}', md5('conv' || k)::uuid::text,
    t - CASE WHEN k % 50 < 3 THEN 2 ELSE 0 END * interval '1 hour', false, t
FROM generate_series(1, {c}) AS k, LATERAL (SELECT now() - ({c} - k) * (interval '90 days' / {c}) AS t) AS x
WHERE k % 10 < 6;
"""


# built again after the rows are in (one sorted build instead of 30,000 trigram index inserts)
REBUILT_INDEXES = ("ix_conversations_search_trgm", "ix_messages_search_trgm", "ix_messages_inbound_created")


def seed(database_url: str, inbox_id: str, conversations: int) -> dict:
    """Insert the rows; {"seconds": …, "index_build_seconds": {index: s}}."""
    began = time.monotonic()
    sql = (SEED_SQL.replace("{c}", str(conversations)).replace("{inbox}", inbox_id).replace("{reader}", READER)
           .replace("{txt}", f"$txt${TEXT}$txt$").replace("{{", "{").replace("}}", "}"))
    connection = psycopg2.connect(database_url.replace("postgresql+psycopg2://", "postgresql://"))
    builds = {}
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SET maintenance_work_mem = '256MB'")  # as bench/seed.py builds its indexes
            cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE indexname = ANY(%s)",
                           (list(REBUILT_INDEXES),))
            definitions = cursor.fetchall()
            for name, _ in definitions:
                cursor.execute(f"DROP INDEX {name}")
            cursor.execute(sql)
            for name, definition in definitions:
                at = time.monotonic()
                cursor.execute(definition)
                builds[name] = round(time.monotonic() - at, 2)
            cursor.execute("VACUUM ANALYZE conversations")
            cursor.execute("VACUUM ANALYZE messages")
            cursor.execute("VACUUM ANALYZE read_marks")
    finally:
        connection.close()
    return {"seconds": round(time.monotonic() - began, 1), "index_build_seconds": builds}


class Client:
    """One keep-alive HTTP connection to the service."""

    def __init__(self, port: int, headers: dict):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = headers

    def get(self, path: str) -> tuple[float, dict]:
        began = time.perf_counter()
        self.connection.request("GET", path, headers=self.headers)
        response = self.connection.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - began) * 1000
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {body[:300]!r}")
        return elapsed, json.loads(body)

    def close(self) -> None:
        self.connection.close()


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)

    def at(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))], 1)

    return {"p50": at(50), "p99": at(99), "mean": round(statistics.fmean(ordered), 1), "max": round(ordered[-1], 1),
            "n": len(ordered)}


def timed(client: Client, path: str, requests: int, warm: int = 10) -> tuple[dict, dict]:
    for _ in range(warm):
        _, body = client.get(path)
    samples = [client.get(path)[0] for _ in range(requests)]
    return percentiles(samples), body


def deep_cursor(client: Client, base: str, pages: int) -> tuple[str, int]:
    """The cursor of page `pages` + 1 (walking there page by page, as a client scrolling does)."""
    cursor, walked = None, 0
    for _ in range(pages):
        _, body = client.get(base + (f"&cursor={cursor}" if cursor else ""))
        walked += len(body["items"])
        if not body["next_cursor"]:
            break
        cursor = body["next_cursor"]
    return cursor, walked


def measure(resources, workdir: Path, conversations: int = 10_000, requests: int = 100, extra_env: dict | None = None,
            log=print) -> dict:
    from mailroom_shared.migrations import upgrade

    amqp = resources.vhost()
    url = resources.database("inbox_list")
    upgrade(CONVERSATIONS.name, CONVERSATIONS.migrations, url)
    env = {"CONVERSATIONS_INBOXES_FILE": "", "LOG_LEVEL": "WARNING", **TEST_ENV, **(extra_env or {}),
           "MAILROOM_BLOCKING_DETECTION_SECONDS": "0"}  # a test-only detector (as bench/e2e.py)
    stack = Stack(services=[CONVERSATIONS], amqp_uri=amqp, database_urls={CONVERSATIONS.name: url},
                  workdir=workdir, extra_env=env)
    from mailroom_testing.tokens import admin_headers

    stack.default_headers = admin_headers()
    stack.start()
    try:
        status, inbox = stack.post("/api/inboxes", {
            "name": "Inbox bench", "channels": [{"address": "support@inbox-bench.test"}],
            "members": [{"user_id": READER, "email": "bench-agent@mailroom.test"}],
            "access": {"visibility": "specific", "teams": []}})
        if status != 201:
            raise RuntimeError(f"could not create the inbox: {status} {inbox}")
        log(f"  seeding {conversations:,} conversations ({3 * conversations:,} messages) in one inbox …")
        seeded = seed(url, inbox["id"], conversations)
        log(f"  seeded in {seeded['seconds']} s (index builds: {seeded['index_build_seconds']})")
        client = Client(stack.ports[CONVERSATIONS.name], READER_HEADERS)
        inbox_path = f"/api/inboxes/{inbox['id']}"
        base = f"{inbox_path}/conversations?view=all&limit=50"
        deep, walked = deep_cursor(client, base, pages=conversations // 100)  # half-way down
        cases = {
            "first_page": f"{inbox_path}/conversations?view=open&limit=50",
            "deep_page": f"{base}&cursor={deep}",
            "view_counts": f"{inbox_path}/views",
            "search_common": f"{inbox_path}/conversations?view=all&limit=50&q=" + urllib.parse.quote("invoice"),
            "search_rare": f"{inbox_path}/conversations?view=all&limit=50&q=" + urllib.parse.quote("warranty"),
            "search_address": f"{inbox_path}/conversations?view=all&limit=50&q="
                              + urllib.parse.quote(f"customer{conversations // 2}@"),
            "search_none": f"{inbox_path}/conversations?view=all&limit=50&q=" + urllib.parse.quote("zebra crossing"),
            "all_inboxes_first_page": "/api/conversations?view=open&limit=50",
        }
        results: dict = {"conversations": conversations, "messages": 3 * conversations, "seeded": seeded,
                         "requests_per_case": requests, "deep_page_after": walked, "latency_ms": {}, "answers": {}}
        for name, path in cases.items():
            latency, body = timed(client, path, requests)
            results["latency_ms"][name] = latency
            if "items" in body:
                results["answers"][name] = {"items": len(body["items"]),
                                            "unread": sum(1 for i in body["items"] if i.get("unread")),
                                            "more": bool(body.get("next_cursor"))}
            else:
                results["answers"][name] = body
            log(f"  {name}: p50 {latency['p50']} ms, p99 {latency['p99']} ms")
        client.close()
        return results
    finally:
        stack.stop()


def text_table(results: dict) -> str:
    lines = [f"inbox list, {results['conversations']:,} conversations in one inbox "
             f"({results['requests_per_case']} requests each)", f"{'request':<24}{'p50 ms':>10}{'p99 ms':>10}  answer"]
    for name, latency in results["latency_ms"].items():
        answer = results["answers"].get(name) or {}
        summary = (f"{answer['items']} items, {answer['unread']} unread" if "items" in answer
                   else f"open {answer.get('open')}, unread {answer.get('unread_counts', {}).get('open')}")
        lines.append(f"{name:<24}{latency['p50']:>10}{latency['p99']:>10}  {summary}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--output", type=Path, default=BENCH / "results" / "inbox_list.json")
    args = parser.parse_args(argv)
    import run  # noqa: PLC0415 - bench/run.py's Infra: fresh vhost and databases, dropped at the end

    resources = run.Infra()
    try:
        with tempfile.TemporaryDirectory(prefix="mailroom-inbox-bench-") as workdir:
            results = measure(resources, Path(workdir), args.conversations, args.requests, log=run.log)
    finally:
        resources.cleanup()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(text_table(results))
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
