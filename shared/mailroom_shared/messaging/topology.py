"""Every exchange and queue mailroom uses, declared before anything publishes.

nameko declares a handler's queue only when that handler's service starts, and publishes with
mandatory=False, so an event published earlier is silently dropped (seen with nameko 2.14). We therefore:
- declare every service's events exchange and every internal subscription queue up front, from
  SUBSCRIPTIONS, whenever any service starts;
- bind the audit queue to every event type no service subscribes to, so that such an event is
  still routed (and kept, bounded, for operators) and a publish with mandatory=True only fails when
  the topology itself is missing. With MAILROOM_AUDIT_EVENTS=true it takes a copy of every event
  (`#`), as it always did before #16: that copy doubled RabbitMQ's work per event, so it is opt-in;
- give every subscription queue its retry queues and a dead-letter queue;
- retire the queue of a subscription a release dropped (RETIRED_SUBSCRIPTIONS): the service that
  consumed it unbinds it when it starts and every few minutes after, and deletes it once empty.

The queue names follow nameko's SERVICE_POOL convention `evt-<source>-<event>--<service>.<method>`:
renaming a handler orphans its queue, which tests/test_architecture.py::test_queue_names_are_stable guards against.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from amqp import exceptions as amqp_exceptions
from kombu import Connection, Exchange, Queue

from mailroom_shared.config import SERVICE_NAMES, env_bool
from mailroom_shared.events.catalogue import CATALOGUE

PRODUCERS = SERVICE_NAMES  # every service publishes events
AUDIT_QUEUE = "mailroom.audit"
AUDIT_MAX_LENGTH = 100_000
AUDIT_TTL_MS = 7 * 24 * 3600 * 1000
AUDIT_EVENTS_ENV = "MAILROOM_AUDIT_EVENTS"  # true: the audit queue keeps a copy of every event
AUDIT_EVERYTHING = "#"
# Delay before each retry; after the last one the message goes to the dead-letter queue.
RETRY_DELAYS_MS = (1_000, 5_000, 30_000, 120_000, 600_000)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Subscription:
    source: str  # producing service
    event_type: str
    service: str  # consuming service
    method: str  # handler method name: part of the queue name, never rename casually

    @property
    def queue_name(self) -> str:
        return f"evt-{self.source}-{self.event_type}--{self.service}.{self.method}"


SUBSCRIPTIONS: tuple[Subscription, ...] = (
    Subscription("ingest", "message_received", "contacts", "handle_message_received"),
    Subscription("ingest", "message_received", "conversations", "handle_message_received"),
    Subscription("contacts", "contact_created", "conversations", "handle_contact_created"),
    Subscription("contacts", "contact_updated", "conversations", "handle_contact_updated"),
    Subscription("conversations", "message_added", "contacts", "handle_message_added"),
    Subscription("conversations", "inbox_updated", "ingest", "handle_inbox_updated"),
    Subscription("conversations", "inbox_updated", "contacts", "handle_inbox_updated"),
    Subscription("conversations", "conversation_spam_marked", "contacts", "handle_conversation_spam_marked"),
    Subscription("conversations", "message_attribution_corrected", "contacts",
                 "handle_message_attribution_corrected"),
    Subscription("outbound", "email_queued", "conversations", "handle_email_queued"),
    Subscription("outbound", "email_sent", "conversations", "handle_email_sent"),
    Subscription("outbound", "email_deferred", "conversations", "handle_email_deferred"),
    Subscription("outbound", "email_failed", "conversations", "handle_email_failed"),
    Subscription("outbound", "email_bounced", "conversations", "handle_email_bounced"),
    Subscription("outbound", "email_sent", "contacts", "handle_email_sent"),
    # chat and form channels (docs/channels.md)
    Subscription("conversations", "channel_message_received", "contacts", "handle_channel_message_received"),
    Subscription("conversations", "call_logged", "contacts", "handle_call_logged"),  # docs/calls.md
    # one email to several team inboxes (docs/architecture.md)
    Subscription("conversations", "conversation_shared", "contacts", "handle_conversation_shared"),
    Subscription("outbound", "chat_message_queued", "conversations", "handle_chat_message_queued"),
    Subscription("outbound", "chat_message_sent", "conversations", "handle_chat_message_sent"),
    Subscription("outbound", "chat_message_failed", "conversations", "handle_chat_message_failed"),
    Subscription("outbound", "chat_message_sent", "contacts", "handle_chat_message_sent"),
    # bounces only (#16): outbound took every message_received to find them (RETIRED_SUBSCRIPTIONS)
    Subscription("ingest", "delivery_report_received", "outbound", "handle_delivery_report_received"),
    Subscription("conversations", "conversation_created", "outbound", "handle_conversation_created"),
    Subscription("ingest", "message_quarantined", "conversations", "handle_message_quarantined"),
    Subscription("conversations", "conversation_created", "notifier", "handle_conversation_created"),
    Subscription("conversations", "message_added", "notifier", "handle_message_added"),
    Subscription("conversations", "conversation_assigned", "notifier", "handle_conversation_assigned"),
    Subscription("conversations", "conversation_closed", "notifier", "handle_conversation_closed"),
    Subscription("conversations", "conversation_reopened", "notifier", "handle_conversation_reopened"),
    Subscription("conversations", "comment_added", "notifier", "handle_comment_added"),
    Subscription("conversations", "conversation_moved", "notifier", "handle_conversation_moved"),
    Subscription("contacts", "contact_created", "notifier", "handle_contact_created"),
    Subscription("outbound", "email_sent", "notifier", "handle_email_sent"),
    Subscription("outbound", "email_failed", "notifier", "handle_email_failed"),
    Subscription("outbound", "email_bounced", "notifier", "handle_email_bounced"),
    # contacts you can fix (issue #17): merges, erasures and each service's erasure confirmation
    Subscription("contacts", "contacts_merged", "conversations", "handle_contacts_merged"),
    Subscription("contacts", "contact_erased", "conversations", "handle_contact_erased"),
    Subscription("contacts", "contact_erased", "ingest", "handle_contact_erased"),
    Subscription("contacts", "contact_erased", "outbound", "handle_contact_erased"),
    Subscription("contacts", "contact_erased", "notifier", "handle_contact_erased"),
    Subscription("notifier", "contact_notifications_erased", "contacts", "handle_contact_notifications_erased"),
    Subscription("conversations", "contact_messages_erased", "contacts", "handle_contact_messages_erased"),
    Subscription("ingest", "contact_mail_erased", "contacts", "handle_contact_mail_erased"),
    Subscription("outbound", "contact_sent_mail_erased", "contacts", "handle_contact_sent_mail_erased"),
)


# Subscriptions a release dropped. Their queues stay on a broker that ran the release before (and
# an older process of any service declares them again when it starts), bound and filling with
# every event they were bound to: the consuming service retires them (retire_subscriptions).
RETIRED_SUBSCRIPTIONS: tuple[Subscription, ...] = (
    # outbound read every inbound message to find the bounces; it takes delivery_report_received (#16)
    Subscription("ingest", "message_received", "outbound", "handle_message_received"),
)
RETIRE_INTERVAL_S = 300.0  # how often the consuming service checks its retired queues again


def retired_subscriptions_of(service: str) -> list[Subscription]:
    return [sub for sub in RETIRED_SUBSCRIPTIONS if sub.service == service]


def retire_subscriptions(connection: Connection, service: str) -> dict[str, int]:
    """Unbind each retired queue of `service` (nothing new is copied into it), then delete it with
    its retry and dead-letter queues once they are all empty and nothing consumes it. A queue
    still holding messages (an older process still draining it, a dead letter for an operator) is
    kept and reported: {queue name: messages left}; a queue deleted or never there is left out."""
    left = {}
    for sub in retired_subscriptions_of(service):
        names = [sub.queue_name, *(retry_queue_name(sub.queue_name, attempt)
                                   for attempt in range(1, len(RETRY_DELAYS_MS) + 1)),
                 dead_letter_queue_name(sub.queue_name)]
        counts = {name: _queue_counts(connection, name) for name in names}
        present = {name: count for name, count in counts.items() if count is not None}
        if not present:
            continue
        if sub.queue_name in present:
            with _channel(connection) as channel:
                channel.queue_unbind(sub.queue_name, exchange=events_exchange(sub.source).name,
                                     routing_key=sub.event_type)
        messages = sum(m for m, _consumers in present.values())
        consumers = sum(c for _m, c in present.values())
        if messages or consumers:
            left[sub.queue_name] = messages
            log.warning("retired queue %s (and its retry and dead-letter queues) still holds %d message(s), "
                        "%d consumer(s): unbound, kept until empty", sub.queue_name, messages, consumers)
            continue
        for name in present:
            try:
                with _channel(connection) as channel:
                    # if_empty/if_unused: a message or consumer arriving meanwhile keeps it
                    channel.queue_delete(name, if_unused=True, if_empty=True)
            except amqp_exceptions.PreconditionFailed:
                left[sub.queue_name] = left.get(sub.queue_name, 0)
        if sub.queue_name not in left:
            log.info("retired queue %s deleted", sub.queue_name)
    return left


def _queue_counts(connection: Connection, name: str) -> tuple[int, int] | None:
    """(messages, consumers) of a queue, None when it does not exist."""
    try:
        with _channel(connection) as channel:
            declared = channel.queue_declare(name, passive=True)
    except amqp_exceptions.NotFound:
        return None
    return declared.message_count, declared.consumer_count


@contextlib.contextmanager
def _channel(connection: Connection):
    # a refused passive declare or delete closes its channel: one channel per operation
    channel = connection.connection.channel()
    try:
        yield channel
    finally:
        with contextlib.suppress(Exception):
            channel.close()


def events_exchange(service: str) -> Exchange:
    # Same arguments nameko uses, so both may declare it.
    return Exchange(f"{service}.events", type="topic", durable=True)


def retry_queue_name(queue_name: str, attempt: int) -> str:
    return f"{queue_name}.retry.{attempt}"


def dead_letter_queue_name(queue_name: str) -> str:
    return f"{queue_name}.dlq"


def subscription_queue(sub: Subscription) -> Queue:
    return Queue(sub.queue_name, exchange=events_exchange(sub.source), routing_key=sub.event_type,
                 durable=True, auto_delete=False, exclusive=False)


def retry_queues(queue_name: str) -> list[Queue]:
    """Per-attempt delay queues: a message waits out the TTL, then dead-letters back to its queue.

    One queue per delay (not per-message TTL in one queue), so a long delay never holds up a
    short one behind it (RabbitMQ only expires messages at the head of a queue).
    """
    return [
        Queue(retry_queue_name(queue_name, attempt), durable=True, auto_delete=False,
              queue_arguments={"x-message-ttl": delay, "x-dead-letter-exchange": "",
                               "x-dead-letter-routing-key": queue_name})
        for attempt, delay in enumerate(RETRY_DELAYS_MS, start=1)
    ]


def dead_letter_queue(queue_name: str) -> Queue:
    return Queue(dead_letter_queue_name(queue_name), durable=True, auto_delete=False)


def audit_queue() -> Queue:
    return Queue(AUDIT_QUEUE, durable=True, auto_delete=False,
                 queue_arguments={"x-max-length": AUDIT_MAX_LENGTH, "x-message-ttl": AUDIT_TTL_MS,
                                  "x-overflow": "drop-head"})


def audit_events_enabled() -> bool:
    return env_bool(AUDIT_EVENTS_ENV, False)


def audit_bindings(copy_every_event: bool | None = None) -> list[tuple[str, str]]:
    """(exchange, routing key) of the audit queue's bindings: every event of every producer with
    `copy_every_event` (MAILROOM_AUDIT_EVENTS), else only the catalogued event types that no
    subscription takes (so their publish is routed, never refused as unroutable)."""
    if copy_every_event is None:
        copy_every_event = audit_events_enabled()
    if copy_every_event:
        return [(events_exchange(p).name, AUDIT_EVERYTHING) for p in PRODUCERS]
    subscribed = {(sub.source, sub.event_type) for sub in SUBSCRIPTIONS}
    return [(events_exchange(p).name, event_type) for p in PRODUCERS for event_type in published_event_types(p)
            if (p, event_type) not in subscribed]


def declare_topology(connection: Connection) -> None:
    """Idempotently declare every exchange, queue and binding. Safe to call from every process."""
    channel = connection.default_channel
    exchanges = {name: events_exchange(name) for name in PRODUCERS}
    for exchange in exchanges.values():
        exchange(channel).declare()
    audit = audit_queue()(channel)
    audit.declare()
    wanted = audit_bindings()
    for exchange_name, routing_key in wanted:
        audit.bind_to(exchange=exchange_name, routing_key=routing_key)
    if (events_exchange(PRODUCERS[0]).name, AUDIT_EVERYTHING) not in wanted:
        # turned off after it was on: the copy of every event stops (unbinding is idempotent)
        for exchange in exchanges.values():
            audit.unbind_from(exchange=exchange, routing_key=AUDIT_EVERYTHING)
    for sub in SUBSCRIPTIONS:
        subscription_queue(sub)(channel).declare()
        for queue in retry_queues(sub.queue_name):
            queue(channel).declare()
        dead_letter_queue(sub.queue_name)(channel).declare()


def published_event_types(service: str) -> list[str]:
    # one name per event, whatever its versions
    return list(dict.fromkeys(spec.name for spec in CATALOGUE.values() if spec.producer == service))
