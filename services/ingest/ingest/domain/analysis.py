"""What ingest concludes about one raw message: the single code path shared by the service and
by `mailroom explain` (no second parser).

parse → classify → detect a forward → decide whom the message is attributed to.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32

from ingest.domain.authentication import Authentication, AuthenticationPolicy, TxtLookup, authenticate
from ingest.domain.classify import classify
from ingest.domain.forwards import detect_forward
from ingest.domain.model import Address, Classification, ForwardInfo, ParsedMessage, ParseLimits
from ingest.domain.parsing import parse_message, parse_message_ids, raw_header_values
from ingest.domain.sanitize import html_preview, sanitize_html

GENERATED_ID_DOMAIN = "generated.mailroom.invalid"


@dataclass(frozen=True)
class AnalysisSettings:
    own_addresses: frozenset[str] = frozenset()  # every inbox channel address
    own_message_id_domain: str | None = None  # domain of the Message-IDs outbound generates
    internal_domains: frozenset[str] = frozenset()  # forwarders from these domains are trusted
    authentication: AuthenticationPolicy = field(default_factory=AuthenticationPolicy)  # and authenticated so
    spam_score_headers: dict[str, float] = field(default_factory=dict)
    limits: ParseLimits = field(default_factory=ParseLimits)
    html_preview_bytes: int = 100_000


@dataclass
class Analysis:
    parsed: ParsedMessage
    message_id: str  # Message-ID, or a stable one generated from the bytes
    classification: Classification
    forward: ForwardInfo | None
    forward_trusted: bool  # the forward is attributed: a trusted forwarder, authenticated
    attributed_to: Address
    forwarder_trusted: bool = False  # an inbox member, one of our inboxes or an internal domain
    authentication: Authentication | None = None  # decided for forwards from a trusted forwarder

    def forward_metadata(self) -> dict | None:
        """The forward as the analysis found it (message_received's `forward`, less `forwarded_by`)."""
        if self.forward is None:
            return None
        return {**self.forward.as_dict(), "trusted": self.forward_trusted,
                "authenticated": bool(self.authentication and self.authentication.authenticated),
                "authentication": self.authentication_dict()}

    def authentication_dict(self) -> dict | None:
        if self.forward is None:
            return None
        if self.authentication is not None:
            return self.authentication.as_dict()
        if not self.forwarder_trusted:
            return {"authenticated": False, "reason": "not checked: the forwarder is not trusted "
                                                      "(not an inbox member, one of our inboxes or an internal domain)"}
        return {"authenticated": False, "reason": "not checked: the forward names no original address"}

    def explain(self) -> dict:
        """The `mailroom explain --json` document."""
        sender = self.parsed.sender or Address(None, None)
        return {
            "message_id": self.message_id,
            "subject": self.parsed.subject,
            "sender": sender.as_dict(),
            "forward": self.forward_metadata(),
            # which rule decided, and each nesting step (outermost first; the last one decided)
            "forward_steps": list(self.forward.steps) if self.forward else [],
            "forwarder_trusted": self.forwarder_trusted,
            "attributed_to": self.attributed_to.as_dict(),
            "auto_submitted": self.classification.auto_submitted,
            "bounce": self.classification.bounce,
            "spam": self.classification.spam,
            "loop": self.classification.loop,
            "reasons": list(self.classification.reasons),
            "attachments": [{"filename": a.filename, "content_type": a.content_type, "size": a.size,
                             "disposition": a.disposition} for a in self.parsed.attachments],
            "defects": list(self.parsed.defects),
        }


def stable_message_id(raw: bytes) -> str:
    """For mail without a Message-ID: the same bytes always get the same id, so a re-delivery
    of the same message is still recognised as a duplicate."""
    return f"{hashlib.sha256(raw).hexdigest()[:40]}@{GENERATED_ID_DOMAIN}"


def dedupe_key(raw: bytes) -> str:
    """What makes two deliveries the same message (with the channel): the Message-ID read from
    the headers alone (cheap, before any parsing), else a stable id from the bytes."""
    try:
        headers = BytesHeaderParser(policy=compat32).parsebytes(raw[:256 * 1024])
        ids = parse_message_ids([str(v) for v in headers.get_all("Message-ID", [])])
    except Exception:  # a header section we cannot even split: the bytes identify it
        ids = []
    return ids[0] if ids else stable_message_id(raw)


def is_trusted_forwarder(sender: Address | None, trusted_senders: frozenset[str],
                         internal_domains: frozenset[str]) -> bool:
    if sender is None or not sender.email:
        return False
    email = sender.email.lower()
    return email in trusted_senders or email.rpartition("@")[2] in internal_domains


def attribute(sender: Address | None, forward: ForwardInfo | None, trusted: bool) -> Address:
    """A trusted (and authenticated) forward with a real original address belongs to the original
    sender; anything else (untrusted or unauthenticated forwarder, name without address) stays
    with whoever sent it."""
    if forward is not None and trusted and forward.original_sender.email:
        return forward.original_sender
    return sender or Address(None, None)


def analyse(raw: bytes, settings: AnalysisSettings, *, trusted_senders: frozenset[str] = frozenset(),
            trust_sender: bool = False, authenticated: bool = False, team_mailbox: bool = False,
            dkim_lookup: TxtLookup | None = None) -> Analysis:
    """Raises parsing.MessageTooComplex when the message exceeds the parse limits.

    A forward is attributed to its original sender when the forwarder is trusted (in
    `trusted_senders` or an internal domain; `trust_sender` says so whatever the address) and
    authenticated (domain.authentication: `team_mailbox` for mail fetched over IMAP from the
    team's own mailbox, `dkim_lookup` for DKIM keys when the policy verifies DKIM;
    `authenticated` asserts it). Authentication is only looked at for such forwards."""
    parsed = parse_message(raw, settings.limits)
    classification = classify(parsed, own_addresses=settings.own_addresses,
                              own_message_id_domain=settings.own_message_id_domain,
                              spam_score_headers=settings.spam_score_headers)
    # Bounces and auto-replies quote our own mail: never treat them as forwards.
    forward = None if classification.bounce else detect_forward(parsed, settings.limits)
    trusted = trust_sender or is_trusted_forwarder(parsed.sender, trusted_senders, settings.internal_domains)
    verdict = None
    if forward is not None and trusted and forward.original_sender.email:
        verdict = authenticate(raw, raw_header_values(parsed.message, "From"),
                               parsed.sender.email if parsed.sender else None,
                               raw_header_values(parsed.message, "Authentication-Results"),
                               settings.authentication, team_mailbox=team_mailbox, lookup=dkim_lookup,
                               asserted=authenticated)
    attributed = trusted and verdict is not None and verdict.authenticated
    return Analysis(
        parsed=parsed, message_id=parsed.message_id or stable_message_id(raw),
        classification=classification, forward=forward, forward_trusted=bool(forward) and attributed,
        attributed_to=attribute(parsed.sender, forward, attributed),
        forwarder_trusted=trusted, authentication=verdict,
    )


def render_html(parsed: ParsedMessage, cid_urls: dict[str, str], max_bytes: int, *,
                allow_remote_images: bool = False) -> tuple[str | None, bool, int]:
    """Sanitised HTML preview: (html, truncated, remote images blocked)."""
    if not parsed.html:
        return None, False, 0
    sanitised = sanitize_html(parsed.html, cid_urls, allow_remote_images=allow_remote_images)
    preview, truncated = html_preview(sanitised.html, max_bytes)
    return preview, truncated, sanitised.remote_images_blocked
