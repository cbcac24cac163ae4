"""What a forward carries of the originals: quoted below the note (headers and body), or rebuilt as
`message/rfc822` attachments from what conversations stored (the raw bytes stay in ingest's blob
store). Values taken from stored inbound mail are made safe before they reach a header."""

from __future__ import annotations

import html as html_lib
import re
from email.message import EmailMessage
from email.policy import SMTP

from outbound.domain.body import html_to_text, text_to_html
from outbound.domain.mime import AttachedMessage

FORWARD_MODES = ("quote", "attach")


def plain(value) -> str:
    """A header value taken from stored inbound mail, made safe to show or to put in a header."""
    return re.sub(r"[\x00-\x1f\x7f\u2028\u2029]", " ", str(value or "")).strip()


def who(address: dict | None) -> str:
    if not address:
        return ""
    name, email = plain(address.get("name")), plain(address.get("email"))
    return f"{name} <{email}>" if name and email else (email or name)


def _text_of(message: dict) -> str:
    return message.get("text") or (html_to_text(message["html"]) if message.get("html") else "")


def quote(messages: list[dict]) -> tuple[str, str]:
    """The originals quoted one after the other: (html, text)."""
    html_parts, text_parts = [], []
    for message in messages:
        fields = [("From", who(message.get("from") or message.get("sender"))),
                  ("Date", plain(message.get("date") or message.get("received_at"))),
                  ("Subject", plain(message.get("subject"))),
                  ("To", ", ".join(who(a) for a in message.get("to") or []))]
        if message.get("cc"):
            fields.append(("Cc", ", ".join(who(a) for a in message["cc"])))
        header_text = "\n".join(f"{k}: {v}" for k, v in fields)
        header_html = "<br>".join(f"{k}: {html_lib.escape(v)}" for k, v in fields)
        text = _text_of(message)
        html = message.get("html") or text_to_html(text)
        text_parts.append(f"---------- Forwarded message ---------\n{header_text}\n\n{text}")
        html_parts.append(f"<p>---------- Forwarded message ---------<br>{header_html}</p>"
                          f"<blockquote>{html}</blockquote>")
    return "".join(html_parts), "\n\n".join(text_parts)


def rebuilt_original(message: dict) -> AttachedMessage:
    """The original as message/rfc822 from what conversations stored (headers and bodies)."""
    original = EmailMessage(policy=SMTP.clone(cte_type="7bit"))
    for name, value in (("From", who(message.get("from") or message.get("sender"))),
                        ("To", ", ".join(who(a) for a in message.get("to") or [])),
                        ("Cc", ", ".join(who(a) for a in message.get("cc") or [])),
                        ("Date", plain(message.get("date"))), ("Subject", plain(message.get("subject"))),
                        ("Message-ID", f"<{plain(message.get('rfc_message_id'))}>")):
        if value and value != "<>":
            try:
                original[name] = value
            except (ValueError, TypeError, IndexError):
                continue  # an unparseable stored value: the quoted text still shows it
    original.set_content(_text_of(message) or "\n", charset="utf-8", cte="quoted-printable")
    if message.get("html"):
        original.add_alternative(message["html"], subtype="html", charset="utf-8", cte="quoted-printable")
    subject = plain(message.get("subject")) or "message"
    safe = re.sub(r"[^\w .-]+", "_", subject)[:80].strip() or "message"
    return AttachedMessage(data=original.as_bytes(), filename=f"{safe}.eml")
