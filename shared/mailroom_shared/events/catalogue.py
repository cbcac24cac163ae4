"""The one source of truth for every event mailroom publishes.

Producers validate against these schemas before publishing; consumers read tolerantly.
docs/events.asyncapi.yaml is generated from this module (`make docs`).
A breaking change to a schema is a new version: add `FooV2` and a new entry, keep V1.
"""

from __future__ import annotations

from dataclasses import dataclass

from marshmallow import Schema

from mailroom_shared.events import contacts, conversations, ingest, outbound


@dataclass(frozen=True)
class EventSpec:
    name: str  # routing key, snake_case past tense
    producer: str  # service name; the exchange is `<producer>.events`
    version: int
    schema: type[Schema]
    summary: str

    @property
    def exchange(self) -> str:
        return f"{self.producer}.events"

    @property
    def cloudevents_type(self) -> str:
        return f"mailroom.{self.name}.v{self.version}"


_SPECS = [
    EventSpec("message_received", "ingest", 1, ingest.MessageReceivedV1,
              "A message for an inbox channel was stored, parsed and classified."),
    EventSpec("message_quarantined", "ingest", 1, ingest.MessageQuarantinedV1,
              "A message was stored raw but could not be processed; the reason is for an operator."),
    EventSpec("mailbox_unreachable", "ingest", 1, ingest.MailboxUnreachableV1,
              "A connected IMAP mailbox stopped answering."),
    EventSpec("contact_created", "contacts", 1, contacts.ContactCreatedV1,
              "A contact was created (for an unknown sender, or through the API)."),
    EventSpec("timeline_entry_added", "contacts", 1, contacts.TimelineEntryAddedV1,
              "An email in or out was logged on a contact's timeline."),
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
]

CATALOGUE: dict[str, EventSpec] = {spec.name: spec for spec in _SPECS}


def spec_for(name: str) -> EventSpec:
    try:
        return CATALOGUE[name]
    except KeyError:
        raise KeyError(f"unknown event type {name!r}: add it to mailroom_shared.events.catalogue") from None
