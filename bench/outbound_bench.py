"""Outbound: agents' replies through to an SMTP sink, with real parts.

ingest (+ SMTP listener), contacts, conversations and outbound run as `mailroom-service` processes
(exactly as the tests start them) on a fresh vhost and fresh PostgreSQL databases; outbound relays
to an aiosmtpd server in a thread of this process (the sink), which records when each message
arrives and checks it. Customer emails sent through the SMTP listener first make the
conversations replied to (the cheapest real way to get them: the full inbound path). Then a child
process of concurrent HTTP clients (keep-alive, one connection each, a member's bearer token) posts
N distinct replies to `POST /api/outbound/conversations/{id}/replies` as fast as they are accepted,
each with its own `Idempotency-Key` (retried with the same key on a 5xx or a broken connection);
some have CC recipients, some a small attachment, some HTML.

Rate = replies received by the sink / (first HTTP request → the sink has all of them). Latency:
HTTP 202 (client process) → the message's DATA at the sink, both CLOCK_MONOTONIC; at saturation
that is mostly the backlog, so a second batch is sent open loop at half the measured rate. The
sink checks each message: its Message-ID is the one the API answered, In-Reply-To is the
customer's email, the customer and the CC recipients are in the envelope, the attachment is there
(the body's marker tells which reply it is). Ten replies are then posted again with their
Idempotency-Key: each must answer 200 with the same email, and nothing more may reach the sink.

Named outbound_bench.py, not outbound.py: bench/ is first on sys.path when bench/run.py runs, and
a bench/outbound.py would shadow the service package (the stack's migrations import outbound.models).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import http.client
import json
import multiprocessing
import os
import random
import re
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from email.utils import format_datetime, formataddr
from pathlib import Path

import e2e  # bench/ is on sys.path
from aiosmtpd.controller import Controller
from corpus import INBOX_ADDRESS, MEMBER, CorpusMessage
from sqlalchemy import create_engine, text

from mailroom_shared.db import normalise_url
from mailroom_testing.specs import CONTACTS, CONVERSATIONS, INGEST, OUTBOUND
from mailroom_testing.stack import Stack, free_port

SERVICES = [INGEST, CONTACTS, CONVERSATIONS, OUTBOUND]
AGENT = "agent-1"  # the bench inbox's member (e2e.INBOXES_YAML): only members may reply
_MARKER = re.compile(rb"mrbench-([a-z0-9]+)-(\d{6})")
WORDS = ("order", "parcel", "invoice", "refund", "delivery", "address", "account", "password", "subscription",
         "update", "warehouse", "courier", "tracking", "number", "receipt", "discount", "return", "label", "exchange",
         "size", "colour", "payment", "card", "bank", "transfer", "week", "tomorrow", "today", "friday", "apology",
         "replacement", "voucher", "shipment", "stock")


# --- the SMTP sink ----------------------------------------------------------------------------------


@dataclass
class Received:
    at: float  # time.monotonic() when DATA was complete
    message_id: str
    in_reply_to: str
    rcpt_tos: list[str]
    marker: tuple[str, int] | None  # (run tag, reply index) from the body
    multipart_mixed: bool  # has an attachment
    size: int


class Sink:
    """aiosmtpd handler: 250 to everything, and a record of each message (headers only are parsed)."""

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s  # answer DATA this much later (a remote relay's round trips), without blocking
        self.lock = threading.Lock()
        self.by_message_id: dict[str, Received] = {}
        self.by_marker: dict[tuple[str, int], Received] = {}
        self.duplicates = 0
        self.count = 0

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        now = time.monotonic()
        raw = envelope.original_content or envelope.content
        headers = BytesParser(policy=policy.compat32).parsebytes(raw, headersonly=True)
        match = _MARKER.search(raw)
        record = Received(
            at=now, message_id=(headers.get("Message-ID") or "").strip().strip("<>").lower(),
            in_reply_to=(headers.get("In-Reply-To") or "").strip().strip("<>").lower(),
            rcpt_tos=[r.lower() for r in envelope.rcpt_tos],
            marker=(match.group(1).decode(), int(match.group(2))) if match else None,
            multipart_mixed=(headers.get_content_type() == "multipart/mixed"), size=len(raw))
        with self.lock:
            self.count += 1
            if record.message_id in self.by_message_id:
                self.duplicates += 1
            else:
                self.by_message_id[record.message_id] = record
                if record.marker:
                    self.by_marker.setdefault(record.marker, record)
            queue_id = f"S{self.count:06d}"
        return f"250 2.0.0 Ok: queued as {queue_id}"

    def received(self, tag: str) -> int:
        with self.lock:
            return sum(1 for marker in self.by_marker if marker[0] == tag)


@contextlib.contextmanager
def running_sink(delay_s: float = 0.0):
    sink = Sink(delay_s)
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield sink, controller.port
    finally:
        controller.stop()


# --- the stack ------------------------------------------------------------------------------------


@dataclass
class OutboundStack:
    stack: Stack
    smtp_port: int
    amqp: str
    urls: dict[str, str]
    pids: dict[str, int] = field(default_factory=dict)


@contextlib.contextmanager
def running_stack(resources, workdir: Path, sink_port: int, extra_env: dict | None = None):
    """`resources`: bench/run.py's Infra (fresh vhost and databases, dropped by its cleanup)."""
    workdir.mkdir(parents=True, exist_ok=True)
    amqp = resources.vhost()
    urls = {spec.name: resources.database(spec.name) for spec in SERVICES}
    inboxes = workdir / "inboxes.yaml"
    inboxes.write_text(e2e.INBOXES_YAML)
    smtp_port = free_port()
    env = {"CONVERSATIONS_INBOXES_FILE": str(inboxes), "INGEST_SMTP_PORT": str(smtp_port), "LOG_LEVEL": "WARNING",
           "INGEST_BLOB_DIR": str(workdir / "blobs"), "OUTBOUND_SMTP_HOST": "127.0.0.1",
           "OUTBOUND_SMTP_PORT": str(sink_port), "OUTBOUND_SMTP_TIMEOUT": "30", **e2e.SERVICE_DEFAULTS}
    env.update(extra_env or {})
    stack = Stack(services=list(SERVICES), amqp_uri=amqp, database_urls=urls, workdir=workdir, extra_env=env)
    try:
        stack.start()
        stack.start_process("smtp", [sys.executable, "-m", "ingest.smtp_listener"], port=smtp_port)
        e2e.wait_for_inbox_address(urls["ingest"])
        yield OutboundStack(stack, smtp_port, amqp, urls, {name: p.pid for name, p in stack.processes.items()})
    finally:
        stack.stop()


