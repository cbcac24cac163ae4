"""The outbound half of a chaos run: M replies through the API while outbound is SIGKILLed once and
the SMTP relay (chaos/relay.py, an aiosmtpd sink in a process of its own) is killed and started
again once. The replies are bench/outbound_bench.py's (make_replies: CC recipients, HTML, small
attachments; fire/collect: concurrent keep-alive HTTP clients with a member's bearer token).

Every reply the API accepted (202/200, retried by the clients with the same Idempotency-Key) must
reach the relay. Outbound is at-least-once towards the relay: a send in flight when the process
dies (the relay may already have the message; the worker never recorded its 250) is sent again
with the same bytes and Message-ID once its lease expires, and a relay that goes away after
taking DATA but before its 250 reaches outbound gets the message again on the retry. Such copies
are counted (`relay_duplicates`) and attributed to the fault whose window they fall in: a copy
whose first delivery happened in the `OUTBOUND_SMTP_TIMEOUT` seconds before a kill or a relay
stop. Allowed: at most one per send in flight at a fault (OUTBOUND_DELIVERY_CONCURRENCY per kill
or relay stop); a copy outside every window is a bug.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import checks
import faults as faults_module
import infra
import outbound_bench  # bench/ is on sys.path
from corpus import MEMBER

SMTP_TIMEOUT_S = 20.0
DELIVERY_CONCURRENCY = 4


class Relay:
    """The SMTP relay outbound delivers to (chaos/relay.py), a process on a fixed port: `stop()`
    kills it (SIGKILL: sessions in flight are cut, as when a relay crashes), `start()` starts a
    new one on the same port and record file."""

    def __init__(self, port: int, record: Path, delay_ms: float = 0.0):
        self.port = port
        self.record = record
        self.delay_ms = delay_ms
        self.process: subprocess.Popen | None = None
        self.failures: list[str] = []

    def start(self, timeout: float = 30) -> None:
        log = open(self.record.with_suffix(".log"), "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("relay.py")), "--port",
                                         str(self.port), "--record", str(self.record), "--delay-ms",
                                         str(self.delay_ms)],
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                self.failures.append(f"relay exited with {self.process.returncode}: "
                                     f"{self.record.with_suffix('.log').read_text(errors='replace')[-500:]}\n"
                                     f"{infra.who_holds(self.port)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(self.failures[-1])
                time.sleep(0.5)
                self.process = subprocess.Popen(self.process.args, stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True)
                continue
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
                    probe.recv(100)  # the greeting: it is this relay, not a stale socket
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def arrivals(self) -> list[dict]:
        try:
            lines = self.record.read_text().splitlines()
        except OSError:
            return []
        return [json.loads(line) for line in lines if line.strip()]


def conversations_to_reply_to(dbs: checks.Databases, count: int, seed: int) -> list[tuple[str, str, str]]:
    """(conversation id, its first inbound Message-ID, its sender) for up to `count` non-spam
    conversations started by a customer (not by the inbox's member forwarding)."""
    rows = dbs.rows("conversations", """
        SELECT DISTINCT ON (m.conversation_id) m.conversation_id, m.rfc_message_id, m.sender
        FROM messages m JOIN conversations c ON c.id = m.conversation_id
        WHERE m.direction = 'in' AND NOT c.spam
        ORDER BY m.conversation_id, m.received_at""")
    candidates = [(r.conversation_id, r.rfc_message_id.lower(), ((r.sender or {}).get("email") or "").lower())
                  for r in rows]
    candidates = [c for c in candidates if c[2] and c[2] != MEMBER[1]]
    random.Random(seed).shuffle(candidates)
    return candidates[:count]


def run(args, env: dict, log) -> dict:
    from mailroom_testing.tokens import token as mint

    stack, relay, dbs, rabbit = env["stack"], env["relay"], env["dbs"], env["rabbit"]
    rng = random.Random(args.seed * 31 + 7)
    threads = conversations_to_reply_to(dbs, max(10, min(200, args.replies // 3)), args.seed)
    if not threads:
        raise RuntimeError("no conversation to reply to")
    requests = outbound_bench.make_replies(threads, args.replies, "chaos", seed=args.seed)
    send_s = max(20.0, args.replies / 10)
    rate = len(requests) / send_s
    plan = [faults_module.Fault("kill", "outbound", rng.uniform(0.15, 0.75) * send_s, rng.uniform(0.2, 2.0)),
            faults_module.Fault("relay_restart", "relay", rng.uniform(0.15, 0.75) * send_s, rng.uniform(0.5, 3.0))]
    plan.sort(key=lambda f: f.at_s)
    log(f"outbound half: {len(requests)} replies to {len(threads)} conversations at {rate:.1f}/s over "
        f"~{send_s:.0f} s; faults: " + ", ".join(f"{f.kind}:{f.target}@{f.at_s:.0f}s" for f in plan))
    before = len(relay.arrivals())

    def kill(fault, since):
        stack.kill_process("outbound")
        fault.down_at_s = since()
        time.sleep(fault.down_s)
        faults_module.restart_process(stack, "outbound", fault, since)
        fault.back_at_s = since()

    def relay_restart(fault, since):
        relay.stop()
        fault.down_at_s = since()
        time.sleep(fault.down_s)
        failed = len(relay.failures)
        relay.start()
        fault.notes.extend(relay.failures[failed:])
        fault.back_at_s = since()

    token = mint(outbound_bench.AGENT, email=MEMBER[1], seconds=3600)
    handle = outbound_bench.fire(stack.ports["outbound"], token, requests, args.clients, rate)
    t0 = handle["start_at"]
    injector = faults_module.FaultInjector(plan, {"kill": kill, "relay_restart": relay_restart}, t0, log).start()
    env["injector"] = injector
    sent = outbound_bench.collect(handle, timeout=send_s * 4 + 300)
    injector.join()
    accepted = {r[4]: r[0] for r in sent["results"]}  # Message-ID → reply number
    log(f"  replies sent in {time.monotonic() - t0:.1f} s: {len(accepted)} accepted "
        f"({sent['statuses']}, {sent['error_count']} errors); waiting for delivery …")
    quiet = checks.wait_quiescent(rabbit, dbs, env["subscriber"], args.quiesce_timeout, log,
                                  ignored=env.get("ignored_queues", set()))
    seconds = time.monotonic() - t0

    arrivals = [(a["message_id"], a["at"]) for a in relay.arrivals()[before:]]
    per_id = Counter(mid for mid, _ in arrivals)
    first_at: dict[str, float] = {}
    for mid, at in arrivals:
        first_at.setdefault(mid, at)
    delivered = {mid for mid in accepted if per_id.get(mid)}
    not_delivered = sorted(set(accepted) - delivered)
    # the faults' windows: sends in flight when outbound died or the relay stopped
    windows = [(t0 + f.down_at_s, f) for f in plan if f.down_at_s is not None]
    duplicates, outside = [], []
    for mid, n in per_id.items():
        if n < 2:
            continue
        at = first_at[mid]
        fault = next((f for stop, f in windows if stop - SMTP_TIMEOUT_S - 1 <= at <= stop + 0.5), None)
        duplicates.append({"message_id": mid, "copies": n, "first_at_s": round(at - t0, 2),
                           "window": f"{fault.kind}:{fault.target}" if fault else None})
        if fault is None:
            outside.append(mid)
    copies = sum(n - 1 for n in per_id.values() if n > 1)
    allowed = DELIVERY_CONCURRENCY * len(windows)

    # effects in conversations and contacts: each sent reply once
    out_messages = dbs.rows("conversations", "SELECT lower(rfc_message_id) AS mid, count(*) AS n FROM messages "
                                             "WHERE direction = 'out' GROUP BY lower(rfc_message_id)")
    stored_out = {r.mid: r.n for r in out_messages}
    # one entry per recipient's contact (a reply with CC is on each recipient's timeline)
    out_entries = dbs.rows("contacts", "SELECT contact_id, lower(rfc_message_id) AS mid, count(*) AS n "
                                       "FROM timeline_entries WHERE direction = 'out' "
                                       "GROUP BY contact_id, lower(rfc_message_id)")
    timeline_out: Counter = Counter()
    doubled_entries = 0
    for r in out_entries:
        timeline_out[checks.clean_id(r.mid)] += 1
        doubled_entries += r.n - 1
    states = dict(dbs.rows("outbound", "SELECT state, count(*) FROM emails GROUP BY state"))
    duplicated = {
        "conversations: a sent reply stored twice": sum(n - 1 for n in stored_out.values() if n > 1),
        "contacts: two timeline entries for one sent reply and contact": doubled_entries,
    }
    events = checks.event_counts(env["subscriber"].snapshot())
    for check, n in events["duplicated_breakdown"].items():
        if check.startswith("email_"):
            duplicated[f"events: {check}"] = n
    return {
        "replies": len(requests), "accepted": len(accepted), "delivered": len(delivered),
        "not_delivered": len(not_delivered), "not_delivered_examples": not_delivered[:20],
        "relay_duplicates": copies, "relay_duplicates_allowed": allowed,
        "relay_duplicates_outside_fault_windows": len(outside), "relay_duplicate_details": duplicates[:20],
        "at_most_one_per_fault": all(sum(1 for d in duplicates if d["window"] == f"{f.kind}:{f.target}") <= 1
                                     for f in plan),
        "stored_in_conversations": sum(1 for mid in accepted if stored_out.get(mid)),
        "on_timeline": sum(1 for mid in accepted if timeline_out.get(mid)),
        "timeline_entries": sum(timeline_out[mid] for mid in accepted),
        "recipients": sum(1 + len(requests[number].cc) for number in accepted.values()),
        "email_states": states, "duplicated": sum(duplicated.values()),
        "duplicated_breakdown": {k: v for k, v in duplicated.items() if v},
        "http_statuses": sent["statuses"], "http_errors": sent["error_count"],
        "http_error_samples": sent["errors"][:10],
        "seconds": round(seconds, 1), "quiescent": quiet["quiescent"], "pending_at_end": quiet["pending"],
        "faults": [f.as_dict() for f in plan],
    }

