"""Quiescence and the counts of a chaos run, read from the services' databases, the broker and
the external subscriber's record.

`lost`: a message the SMTP listener accepted (250) that is not stored as exactly one inbound
message in conversations. `duplicated`: the sum of every doubled effect found —
- conversations: a message stored twice (same inbox and Message-ID, or same intake id), a
  conversation whose message_count exceeds its messages (a count applied twice);
- contacts: an address on two contacts, a contact with no address left (a second creation that
  lost the race but kept its row), two timeline entries for one message and direction;
- ingest: two intake rows for one message and channel;
- the events other systems see: the same logical event published under two CloudEvents ids
  (two message_received for one intake row, two message_added for one stored message or one
  Message-ID, two conversation_created for one conversation, two contact_created for one
  address, two timeline_entry_added for one entry, two email_sent for one email).
Re-publishing the *same* event id is not a duplicate effect (consumers de-duplicate on it):
it is counted in `redeliveries`.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter, defaultdict

from sqlalchemy import create_engine, text

from mailroom_shared.db import normalise_url
from mailroom_shared.messaging.topology import AUDIT_QUEUE

# the bounded audit queue is nobody's work; nameko's RPC reply queues (`rpc.reply-<service>-<uuid>`,
# x-expires 5 min) of a killed process may hold a reply nobody will read until the broker drops them
IGNORED_QUEUES = (AUDIT_QUEUE,)
IGNORED_PREFIXES = ("rpc.reply-",)
OUTBOUND_OPEN_STATES = ("queued", "sending", "deferred")


class Databases:
    def __init__(self, urls: dict[str, str]):
        self.engines = {name: create_engine(normalise_url(url), pool_pre_ping=True, pool_size=2)
                        for name, url in urls.items()}

    def rows(self, service: str, sql: str, **params) -> list:
        with self.engines[service].connect() as connection:
            return connection.execute(text(sql), params).all()

    def scalar(self, service: str, sql: str, **params):
        with self.engines[service].connect() as connection:
            return connection.execute(text(sql), params).scalar()

    def dispose(self) -> None:
        for engine in self.engines.values():
            engine.dispose()


def clean_id(value: str | None) -> str:
    return (value or "").strip().strip("<>").strip().lower()


# --- quiescence -------------------------------------------------------------------------------------


def pending_work(rabbit, dbs: Databases, ignored: set[str] = frozenset()) -> dict:
    """What is still to do: messages in any queue (ready or unacknowledged; dead-letter queues, the
    bounded audit queue and RPC reply queues aside), unpublished outbox rows, intake rows not yet processed,
    outbound emails not in a final state."""
    pending: dict = {}
    try:
        queues = rabbit.queues()
    except Exception as exc:  # noqa: BLE001 - the broker may be restarting
        return {"broker": repr(exc)[:200]}
    busy = {q["name"]: q["messages"] for q in queues
            if q["messages"] and not q["name"].endswith(".dlq") and q["name"] not in IGNORED_QUEUES
            and not q["name"].startswith(IGNORED_PREFIXES) and q["name"] not in ignored
            and not any(q["name"].startswith(f"{name}.retry.") for name in ignored)}
    if busy:
        pending["queues"] = busy
    try:
        for service in dbs.engines:
            count = dbs.scalar(service, "SELECT count(*) FROM outbox WHERE published_at IS NULL")
            if count:
                pending[f"{service}.outbox"] = count
        stored = dbs.scalar("ingest", "SELECT count(*) FROM intake WHERE status = 'stored'")
        if stored:
            pending["ingest.intake_unprocessed"] = stored
        if "outbound" in dbs.engines:
            open_emails = dbs.scalar("outbound", "SELECT count(*) FROM emails WHERE state = ANY(:states)",
                                     states=list(OUTBOUND_OPEN_STATES))
            if open_emails:
                pending["outbound.emails_not_final"] = open_emails
    except Exception as exc:  # noqa: BLE001 - the database may be restarting
        pending["database"] = repr(exc)[:200]
    return pending


def wait_quiescent(rabbit, dbs: Databases, subscriber, timeout: float, log, quiet_for: float = 5.0,
                   ignored: set[str] = frozenset()) -> dict:
    """Until nothing is pending and the subscriber has received nothing new for `quiet_for` s;
    returns {"quiescent": bool, "seconds": waited, "pending": what was left at the end}."""
    started = time.monotonic()
    deadline = started + timeout
    quiet_since = None
    last_seen = -1
    last_report = started
    pending: dict = {}
    while time.monotonic() < deadline:
        pending = pending_work(rabbit, dbs, ignored)
        seen = subscriber.count
        if not pending and seen == last_seen:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= quiet_for:
                return {"quiescent": True, "seconds": round(time.monotonic() - started, 1), "pending": {}}
        else:
            quiet_since = None
        last_seen = seen
        if time.monotonic() - last_report >= 15:
            last_report = time.monotonic()
            log(f"  … waiting for quiescence ({time.monotonic() - started:.0f} s): {pending or 'settling'}")
        time.sleep(1.0)
    consumers = {}
    with contextlib.suppress(Exception):
        consumers = {q["name"]: q["consumers"] for q in rabbit.queues() if q["name"] in pending.get("queues", {})}
    return {"quiescent": False, "seconds": round(time.monotonic() - started, 1), "pending": pending,
            "consumers_of_busy_queues": consumers}


def dead_letters(rabbit) -> dict[str, int]:
    return {q["name"]: q["messages"] for q in rabbit.queues() if q["name"].endswith(".dlq") and q["messages"]}


# --- the inbound counts -------------------------------------------------------------------------------


def inbound_counts(dbs: Databases, accepted_ids: set[str], resent_ids: set[str], parents: dict[str, str]) -> dict:
    """`accepted_ids`: Message-IDs the listener answered 250 for; `parents`: a reply's Message-ID →
    its parent's (to report threading)."""
    out: dict = {}
    problems: dict[str, int] = {}
    examples: dict[str, list] = defaultdict(list)

    def problem(name: str, count: int, sample=None) -> None:
        if count:
            problems[name] = problems.get(name, 0) + count
            if sample is not None and len(examples[name]) < 10:
                examples[name].extend(list(sample)[: 10 - len(examples[name])])

    # ingest
    intake = dbs.rows("ingest", "SELECT id, dedupe_key, channel_address, status, reason FROM intake")
    out["stored"] = len(intake)
    out["intake_status"] = dict(Counter(r.status for r in intake))
    keys = Counter((r.channel_address, r.dedupe_key) for r in intake)
    problem("ingest: two intake rows for one message", sum(c - 1 for c in keys.values() if c > 1),
            [k for k, c in keys.items() if c > 1])
    quarantined = [(r.id, r.reason) for r in intake if r.status == "quarantined"]
    out["quarantined"] = len(quarantined)
    if quarantined:
        examples["quarantined"] = quarantined[:10]

    # conversations
    messages = dbs.rows("conversations", "SELECT id, conversation_id, inbox_id, lower(rfc_message_id) AS mid, "
                                         "intake_id, direction, created_at FROM messages")
    inbound = [m for m in messages if m.direction == "in"]
    per_id = Counter(m.mid for m in inbound)
    per_key = Counter((m.inbox_id, m.direction, m.mid) for m in messages)
    problem("conversations: a message stored twice (same inbox and Message-ID)",
            sum(c - 1 for c in per_key.values() if c > 1), [k for k, c in per_key.items() if c > 1])
    per_intake = Counter(m.intake_id for m in inbound if m.intake_id)
    problem("conversations: two messages for one intake row", sum(c - 1 for c in per_intake.values() if c > 1),
            [k for k, c in per_intake.items() if c > 1])
    counts = dbs.rows("conversations", "SELECT c.id, c.message_count, c.spam, count(m.id) AS actual "
                                       "FROM conversations c LEFT JOIN messages m ON m.conversation_id = c.id "
                                       "GROUP BY c.id, c.message_count, c.spam")
    problem("conversations: message_count above its messages (counted twice)",
            sum(r.message_count - r.actual for r in counts if r.message_count > r.actual),
            [r.id for r in counts if r.message_count > r.actual])
    below = [r.id for r in counts if r.message_count < r.actual]
    out["conversations"] = len(counts)
    out["conversations_spam"] = sum(1 for r in counts if r.spam)
    out["conversations_empty"] = sum(1 for r in counts if r.actual == 0)
    if below:
        out["conversations_message_count_below"] = len(below)
        examples["conversations: message_count below its messages"] = below[:10]

    lost_ids = sorted(mid for mid in accepted_ids if per_id.get(mid, 0) == 0)
    out["lost"] = len(lost_ids)
    out["lost_examples"] = lost_ids[:20]
    out["stored_in_conversations"] = sum(1 for mid in accepted_ids if per_id.get(mid, 0) == 1)
    unexpected = sorted(set(per_id) - accepted_ids)
    out["stored_not_accepted"] = len(unexpected)  # 250 lost on the way back (the client retried or gave up)
    out["resent_stored_once"] = sum(1 for mid in resent_ids if per_id.get(mid, 0) == 1)

    # threading: a reply in its parent's conversation (informative: a reply processed before its
    # parent, e.g. while the parent waited in a retry queue, starts a conversation of its own)
    conversation_of = {m.mid: m.conversation_id for m in inbound}
    threaded = [mid for mid, parent in parents.items()
                if mid in conversation_of and parent in conversation_of
                and conversation_of[mid] == conversation_of[parent]]
    out["replies"] = sum(1 for mid in parents if mid in conversation_of)
    out["replies_threaded"] = len(threaded)
    stored_at = {m.mid: m.created_at for m in inbound}
    unthreaded = [mid for mid, parent in parents.items()
                  if mid in conversation_of and parent in conversation_of and mid not in threaded]
    # stored before its parent: the parent was not there to thread to (e.g. it waited in a retry queue)
    out["replies_stored_before_parent"] = sum(1 for mid in unthreaded if stored_at[mid] < stored_at[parents[mid]])
    out["replies_not_threaded_examples"] = [
        {"reply": mid, "parent": parents[mid], "reply_stored": str(stored_at[mid]),
         "parent_stored": str(stored_at[parents[mid]])} for mid in unthreaded[:10]]

    # contacts
    emails = dbs.rows("contacts", "SELECT contact_id, lower(email) AS email FROM contact_emails")
    per_email = Counter(r.email for r in emails)
    problem("contacts: one address on two contacts", sum(c - 1 for c in per_email.values() if c > 1),
            [e for e, c in per_email.items() if c > 1])
    orphans = dbs.rows("contacts", "SELECT c.id FROM contacts c WHERE NOT EXISTS "
                                   "(SELECT 1 FROM contact_emails e WHERE e.contact_id = c.id)")
    problem("contacts: a contact with no address (created twice?)", len(orphans), [r.id for r in orphans])
    out["contacts"] = dbs.scalar("contacts", "SELECT count(*) FROM contacts")
    entries = dbs.rows("contacts", "SELECT contact_id, direction, lower(rfc_message_id) AS mid FROM timeline_entries")
    per_entry = Counter((e.direction, clean_id(e.mid)) for e in entries)
    problem("contacts: two timeline entries for one message", sum(c - 1 for c in per_entry.values() if c > 1),
            [k for k, c in per_entry.items() if c > 1])
    out["timeline_entries"] = len(entries)
    spam_conversations = {r.id for r in counts if r.spam}
    expected_on_timeline = {m.mid for m in inbound if m.conversation_id not in spam_conversations}
    missing = sorted(mid for mid in expected_on_timeline if per_entry.get(("in", clean_id(mid)), 0) == 0)
    out["timeline_missing"] = len(missing)
    out["timeline_missing_examples"] = missing[:20]

    out["duplicated_breakdown"] = problems
    out["duplicated_examples"] = {k: [str(x) for x in v] for k, v in examples.items()}
    return out