# --- the conversations replied to -------------------------------------------------------------------


def customer_mail(count: int, tag: str) -> list[CorpusMessage]:
    """Small, distinct plain-text customer emails to the bench inbox, one conversation each."""
    mail = []
    for i in range(count):
        message_id = f"cust-{tag}-{i:05d}@customers.example"
        sender = f"customer{i:05d}@customers.example"
        raw = "\r\n".join([
            f"From: {formataddr((f'Customer {i}', sender))}", f"To: {formataddr(('Support', INBOX_ADDRESS))}",
            f"Subject: Order #{10000 + i} has not arrived ({tag})", f"Message-ID: <{message_id}>",
            f"Date: {format_datetime(_date(i))}", "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8", "",
            f"Hello,\r\n\r\nmy order #{10000 + i} was due last week and has not arrived. Where is it?\r\n\r\n"
            f"Customer {i}", ""]).encode()
        mail.append(CorpusMessage(index=i, message_id=message_id, sender=sender, raw=raw, kind="new",
                                  attachments=0))
    return mail


def _date(i: int) -> dt.datetime:
    return dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC) + dt.timedelta(seconds=i)


def make_conversations(bench: OutboundStack, count: int, tag: str, clients: int,
                       log=print) -> list[tuple[str, str, str]]:
    """Sends `count` customer emails through the SMTP listener; returns (conversation id, the
    customer's Message-ID, the customer's address) for each, once conversations has stored them all."""
    mail = customer_mail(count, tag)
    handle = e2e.send_all(bench.smtp_port, mail, clients)
    sent = e2e.collect(handle)
    if sent["error_count"]:
        log(f"    ({sent['error_count']} SMTP errors while seeding, retried: {sent['errors'][:2]})")
    wanted = {m.message_id for m in mail}
    engine = create_engine(normalise_url(bench.urls["conversations"]))
    try:
        deadline = time.monotonic() + 300
        while True:
            with engine.connect() as connection:
                rows = connection.execute(text(
                    "SELECT lower(rfc_message_id), conversation_id FROM messages WHERE direction = 'in'")).all()
            found = {mid: cid for mid, cid in rows if mid in wanted}
            if len(found) == len(wanted):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(found)}/{len(wanted)} customer emails became conversations")
            time.sleep(0.3)
    finally:
        engine.dispose()
    return [(found[m.message_id], m.message_id, m.sender) for m in mail]


