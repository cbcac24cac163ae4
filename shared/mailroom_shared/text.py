"""Small text and time formats that several services must agree on (plain Python)."""

from __future__ import annotations

import datetime as dt
import re

SNIPPET_CHARS = 200

_TAG = re.compile(r"<[^>]+>")


def snippet(text: str | None, html_fallback: str | None = None, limit: int = SNIPPET_CHARS) -> str:
    """The first `limit` characters of a message, white space folded: its text part, else its
    HTML with the tags removed. Cut text ends with an ellipsis."""
    source = text if text and text.strip() else _TAG.sub(" ", html_fallback or "")
    collapsed = " ".join(source.split())
    return collapsed if len(collapsed) <= limit else collapsed[: limit - 1].rstrip() + "…"


def reply_address(channel_address: str, token: str) -> str:
    """`support@x` + token → `support+<token>@x`: the address replies come back to, and what
    ingest reads the token from (the plus-address format is a contract between services)."""
    local, _, domain = channel_address.rpartition("@")
    return f"{local}+{token}@{domain}"


def iso_time(value: dt.datetime | None) -> str | None:
    """ISO 8601 with an explicit offset; a naive datetime (SQLite gives those back) is UTC."""
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()
