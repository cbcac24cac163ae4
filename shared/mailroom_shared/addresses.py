"""Email address normalisation, shared so that every service compares addresses the same way.

flanker does the RFC 5322 parsing; we only decide what "the same address" means:
local part kept as written except for case, domain lower-cased and IDNA-decoded to Unicode.
"""

from __future__ import annotations

import logging

import idna

# flanker builds its parsers at import time and logs harmless grammar warnings ("Symbol … is
# unreachable") through this logger; they would otherwise land on every command's stderr.
logging.getLogger("flanker.addresslib._parser.parser").setLevel(logging.ERROR)

from flanker.addresslib import address as flanker_address  # noqa: E402


class InvalidAddress(ValueError):
    pass


def normalise_email(raw: str) -> str:
    """Return the canonical form of one address: `" <Foo@Bücher.DE> "` → `foo@bücher.de`.

    Raises InvalidAddress for anything that is not a single valid mailbox.
    """
    candidate = (raw or "").strip().strip("<>").strip()
    unquoted = candidate.rpartition('"')[2] if candidate.startswith('"') else candidate
    if any(ch in unquoted for ch in ",;<>") or any(ch.isspace() for ch in unquoted):
        # flanker would happily pick one mailbox out of a list or a "Name <addr>" string
        raise InvalidAddress(f"not a single email address: {raw!r}")
    parsed = flanker_address.parse(candidate, addr_spec_only=True)
    if parsed is None or not getattr(parsed, "mailbox", None):
        raise InvalidAddress(f"not a valid email address: {raw!r}")
    local, _, domain = parsed.address.rpartition("@")
    try:
        domain = idna.decode(domain) if domain.startswith("xn--") or ".xn--" in domain else domain
    except idna.IDNAError as exc:
        raise InvalidAddress(f"invalid internationalised domain in {raw!r}: {exc}") from exc
    return f"{local.lower()}@{domain.lower()}"


def try_normalise_email(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        return normalise_email(raw)
    except InvalidAddress:
        return None
