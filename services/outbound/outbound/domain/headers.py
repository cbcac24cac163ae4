"""Header safety for outgoing mail, in plain Python (no IO).

Python 3.11.7's email package can emit an injected header from a crafted value
(CVE-2024-6923: an encoded word that decodes to a newline, e.g. `=?UTF-8?Q?=0A?=Bcc: x`), and
its address parser has no `strict` mode (CVE-2023-27043). So:

1. every user-supplied value that can reach a header (subject, display names, addresses,
   filenames, content ids, template output used in a header) is refused when it contains a
   control character, before and after decoding encoded words;
2. addresses are parsed one at a time and rebuilt as `email.headerregistry.Address`;
3. the serialised message is parsed again and its header set compared with the intended one
   (`verify_message`), so anything that slips through the first two is still caught before
   a byte goes to the relay.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import policy
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.headerregistry import Address

from mailroom_shared.addresses import InvalidAddress, normalise_email
from outbound.domain.errors import invalid

# C0 controls (incl. CR, LF, NUL, but not TAB), DEL, C1 controls, and the Unicode line/paragraph
# separators (U+2028/2029, U+0085) that some software treats as line breaks.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x80-\x9f\u2028\u2029]")
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
MAX_HEADER_VALUE = 998
MAX_ADDRESS = 320


class HeaderInjection(ValueError):
    """A user-supplied value would change the message's header structure."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class InvalidRecipient(ValueError):
    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def check_header_value(field: str, value: str | None, *, max_length: int = MAX_HEADER_VALUE) -> str:
    """Return `value` if it is safe in a header; raise HeaderInjection otherwise."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise HeaderInjection(field, "must be a string")
    if _CONTROL.search(value):
        raise HeaderInjection(field, "control characters (CR, LF, NUL, …) are not allowed")
    if len(value) > max_length:
        raise HeaderInjection(field, f"longer than {max_length} characters")
    if _ENCODED_WORD.search(value):
        try:
            decoded = str(make_header(decode_header(value)))
        except (HeaderParseError, LookupError, UnicodeError, ValueError) as exc:
            raise HeaderInjection(field, f"contains an undecodable encoded word ({exc})") from exc
        if _CONTROL.search(decoded):
            raise HeaderInjection(field, "an encoded word decodes to a control character (CVE-2024-6923)")
    return value


def checked_subject(value, field: str = "subject") -> str:
    """A subject (or other free-text header) as it will be sent: safe, stripped; InvalidEmail if not."""
    if value is None:
        return ""
    try:
        return check_header_value(field, value).strip()
    except HeaderInjection as exc:
        raise invalid(exc) from exc


@dataclass(frozen=True)
class Mailbox:
    """A validated recipient or sender: normalised address plus an optional display name."""

    email: str  # normalised (mailroom_shared.addresses)
    name: str | None = None

    def as_dict(self) -> dict:
        return {"name": self.name, "email": self.email}

    def to_address(self) -> Address:
        local, _, domain = self.email.rpartition("@")
        return Address(display_name=self.name or "", username=local, domain=domain)


def mailbox(field: str, value) -> Mailbox:
    """Parse one recipient given as `"a@b"` or `{"email": "a@b", "name": "A"}`."""
    if isinstance(value, dict):
        raw_email, name = value.get("email"), value.get("name")
    elif isinstance(value, str):
        raw_email, name = value, None
    else:
        raise InvalidRecipient(field, "give an address or {email, name}")
    if not raw_email or not isinstance(raw_email, str):
        raise InvalidRecipient(field, "an address is required")
    check_header_value(f"{field}.email", raw_email, max_length=MAX_ADDRESS)
    if name is not None:
        check_header_value(f"{field}.name", name, max_length=200)
        name = name.strip() or None
    try:
        email = normalise_email(raw_email)
    except InvalidAddress as exc:
        raise InvalidRecipient(field, str(exc)) from exc
    local = email.rpartition("@")[0]
    if not local.isascii():
        raise InvalidRecipient(field, "non-ASCII local parts (SMTPUTF8) are not supported")
    return Mailbox(email=email, name=name)


def mailboxes(field: str, values, *, limit: int = 100) -> list[Mailbox]:
    if values is None:
        return []
    if not isinstance(values, list):
        values = [values]
    if len(values) > limit:
        raise InvalidRecipient(field, f"at most {limit} recipients")
    return [mailbox(f"{field}[{i}]", v) for i, v in enumerate(values)]


# --- verification of the serialised message ---------------------------------------------------

PART_HEADERS = {"content-type", "content-transfer-encoding", "content-disposition", "content-id",
                "mime-version", "content-description"}


@dataclass(frozen=True)
class Intended:
    """What the message's top-level headers must be, exactly."""

    header_names: tuple[str, ...]  # lower case, in order
    subject: str
    from_email: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    message_id: str  # without brackets


class MessageVerificationFailed(ValueError):
    pass


def _emails(header) -> tuple[str, ...]:
    if header is None:
        return ()
    return tuple(f"{a.username}@{a.domain}".lower() for a in header.addresses)


def _strict(parsed, name: str):
    """One top-level header as the default policy's parser reads it (the way a modern receiver
    decodes it); None if absent. `parsed` came from the compat32 parser, which keeps the raw
    value: reading Content-Type through the default policy, as the message's structure is walked,
    built a header object on each of ~20 reads and cost half of a build (issue #16)."""
    value = parsed.get(name)
    if value is None:
        return None
    if not isinstance(value, str):  # compat32 wraps a value holding non-ASCII bytes: never ours
        raise MessageVerificationFailed(f"{name} holds bytes that are not 7-bit")
    return policy.default.header_fetch_parse(name, value)


def verify_message(parsed, intended: Intended) -> None:
    """`parsed`: the serialised message parsed again (policy=compat32). Raises on any difference."""
    names = tuple(k.lower() for k in parsed)
    if names != intended.header_names:
        raise MessageVerificationFailed(
            f"header set differs: built {list(names)}, intended {list(intended.header_names)}")
    if "bcc" in names:
        raise MessageVerificationFailed("a Bcc header would be sent")
    if str(_strict(parsed, "Subject") or "") != intended.subject:
        raise MessageVerificationFailed("the Subject did not survive serialisation unchanged")
    if _emails(_strict(parsed, "From")) != (intended.from_email,):
        raise MessageVerificationFailed("From differs")
    if _emails(_strict(parsed, "To")) != intended.to or _emails(_strict(parsed, "Cc")) != intended.cc:
        raise MessageVerificationFailed("recipients differ")
    if str(_strict(parsed, "Message-ID")).strip() != f"<{intended.message_id}>":
        raise MessageVerificationFailed("Message-ID differs")
    for part in _parts(parsed):
        extra = {k.lower() for k in part} - PART_HEADERS
        if extra:
            raise MessageVerificationFailed(f"unexpected MIME part headers {sorted(extra)}")


def _parts(message):
    """Every MIME part below the top level, not descending into an attached message (whose
    own headers are content, checked when that copy was built)."""
    stack = list(message.get_payload()) if message.is_multipart() else []
    while stack:
        part = stack.pop(0)
        yield part
        if part.is_multipart() and part.get_content_maintype() == "multipart":
            stack.extend(part.get_payload())
