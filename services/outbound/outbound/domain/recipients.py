"""Who a reply, reply-all or forward goes to, and its subject and thread headers (no IO).

Recipients always come from the message being replied to, never from the conversation's
contact: a reply to a supplier's message in a customer's conversation goes to the supplier
only (chatwoot/utils#69). Our own inbox addresses never become recipients of a default.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from mailroom_shared.addresses import try_normalise_email
from outbound.domain.headers import Mailbox

MAX_REFERENCES = 10  # first id + the 9 newest (RT keeps 4 + 6, FreeScout ~1 500 chars)
_REPLY_PREFIX = re.compile(r"^\s*(re|aw|sv|antw|vs|odp|r|rif)\s*(\[\d+\])?\s*:\s*", re.IGNORECASE)
_FORWARD_PREFIX = re.compile(r"^\s*(fwd?|wg|tr|rv|vs|doorst)\s*:\s*", re.IGNORECASE)


def _mailbox(value: dict | None) -> Mailbox | None:
    if not value:
        return None
    email = try_normalise_email(value.get("email"))
    if email is None:
        return None
    name = (value.get("name") or "").strip() or None
    return Mailbox(email=email, name=name)


@dataclass(frozen=True)
class ReplyRecipients:
    to: list[Mailbox]
    cc: list[Mailbox]


def default_reply_recipients(message: dict, own_addresses: Iterable[str], *, reply_all: bool) -> ReplyRecipients:
    """To and CC of a reply to `message` (a conversations message: sender, attributed_to,
    forward, reply_to, to, cc, direction).

    - an inbound message: To = the original sender of an attributed (trusted) forward, else
      its Reply-To (when it names someone other than us), else its sender;
    - our own outbound message (a follow-up): To = its To;
    - reply-all adds the message's other To and CC recipients as CC.
    """
    own = {a for a in (try_normalise_email(x) for x in own_addresses) if a}
    direction = message.get("direction") or "in"
    forward = message.get("forward") or {}
    to: list[Mailbox] = []
    if direction == "out":
        to = [m for m in map(_mailbox, message.get("to") or []) if m]
    else:
        candidates = []
        if forward and forward.get("trusted"):
            candidates.append(message.get("attributed_to"))
        reply_to = [m for m in map(_mailbox, message.get("reply_to") or []) if m and m.email not in own]
        if reply_to and not (forward and forward.get("trusted")):
            to = reply_to
        else:
            candidates += [message.get("sender"), message.get("attributed_to")]
            for candidate in candidates:
                box = _mailbox(candidate)
                if box and box.email not in own:
                    to = [box]
                    break
    cc: list[Mailbox] = []
    if reply_all:
        others = [m for m in map(_mailbox, [*(message.get("to") or []), *(message.get("cc") or [])]) if m]
        if direction == "in":
            sender = _mailbox(message.get("sender"))
            if sender:
                others.append(sender)  # the forwarder of an attributed forward stays in the loop
        cc = others
    return dedupe(to, cc, [], own)


def dedupe(to: list[Mailbox], cc: list[Mailbox], bcc: list[Mailbox],
           own: Iterable[str] = ()) -> ReplyRecipients:
    """Drop our own addresses from defaults and repeats: an address appears once, in the first
    of To, CC (BCC is handled by `dedupe_bcc`)."""
    own_set = set(own)
    seen: set[str] = set()
    result: list[list[Mailbox]] = []
    for group in (to, cc):
        kept = []
        for box in group:
            if box.email in seen or box.email in own_set:
                continue
            seen.add(box.email)
            kept.append(box)
        result.append(kept)
    return ReplyRecipients(result[0], result[1])


def merge(defaults: list[Mailbox], added: list[Mailbox]) -> list[Mailbox]:
    seen, merged = set(), []
    for box in [*defaults, *added]:
        if box.email not in seen:
            seen.add(box.email)
            merged.append(box)
    return merged


def final_recipients(to: list[Mailbox], cc: list[Mailbox], bcc: list[Mailbox]) -> tuple[list, list, list]:
    """Each address once: To wins over CC, CC over BCC (a BCC recipient also in To is simply To)."""
    seen: set[str] = set()
    out = []
    for group in (to, cc, bcc):
        kept = []
        for box in group:
            if box.email not in seen:
                seen.add(box.email)
                kept.append(box)
        out.append(kept)
    return out[0], out[1], out[2]


def base_subject(subject: str | None) -> str:
    """The subject without any leading Re:/Fwd: prefixes."""
    value = (subject or "").strip()
    while True:
        stripped = _FORWARD_PREFIX.sub("", _REPLY_PREFIX.sub("", value, count=1), count=1)
        if stripped == value:
            return value
        value = stripped.strip()


def reply_subject(subject: str | None) -> str:
    value = (subject or "").strip()
    if _REPLY_PREFIX.match(value):
        return value
    return f"Re: {value}" if value else "Re:"


def forward_subject(subject: str | None) -> str:
    value = (subject or "").strip()
    if _FORWARD_PREFIX.match(value):
        return value
    return f"Fwd: {value}" if value else "Fwd:"


def clean_id(value: str | None) -> str:
    return "".join((value or "").split()).strip("<>")


def thread_references(replied_references: Iterable[str], replied_in_reply_to: Iterable[str],
                      replied_message_id: str, limit: int = MAX_REFERENCES) -> list[str]:
    """References of a reply: the replied message's References (or, lacking them, its
    In-Reply-To) plus its own Message-ID; capped keeping the first (the thread root) and the
    newest, so a long thread cannot grow the header without bound."""
    ids: list[str] = []
    chain = list(replied_references) or list(replied_in_reply_to)
    for raw in [*chain, replied_message_id]:
        value = clean_id(raw)
        if value and "@" in value and value not in ids and not any(ch in value for ch in "<> \t\r\n"):
            ids.append(value)
    if len(ids) > limit:
        ids = [ids[0], *ids[-(limit - 1):]]
    return ids