# --- the replies -------------------------------------------------------------------------------------


@dataclass
class ReplyRequest:
    index: int
    conversation_id: str
    replied_message_id: str  # the customer's Message-ID: the reply's In-Reply-To
    customer: str  # the reply's To (the sender of the message replied to)
    body: bytes  # JSON
    key: str  # Idempotency-Key
    cc: list[str]
    attachment: bool


def make_replies(conversations: list[tuple[str, str, str]], count: int, tag: str,
                 seed: int = 6) -> list[ReplyRequest]:
    """`count` distinct replies, round robin over the conversations: every one has its own text
    (with a marker the sink looks for), 1 in 3 is HTML, 1 in 5 has CC recipients, 1 in 8 a small
    attachment (2–8 KB)."""
    rng = random.Random(seed)
    requests = []
    for i in range(count):
        conversation_id, customer_id, customer = conversations[i % len(conversations)]
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 80)))
        marker = f"mrbench-{tag}-{i:06d}"
        body: dict = {}
        if i % 3 == 1:
            body["html"] = (f"<p>{marker}</p><p>Hello, thanks for writing. About your <b>order</b>: {words}.</p>"
                            f"<p>Best regards,<br>Agent Smith</p>")
        else:
            body["text"] = f"{marker}\n\nHello, thanks for writing. About your order: {words}.\n\nBest regards,\nAgent"
        cc = []
        if i % 5 == 2:
            cc = [f"colleague{i % 17}@customers.example"] + ([f"manager{i % 7}@partner.example"] if i % 2 else [])
            body["cc"] = [cc[0], {"email": cc[1], "name": "Line Manager"}] if len(cc) > 1 else cc
        attachment = i % 8 == 5
        if attachment:
            payload = bytes(rng.getrandbits(8) for _ in range(rng.randint(2048, 8192)))
            body["attachments"] = [{"filename": f"label-{i}.pdf", "content_type": "application/pdf",
                                    "content_base64": base64.b64encode(b"%PDF-1.4\n" + payload).decode()}]
        requests.append(ReplyRequest(i, conversation_id, customer_id, customer, json.dumps(body).encode(),
                                     f"bench-{tag}-{i:06d}", [c.lower() for c in cc], attachment))
    return requests


def _clients_main(port: int, token: str, requests: list[tuple[int, str, bytes, str]], clients: int, start_at: float,
                  rate: float | None, shared: dict, out) -> None:
    """Child process: `clients` threads, one keep-alive HTTP connection each, take the next request
    (as soon as they can, or open loop: request i is due at start_at + i / rate) until there is none
    or the harness sets `shared["stop"]`; `shared["accepted"]` counts the 2xx answers."""
    results: list = [None] * len(requests)
    errors: list[str] = []
    statuses: Counter = Counter()
    lock = threading.Lock()
    cursor = {"next": 0}

    def client() -> None:
        connection = None
        while True:
            with lock:
                if cursor["next"] >= len(requests) or shared["stop"].is_set():
                    break
                index = cursor["next"]
                cursor["next"] += 1
            number, conversation_id, body, key = requests[index]
            delay = start_at + (index / rate if rate else 0.0) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            began = time.monotonic()
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}",
                       "Idempotency-Key": key}
            for attempt in range(1, 21):
                try:
                    if connection is None:
                        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                    connection.request("POST", f"/api/outbound/conversations/{conversation_id}/replies", body,
                                       headers)
                    response = connection.getresponse()
                    payload = response.read()
                    done = time.monotonic()
                    with lock:
                        statuses[response.status] += 1
                    if response.will_close:
                        connection.close()
                        connection = None
                    if response.status in (200, 202):
                        email = json.loads(payload)
                        results[index] = (number, began, done, response.status, email["message_id"].lower(),
                                          attempt)
                        with shared["accepted"].get_lock():
                            shared["accepted"].value += 1
                        break
                    if response.status < 500:  # the request is wrong: retrying will not help
                        with lock:
                            errors.append(f"{number}: HTTP {response.status} {payload[:200]!r}")
                        break
                    with lock:
                        errors.append(f"{number}: HTTP {response.status} {payload[:200]!r}")
                except (OSError, http.client.HTTPException) as exc:
                    with lock:
                        errors.append(f"{number}: {exc!r}"[:300])
                    if connection is not None:
                        connection.close()
                    connection = None
                time.sleep(0.2)  # then the same request with the same Idempotency-Key
        if connection is not None:
            connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    times = os.times()
    shared["finished"].set()
    out.send({"results": [r for r in results if r is not None], "errors": errors[:50], "error_count": len(errors),
              "statuses": dict(statuses), "taken": cursor["next"], "cpu_s": times.user + times.system})
    out.close()


