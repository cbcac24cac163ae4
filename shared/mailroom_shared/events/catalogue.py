"""The one source of truth for every event mailroom publishes: each (name, version) with its
producer, its marshmallow schema and a summary. docs/events.asyncapi.yaml is generated from it
(`mailroom docs`); docs/events.md explains the rules below at more length.

* `name` is the routing key (snake_case, past tense) and `producer` owns the exchange
  `<producer>.events`; both are the same for every version of an event, so queue bindings never
  change when a version is added.
* `version` is part of the CloudEvents type `mailroom.<name>.v<N>` that every envelope carries
  (and the AMQP `type` property). Producers publish the version they declare
  (`Outbox(table, publishes={"contact_created": 1})`, via `service_base(..., publishes=...)`);
  consumers read the schema of the version named by the envelope's `type` (`parse_envelope`),
  tolerantly: unknown fields are dropped.
* A version's schema never changes incompatibly. shared/tests/event_schemas.json is a snapshot
  of every version's fields; shared/tests/test_event_catalogue.py fails on a breaking change.

An additive change (a new optional field: `load_default=...`, never `required=True`) stays in
the same version: update the snapshot with
`MAILROOM_UPDATE_EVENT_SNAPSHOT=1 .venv/bin/python -m pytest shared/tests/test_event_catalogue.py`.

A breaking change (a field removed, renamed or retyped, a new required field, a stricter
validation) is a new version:
1. add `FooV2` next to `FooV1` in the producer's module; leave `FooV1` exactly as it is;
2. add `EventSpec("foo", "<producer>", 2, module.FooV2, "...")` after the V1 entry (versions of
   a name are 1..N without gaps, same producer), update the snapshot, run `mailroom docs`;
3. consumers first: every `@consumes(..., "foo")` handler handles both versions
   (`envelope_version(envelope)` says which one `data` is) and is deployed everywhere;
4. then the producer switches to `publishes={"foo": 2}` (rows already in its outbox still go out
   as V1: the relay sends each stored envelope with its own `type`);
5. V1 is retired when no producer publishes it and no queue (retries, dead letters) still holds
   it: consumers may drop their V1 branch. The V1 entry stays here, as the record of the contract
   (and to read a dead-lettered V1 message that is replayed).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from marshmallow import Schema

from mailroom_shared.events import contacts, conversations, ingest, notifier, outbound

TYPE_PREFIX = "mailroom."
_NAME = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
_TYPE = re.compile(r"mailroom\.([a-z][a-z0-9_]*)\.v([1-9][0-9]*)")


class VersionRequired(LookupError):
    """An event with several versions was named without a version."""


@dataclass(frozen=True)
class EventSpec:
    name: str  # routing key, snake_case past tense; the same for every version
    producer: str  # service name; the exchange is `<producer>.events`
    version: int
    schema: type[Schema]
    summary: str

    @property
    def key(self) -> tuple[str, int]:
        return (self.name, self.version)

    @property
    def exchange(self) -> str:
        return f"{self.producer}.events"

    @property
    def cloudevents_type(self) -> str:
        return f"{TYPE_PREFIX}{self.name}.v{self.version}"

    @property
    def source(self) -> str:
        return f"mailroom/{self.producer}"


SPECS: tuple[EventSpec, ...] = (
    EventSpec("message_received", "ingest", 1, ingest.MessageReceivedV1,
              "A message for an inbox channel was stored, parsed and classified."),
    EventSpec("delivery_report_received", "ingest", 1, ingest.DeliveryReportReceivedV1,
              "A delivery status notification (bounce) naming the messages it returns arrived (published with its "
              "message_received; what matching it to sent mail needs, without its content)."),
    EventSpec("message_quarantined", "ingest", 1, ingest.MessageQuarantinedV1,
              "A message was stored raw but could not be processed; the reason is for an operator."),
    EventSpec("mailbox_unreachable", "ingest", 1, ingest.MailboxUnreachableV1,
              "A connected IMAP mailbox stopped answering."),
    EventSpec("contact_created", "contacts", 1, contacts.ContactCreatedV1,
              "A contact was created (for an unknown sender, or through the API)."),
    EventSpec("timeline_entry_added", "contacts", 1, contacts.TimelineEntryAddedV1,
              "An email in or out was logged on a contact's timeline."),
    EventSpec("contact_updated", "contacts", 1, contacts.ContactUpdatedV1,
              "A contact's addresses or name changed (through the API); carries every address it has now."),
    EventSpec("contacts_merged", "contacts", 1, contacts.ContactsMergedV1,
              "Two contacts were merged: the merged one's addresses, timeline and conversations follow the survivor."),
    EventSpec("contact_erased", "contacts", 1, contacts.ContactErasedV1,
              "A contact was erased on request (GDPR art. 17): every service erases what it holds of that person."),
    EventSpec("contact_messages_erased", "conversations", 1, conversations.ContactMessagesErasedV1,
              "conversations redacted an erased contact's messages (its confirmation for the erasure report)."),
    EventSpec("contact_mail_erased", "ingest", 1, ingest.ContactMailErasedV1,
              "ingest deleted an erased contact's raw mail, attachments and intake rows (its confirmation)."),
    EventSpec("contact_sent_mail_erased", "outbound", 1, outbound.ContactSentMailErasedV1,
              "outbound erased the content of the mail sent to an erased contact (its confirmation)."),
    EventSpec("contact_notifications_erased", "notifier", 1, notifier.ContactNotificationsErasedV1,
              "The notifier redacted an erased contact's webhook deliveries and Slack posts (its confirmation)."),
    EventSpec("inbox_updated", "conversations", 1, conversations.InboxUpdatedV1,
              "An inbox was created or its channels or members changed."),
    EventSpec("conversation_created", "conversations", 1, conversations.ConversationCreatedV1,
              "A new conversation started."),
    EventSpec("message_added", "conversations", 1, conversations.MessageAddedV1,
              "A message was stored in a conversation."),
    EventSpec("conversation_reopened", "conversations", 1, conversations.ConversationReopenedV1,
              "A closed conversation was reopened (e.g. by a customer's reply)."),
    EventSpec("conversation_closed", "conversations", 1, conversations.ConversationClosedV1,
              "A conversation was closed."),
    EventSpec("conversation_assigned", "conversations", 1, conversations.ConversationAssignedV1,
              "A conversation was assigned, reassigned or unassigned."),
    EventSpec("comment_added", "conversations", 1, conversations.CommentAddedV1,
              "An internal comment (never emailed) was added to a conversation."),
    EventSpec("ticket_associated", "conversations", 1, conversations.TicketAssociatedV1,
              "A ticket was created for, or associated with, a conversation."),
    EventSpec("ticket_closed", "conversations", 1, conversations.TicketClosedV1,
              "A ticket was closed (with its conversation)."),
    EventSpec("conversation_moved", "conversations", 1, conversations.ConversationMovedV1,
              "A conversation was moved to another inbox."),
    EventSpec("conversation_spam_marked", "conversations", 1, conversations.ConversationSpamMarkedV1,
              "A conversation was marked spam or not spam by a user."),
    EventSpec("conversation_shared", "conversations", 1, conversations.ConversationSharedV1,
              "The same email (Message-ID and sender) reached another of our inboxes: that inbox now shares the "
              "conversation (stored once; no message_added for the copy)."),
    EventSpec("email_queued", "outbound", 1, outbound.EmailQueuedV1,
              "An email (compose, reply or forward) was stored for delivery."),
    EventSpec("email_sent", "outbound", 1, outbound.EmailSentV1,
              "The SMTP relay accepted an email (with the server's queue id)."),
    EventSpec("email_deferred", "outbound", 1, outbound.EmailDeferredV1,
              "Delivery failed temporarily (4xx or connection trouble); it is retried with backoff."),
    EventSpec("email_failed", "outbound", 1, outbound.EmailFailedV1,
              "Delivery failed permanently (5xx or retries exhausted); the reason is kept."),
    EventSpec("email_bounced", "outbound", 1, outbound.EmailBouncedV1,
              "A delivery status notification (bounce) was matched to a sent email."),
    EventSpec("message_attribution_corrected", "conversations", 1, conversations.MessageAttributionCorrectedV1,
              "A teammate changed whom an inbound message belongs to; the previous attribution is kept."),
    EventSpec("channel_message_received", "conversations", 1, conversations.ChannelMessageReceivedV1,
              "A chat message or form submission from a connector was stored in a conversation."),
    EventSpec("call_logged", "conversations", 1, conversations.CallLoggedV1,
              "A member logged a call on a conversation (direction, E.164 number, outcome, duration, notes)."),
    EventSpec("chat_message_queued", "outbound", 1, outbound.ChatMessageQueuedV1,
              "A reply to a chat conversation was stored for delivery to the connector's webhook."),
    EventSpec("chat_message_sent", "outbound", 1, outbound.ChatMessageSentV1,
              "The chat connector accepted a reply (2xx to the signed POST)."),
    EventSpec("chat_message_failed", "outbound", 1, outbound.ChatMessageFailedV1,
              "A reply could not be delivered to the chat connector (refused, or retries used up)."),
    EventSpec("webhook_disabled", "notifier", 1, notifier.WebhookDisabledV1,
              "A webhook subscription failed for its whole retry schedule and was disabled."),
)


def catalogue_problems(specs: Iterable[EventSpec]) -> list[str]:
    """What is wrong with a list of specs (empty when nothing is): a (name, version) listed twice,
    versions of a name that are not 1..N, versions of a name with different producers, a name that
    is no routing key, a schema class whose name does not end in `V<version>`."""
    specs = list(specs)
    problems = []
    by_name: dict[str, list[EventSpec]] = {}
    for spec in specs:
        by_name.setdefault(spec.name, []).append(spec)
        if not _NAME.fullmatch(spec.name) or len(spec.name) > 64:
            problems.append(f"{spec.name!r}: an event name is snake_case (it is the routing key and the "
                            f"outbox's event_type, String(64))")
        if not _is_version(spec.version):
            problems.append(f"{spec.name} version {spec.version!r}: versions are integers from 1")
        elif not spec.schema.__name__.endswith(f"V{spec.version}"):
            problems.append(f"{spec.name} v{spec.version}: its schema {spec.schema.__name__} should be named "
                            f"...V{spec.version} (a new version gets a new schema class)")
    for name, group in by_name.items():
        numbers = [spec.version for spec in group if _is_version(spec.version)]
        duplicates = sorted({v for v in numbers if numbers.count(v) > 1})
        if duplicates:
            problems.append(f"{name}: version(s) {duplicates} listed more than once")
        if sorted(set(numbers)) != list(range(1, len(set(numbers)) + 1)):
            problems.append(f"{name}: versions {sorted(set(numbers))} are not 1..N without gaps")
        producers = sorted({spec.producer for spec in group})
        if len(producers) > 1:
            problems.append(f"{name}: versions published by different producers {producers} "
                            f"(the exchange must not change between versions)")
    return problems


def _is_version(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


class Catalogue:
    """Lookups over a list of specs (checked with catalogue_problems: ValueError if any). The
    module functions below use the one built from SPECS."""

    def __init__(self, specs: Iterable[EventSpec]):
        self.specs = tuple(specs)
        problems = catalogue_problems(self.specs)
        if problems:
            raise ValueError("event catalogue: " + "; ".join(problems))
        self.by_key: Mapping[tuple[str, int], EventSpec] = MappingProxyType({s.key: s for s in self.specs})
        self.by_type = {spec.cloudevents_type: spec for spec in self.specs}
        self.versions = {name: tuple(sorted(spec.version for spec in self.specs if spec.name == name))
                         for name in dict.fromkeys(spec.name for spec in self.specs)}
        self.exchanges = {spec.name: spec.exchange for spec in self.specs}

    def spec_for(self, name: str, version: int | None = None) -> EventSpec:
        known = self.versions.get(name)
        if not known:
            raise KeyError(f"unknown event type {name!r}: add it to mailroom_shared.events.catalogue")
        if version is None:
            if len(known) > 1:
                raise VersionRequired(f"event {name!r} has versions {list(known)}: name the version "
                                      f"(a producer declares it in publishes={{{name!r}: N}})")
            version = known[0]
        try:
            return self.by_key[(name, version)]
        except (KeyError, TypeError):
            raise KeyError(f"unknown version {version!r} of event {name!r} (known: {list(known)})") from None

    def spec_for_type(self, cloudevents_type: str) -> EventSpec:
        spec = self.by_type.get(cloudevents_type) if isinstance(cloudevents_type, str) else None
        if spec is not None:
            return spec
        try:
            name, version = parse_type(cloudevents_type)
        except ValueError as exc:
            raise KeyError(str(exc)) from None
        return self.spec_for(name, version)  # raises KeyError: unknown name or version

    def exchange_of(self, name: str) -> str:
        try:
            return self.exchanges[name]
        except KeyError:
            raise KeyError(f"unknown event type {name!r}: add it to mailroom_shared.events.catalogue") from None


def parse_type(cloudevents_type: str) -> tuple[str, int]:
    """`mailroom.<name>.v<N>` -> (name, N); ValueError for anything else. Says nothing about
    whether the catalogue knows the pair (spec_for_type does)."""
    match = _TYPE.fullmatch(cloudevents_type) if isinstance(cloudevents_type, str) else None
    if match is None:
        raise ValueError(f"{cloudevents_type!r} is not a mailroom event type (mailroom.<name>.v<N>)")
    return match.group(1), int(match.group(2))


_catalogue = Catalogue(SPECS)
# (name, version) -> EventSpec, in the order of SPECS
CATALOGUE: Mapping[tuple[str, int], EventSpec] = _catalogue.by_key
# every event name once, in catalogue order
EVENT_NAMES: tuple[str, ...] = tuple(_catalogue.versions)


def versions(name: str) -> tuple[int, ...]:
    """The versions the catalogue knows for `name`, ascending; () for an unknown name."""
    return _catalogue.versions.get(name, ())


def spec_for(name: str, version: int | None = None) -> EventSpec:
    """The spec of `name` at `version`; KeyError for an unknown name or version. Without a
    version: the event's only version; an event with several versions raises VersionRequired."""
    return _catalogue.spec_for(name, version)


def spec_for_type(cloudevents_type: str) -> EventSpec:
    """The spec named by a CloudEvents type such as `mailroom.contact_created.v1`; KeyError
    (with the reason) for a type the catalogue does not know."""
    return _catalogue.spec_for_type(cloudevents_type)


def exchange_of(name: str) -> str:
    """The exchange `name` is published to (the same for every version)."""
    return _catalogue.exchange_of(name)