# --- the events ------------------------------------------------------------------------------------


def event_counts(deliveries, t0: float | None = None) -> dict:
    """`t0`: monotonic time the run's clock starts at (for the repeats' timestamps)."""
    per_id = Counter(d.event_id for d in deliveries)
    first: dict[str, object] = {}
    flagged = 0
    repeated: list[dict] = []
    for d in deliveries:
        if d.event_id in first:
            flagged += d.redelivered
            if len(repeated) < 30:
                repeated.append({"type": d.routing_key, "id": d.event_id, "broker_redelivered": d.redelivered,
                                 "first_s": round(first[d.event_id].at - (t0 or 0), 2),
                                 "again_s": round(d.at - (t0 or 0), 2)})
        else:
            first[d.event_id] = d
    repeats = sum(c - 1 for c in per_id.values() if c > 1)
    events = list(first.values())
    by_type = Counter(e.routing_key for e in events)

    logical: dict[str, dict] = defaultdict(lambda: defaultdict(set))  # check -> key -> event ids / values

    for e in events:
        data, key = e.data, e.routing_key
        if key == "message_received":
            logical["message_received per intake row"][data.get("intake_id")].add(e.event_id)
        elif key == "message_quarantined":
            logical["message_quarantined per intake row"][data.get("intake_id")].add(e.event_id)
        elif key == "message_added":
            logical["message_added per stored message"][data.get("message_id")].add(e.event_id)
            logical["message_added per Message-ID"][
                (data.get("inbox_id"), data.get("direction"), clean_id(data.get("rfc_message_id")))].add(
                data.get("message_id"))
        elif key == "conversation_created":
            logical["conversation_created per conversation"][data.get("conversation_id")].add(e.event_id)
        elif key == "contact_created":
            logical["contact_created per contact"][data.get("contact_id")].add(e.event_id)
            for address in data.get("emails") or []:
                logical["contact_created per address"][address.lower()].add(data.get("contact_id"))
        elif key == "timeline_entry_added":
            logical["timeline_entry_added per contact and message"][
                (data.get("contact_id"), data.get("direction"), clean_id(data.get("message_id")))].add(e.event_id)
        elif key in ("email_sent", "email_queued", "email_failed"):
            logical[f"{key} per email"][data.get("email_id")].add(e.event_id)

    duplicates = {}
    examples = {}
    for check, keys in logical.items():
        doubled = {k: v for k, v in keys.items() if len(v) > 1}
        if doubled:
            duplicates[check] = sum(len(v) - 1 for v in doubled.values())
            examples[check] = [str(k) for k in list(doubled)[:5]]
    return {
        "events_received": len(deliveries), "events_distinct": len(per_id), "by_type": dict(sorted(by_type.items())),
        "redeliveries": repeats, "redeliveries_flagged_by_broker": flagged,
        "republished": repeats - flagged,  # same id published again by a producer (outbox at-least-once)
        "repeats_by_type": dict(Counter(r["type"] for r in repeated)), "repeat_examples": repeated[:10],
        "duplicated_breakdown": duplicates, "duplicated_examples": examples,
    }