def fire(port: int, token: str, requests: list[ReplyRequest], clients: int, rate: float | None = None) -> dict:
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    payload = [(r.index, r.conversation_id, r.body, r.key) for r in requests]
    start_at = time.monotonic() + 0.2
    shared = {"stop": context.Event(), "finished": context.Event(), "accepted": context.Value("i", 0)}
    process = context.Process(target=_clients_main, args=(port, token, payload, clients, start_at, rate, shared,
                                                          sender), daemon=True)
    process.start()
    sender.close()
    return {"process": process, "receiver": receiver, "start_at": start_at, **shared}


def collect(handle: dict, timeout: float = 600) -> dict:
    if not handle["receiver"].poll(timeout):
        raise TimeoutError("HTTP clients did not finish")
    result = handle["receiver"].recv()
    handle["process"].join(10)
    return result


def wait_for_sink(sink: Sink, tag: str, count: int, handle: dict, send_s: float | None = None,
                  stall_timeout: float = 60.0, log=None) -> bool:
    """Until the sink has every reply of `tag` the API accepted (`count` if all are sent); False if
    nothing new arrives for `stall_timeout` s after the HTTP clients are done (3× that before).
    With `send_s`, the clients take no new request after `send_s` seconds."""
    last_count, last_change, reported = -1, time.monotonic(), time.monotonic()
    while True:
        received = sink.received(tag)
        finished = handle["finished"].is_set()
        accepted = handle["accepted"].value
        if received >= count or (finished and received >= accepted):
            return True
        now = time.monotonic()
        if send_s and not finished and not handle["stop"].is_set() and now - handle["start_at"] >= send_s:
            handle["stop"].set()
            if log:
                log(f"    … {send_s:.0f} s of requests: {accepted} accepted, {received} at the sink; no new requests")
        if received != last_count:
            last_count, last_change = received, now
        elif now - last_change > stall_timeout * (1 if finished else 3):
            return False
        if log and now - reported >= 15:
            reported = now
            log(f"    … {received}/{count} at the sink")
        time.sleep(0.05)


