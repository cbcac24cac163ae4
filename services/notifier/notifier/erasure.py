"""contacts' `contact_erased` (GDPR art. 17, issue #17) as the notifier applies it.

What the notifier holds of a person is copies of events about them: webhook deliveries (the
envelope as sent, in the delivery log and the delivery queue), Slack posts (their text), the Slack
thread replies teammates wrote about them, and events in its outbox. On `contact_erased`:

* **The person's deliveries and posts**: those whose body names one of the person's keys (an
  address, a chat handle, the contact id), and every delivery and post about a conversation that
  is theirs (one whose conversation_created or message_added names them: comments and
  assignments of that conversation quote its subject).
* **Already sent** (delivered, failed, posted): the stored copy is redacted. A delivery keeps its
  envelope's id, source, type, time and sequence with `data: {"erased": true}`, so the log still
  says that an event went out and when; a Slack post's text becomes "[erased]".
* **Not sent yet** (pending): dropped — marked `erased`, never sent. A subscriber gets nothing of
  the person after the erasure; the cost is a gap in that conversation's `sequence` (the log shows
  the erased delivery; docs/integrations.md). Sending a redacted stub instead would keep the
  sequence contiguous, but as an event that breaks its own schema.
* **Late copies**: an event produced before the erasure but reaching the notifier after it (a
  redelivery, a queue that lagged) is neither delivered nor posted (`is_late_copy`): each key is
  kept as a one-way fingerprint with the erasure's time for RETENTION, then purged. An event
  produced after the erasure is new data (mail from that address starts a new contact) and goes
  out as usual.
* Events about the person in the notifier's own outbox not relayed yet are dropped.

Confirmed with `contact_notifications_erased` (counts only). What the notifier cannot erase:
what subscribers and Slack already received (their copies; a Slack message stays in the channel)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator

from sqlalchemy import Text, cast, delete, func, or_, select
from sqlalchemy.orm import Session

from mailroom_shared.db import conflict_insert, parse_time, utcnow
from mailroom_shared.erasure import ErasureKeys, drop_pending_events, erasure_keys, mentions
from mailroom_shared.messaging.outbox import Outbox
from notifier.models import ErasedKey, SlackEvent, SlackPost, WebhookDelivery

ERASED = "[erased]"
ERASED_STATE = "erased"  # a delivery or post dropped before it was sent
RETENTION = dt.timedelta(days=7)  # late copies come from redeliveries and lagging queues: hours, not weeks
# the events whose conversation is the person's when they name them
OWNING_EVENTS = ("conversation_created", "message_added")
MAX_STRINGS = 500  # strings of one event looked at for late copies (keys sit near the top)
MAX_KEY_CHARS = 320


def fingerprint(value: str) -> str:
    return hashlib.sha256(f"mailroom.erased-key\n{value.strip().lower()}".encode()).hexdigest()


def _contains_any(column, values: list[str]):
    """Plain text (a Slack post, a Slack event) containing one of `values`, any case."""
    values = [v for v in values if v]
    if not values:
        return None
    text = func.lower(column)
    return or_(*(text.contains(v.lower(), autoescape=True) for v in values))


def redacted_body(body: str) -> str:
    """The envelope with its data replaced: what still says that an event went out, and when."""
    try:
        envelope = json.loads(body)
    except ValueError:
        envelope = {}
    kept = {k: envelope[k] for k in ("specversion", "id", "source", "type", "time", "datacontenttype", "sequence")
            if isinstance(envelope, dict) and k in envelope}
    return json.dumps({**kept, "data": {"erased": True}}, separators=(",", ":"))


def _conversations_of(session: Session, keys: ErasureKeys) -> set[str]:
    owning = session.execute(select(WebhookDelivery.conversation_id).where(
        WebhookDelivery.event_type.in_(OWNING_EVENTS), WebhookDelivery.conversation_id.is_not(None),
        mentions(WebhookDelivery.body, keys.all))).scalars()
    found = set(owning)
    text_match = _contains_any(SlackPost.text, keys.addresses_and_handles)
    if text_match is not None:
        found |= set(session.execute(select(SlackPost.conversation_id).where(
            SlackPost.event_type.in_(OWNING_EVENTS), text_match)).scalars())
    return {c for c in found if c}


def erase_contact(session: Session, outbox: Outbox, data: dict, erased_at) -> dict:
    keys = erasure_keys(data)
    now = utcnow()
    conversations = sorted(_conversations_of(session, keys))
    deliveries = session.execute(select(WebhookDelivery).where(or_(
        mentions(WebhookDelivery.body, keys.all),
        WebhookDelivery.conversation_id.in_(conversations or [""]))).with_for_update()).scalars().all()
    redacted = dropped = 0
    for delivery in deliveries:
        if delivery.state == "pending":  # never sent now (a worker mid-request finds it settled)
            delivery.state, delivery.next_attempt_at, delivery.finished_at = ERASED_STATE, None, now
            delivery.last_error = "erased before delivery (GDPR art. 17)"
            dropped += 1
        elif delivery.state != ERASED_STATE:
            redacted += 1
        delivery.body = redacted_body(delivery.body)
    post_match = [SlackPost.conversation_id.in_(conversations or [""])]
    text_match = _contains_any(SlackPost.text, keys.addresses_and_handles)
    if text_match is not None:
        post_match.append(text_match)
    posts = session.execute(select(SlackPost).where(or_(*post_match)).with_for_update()).scalars().all()
    posts_redacted = posts_dropped = 0
    for post in posts:
        if post.state == "pending":
            post.state, post.next_attempt_at, post.in_flight = ERASED_STATE, None, False
            posts_dropped += 1
        elif post.text != ERASED:
            posts_redacted += 1
        post.text, post.last_error = ERASED, None
    replies = 0
    event_match = _contains_any(cast(SlackEvent.event, Text), keys.addresses_and_handles)
    if event_match is not None:
        for event in session.execute(select(SlackEvent).where(event_match).with_for_update()).scalars():
            event.event, event.state, event.next_attempt_at = {"erased": True}, "done", None
            event.outcome = "erased (GDPR art. 17)"
            replies += 1
    _remember(session, keys, erased_at)
    events = drop_pending_events(session, outbox.table, keys)
    erased = {"deliveries_redacted": redacted, "deliveries_dropped": dropped, "slack_posts_redacted": posts_redacted,
              "slack_posts_dropped": posts_dropped, "slack_replies": replies, "pending_events": events}
    outbox.record(session, "contact_notifications_erased", data["contact_id"], {
        "erasure_id": data["erasure_id"], "contact_id": data["contact_id"], "erased": erased})
    return erased


def _remember(session: Session, keys: ErasureKeys, erased_at) -> None:
    erased_at = parse_time(erased_at)
    session.execute(delete(ErasedKey).where(ErasedKey.erased_at < utcnow() - RETENTION))
    fingerprints = sorted({fingerprint(k) for k in keys.all})
    if not fingerprints:
        return
    statement = conflict_insert(session, ErasedKey.__table__).values(
        [{"fingerprint": f, "erased_at": erased_at} for f in fingerprints])
    session.execute(statement.on_conflict_do_update(index_elements=["fingerprint"], set_={"erased_at": erased_at}))


def _strings(value, budget: list[int]) -> Iterator[str]:
    if budget[0] <= 0:
        return
    if isinstance(value, str):
        budget[0] -= 1
        if len(value) <= MAX_KEY_CHARS:
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item, budget)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, budget)


def _candidate_fingerprints(data) -> set[str]:
    """Every short string of the event, as a fingerprint (fingerprint() lower-cases and strips).
    Addresses in events are normalised by their producers already: no address parsing here (it
    cost milliseconds per event)."""
    return {fingerprint(value) for value in _strings(data, [MAX_STRINGS])}


def is_late_copy(session: Session, envelope: dict, data) -> bool:
    """The event names a key of a contact erased after the event was produced: a copy of the
    erased person's data arriving late, not to be delivered or posted."""
    candidates = _candidate_fingerprints(data)
    if not candidates:
        return False
    produced = parse_time(envelope.get("time"))
    return session.execute(select(ErasedKey.fingerprint).where(
        ErasedKey.fingerprint.in_(sorted(candidates)), ErasedKey.erased_at > produced).limit(1)).first() is not None