def run_replies(bench: OutboundStack, sink: Sink, requests: list[ReplyRequest], clients: int, tag: str, token: str,
                extra_pids: dict[str, int] | None = None, rate: float | None = None, send_s: float | None = None,
                log=print) -> dict:
    """Fire `requests` (closed loop, or paced at `rate` per second; with `send_s`, for that many
    seconds at most), wait until the sink has all those accepted, then until every service queue
    is drained."""
    pids = dict(bench.pids)
    pids.update(extra_pids or {})
    cpu_before = e2e.cpu_snapshot(pids)
    handle = fire(bench.stack.ports["outbound"], token, requests, clients, rate)
    complete = wait_for_sink(sink, tag, len(requests), handle, send_s, log=log)
    delivered_at = time.monotonic()
    cpu_delivered = e2e.cpu_snapshot(pids)
    sent = collect(handle)
    drained_at = e2e.wait_idle(bench.amqp, services=SERVICES)
    cpu_drained = e2e.cpu_snapshot(pids)
    cpu_before["bench_http_clients"] = 0.0  # the child process's own count, sent when it is done
    cpu_delivered["bench_http_clients"] = cpu_drained["bench_http_clients"] = sent["cpu_s"]

    results = sent["results"]
    if not results:
        raise RuntimeError(f"no reply was accepted: {sent['errors'][:5]}")
    requests = requests[:sent["taken"]]  # taken in order; the rest were not sent (send_s)
    by_index = {r.index: r for r in requests}
    with sink.lock:
        arrivals = {marker[1]: record for marker, record in sink.by_marker.items() if marker[0] == tag}
        duplicates = sink.duplicates
    first = min(r[1] for r in results)
    last_accept = max(r[2] for r in results)
    latencies, problems = [], Counter()
    for number, _began, accepted, _status, message_id, _attempt in results:
        record = arrivals.get(number)
        if record is None:
            problems["not delivered"] += 1
            continue
        latencies.append(record.at - accepted)
        request = by_index[number]
        if record.message_id != message_id:
            problems["Message-ID differs from the API's answer"] += 1
        if record.in_reply_to != request.replied_message_id:
            problems["In-Reply-To is not the customer's email"] += 1
        if request.customer not in record.rcpt_tos:
            problems["the customer is missing from RCPT TO"] += 1
        if any(cc not in record.rcpt_tos for cc in request.cc):
            problems["a CC recipient is missing from RCPT TO"] += 1
        if request.attachment != record.multipart_mixed:
            problems["attachment missing (or unexpected)"] += 1
    delivered = [arrivals[r[0]].at for r in results if r[0] in arrivals]
    last_arrival = max(delivered) if delivered else delivered_at
    elapsed = last_arrival - first
    while_sending = sum(1 for at in delivered if at <= last_accept)
    return {
        "replies": len(requests), "accepted": len(results), "delivered": len(delivered), "complete": complete,
        "clients": clients, "offered_rate": rate, "seconds": round(elapsed, 2),
        "emails_per_s": round(len(delivered) / elapsed, 1) if elapsed > 0 else None,
        "http_accept_per_s": round(len(results) / (last_accept - first), 1) if last_accept > first else None,
        "http_seconds": round(last_accept - first, 2),
        # the sink's rate while requests were still being accepted, and after the last one (the backlog)
        "emails_per_s_while_accepting": round(while_sending / (last_accept - first), 1)
        if last_accept > first else None,
        "emails_per_s_after_last_accept": round((len(delivered) - while_sending) / (last_arrival - last_accept), 1)
        if last_arrival > last_accept else None,
        "latency_ms": e2e.percentiles(latencies),  # HTTP 202 → DATA complete at the sink
        "http_latency_ms": e2e.percentiles([r[2] - r[1] for r in results]),  # request sent → 202 (with retries)
        "drained_seconds": round(max(drained_at, last_arrival) - first, 2),  # until every service queue was empty
        "http_statuses": sent["statuses"], "http_errors": sent["error_count"], "http_error_samples": sent["errors"][:5],
        "retried_requests": sum(1 for r in results if r[5] > 1),
        "sink_duplicates": duplicates, "problems": dict(problems),
        "with_cc": sum(1 for r in requests if r.cc), "with_attachment": sum(1 for r in requests if r.attachment),
        "mean_message_bytes": round(sum(a.size for a in arrivals.values()) / max(len(arrivals), 1)),
        # CPU per delivered reply (ms): first request → the sink has all (outbound's share) and
        # → every queue drained (conversations/contacts storing the sent messages too)
        "cpu_ms_per_email": e2e.cpu_per_email_ms(cpu_before, cpu_delivered, len(delivered)),
        "cpu_ms_per_email_drained": e2e.cpu_per_email_ms(cpu_before, cpu_drained, len(delivered)),
    }


def replay_check(bench: OutboundStack, sink: Sink, requests: list[ReplyRequest], tag: str, token: str) -> dict:
    """Posts already delivered replies again with the same Idempotency-Key: each must answer 200
    with the email already sent (same Message-ID), and nothing more may reach the sink."""
    with sink.lock:
        before = sink.count
        sent = {index: record.message_id for (t, index), record in sink.by_marker.items() if t == tag}
    same, statuses = 0, Counter()
    connection = http.client.HTTPConnection("127.0.0.1", bench.stack.ports["outbound"], timeout=60)
    try:
        for request in requests:
            connection.request("POST", f"/api/outbound/conversations/{request.conversation_id}/replies",
                               request.body, {"Content-Type": "application/json", "Authorization": f"Bearer {token}",
                                              "Idempotency-Key": request.key})
            response = connection.getresponse()
            payload = response.read()
            statuses[response.status] += 1
            if response.status == 200 and json.loads(payload)["message_id"].lower() == sent.get(request.index):
                same += 1
    finally:
        connection.close()
    time.sleep(2)  # a second copy would have been delivered by now
    with sink.lock:
        extra = sink.count - before
    return {"sent": len(requests), "answered_with_the_same_email": same, "statuses": dict(statuses),
            "extra_deliveries": extra}


def measure(resources, workdir: Path, n: int, clients: int = 8, conversations: int | None = None,
            extra_env: dict | None = None, seed: int = 6, send_s: float | None = None, paced: bool = True,
            sink_delay_ms: float = 0.0, log=print) -> dict:
    """The whole outbound benchmark: stack + sink, the conversations, a 40-reply warm-up, `n`
    replies as fast as they are accepted, a replay of 10 of them (same Idempotency-Key), then ~12 s
    of replies at half the measured rate for the latency. With `send_s`, the HTTP clients take no
    new reply after that many seconds (keeps `make bench` within its time budget while delivery is
    slow; `replies` in the result says how many were sent)."""
    from mailroom_testing.tokens import token as mint

    conversations = conversations or max(20, min(200, n // 10))
    token = mint(AGENT, email=MEMBER[1], seconds=3600)
    started = time.monotonic()
    with running_sink(sink_delay_ms / 1000) as (sink, sink_port), \
            running_stack(resources, workdir, sink_port, extra_env) as bench:
        log(f"  stack up in {time.monotonic() - started:.1f} s; {conversations} customer emails through the SMTP "
            f"listener to reply to …")
        t0 = time.monotonic()
        threads = make_conversations(bench, conversations, "seed", clients=4, log=log)
        seeded_s = round(time.monotonic() - t0, 1)
        e2e.wait_idle(bench.amqp, services=SERVICES)
        harness = {"bench_harness_and_sink": os.getpid()}
        warm = run_replies(bench, sink, make_replies(threads, min(40, n), "warm", seed=seed + 1), clients, "warm",
                           token, harness, log=lambda _message: None)
        log(f"  {len(threads)} conversations in {seeded_s} s; warm-up: {warm['delivered']}/{warm['replies']} "
            f"replies delivered")
        requests = make_replies(threads, n, "main", seed=seed)
        log(f"  {n} replies ({sum(1 for r in requests if r.cc)} with CC, "
            f"{sum(1 for r in requests if r.attachment)} with an attachment) from {clients} HTTP clients, "
            f"as fast as they are accepted" + (f", for {send_s:.0f} s at most" if send_s else "") + " …")
        result = run_replies(bench, sink, requests, clients, "main", token, harness, send_s=send_s, log=log)
        result["replies_wanted"] = n
        result["send_s"] = send_s
        result["conversations"] = len(threads)
        result["seed_seconds"] = seeded_s
        result["sink_delay_ms"] = sink_delay_ms
        result["warm_up"] = {k: warm[k] for k in ("replies", "delivered", "emails_per_s", "problems")}
        result["idempotent_replays"] = replay_check(bench, sink, requests[:10], "main", token)
        if paced and result["emails_per_s"]:
            rate = max(1.0, result["emails_per_s"] / 2)
            paced_count = int(max(50, rate * 12))
            log(f"  latency at half that rate: {paced_count} replies at {rate:.1f}/s …")
            half = run_replies(bench, sink, make_replies(threads, paced_count, "paced", seed=seed + 2), clients,
                               "paced", token, harness, rate=rate, log=log)
            result["half_rate"] = {k: half[k] for k in (
                "replies", "delivered", "offered_rate", "emails_per_s", "latency_ms", "http_latency_ms", "problems",
                "http_errors", "sink_duplicates")}
            log(f"  → p50 {half['latency_ms']['p50']} ms, p99 {half['latency_ms']['p99']} ms (HTTP 202 → sink)")
        result["peak_rss_mb"] = e2e.peak_rss_mb(bench.pids)
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    return result
