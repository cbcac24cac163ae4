"""Email address normalisation, shared so that every service compares addresses the same way.

flanker does the RFC 5322 parsing; we only decide what "the same address" means:
local part kept as written except for case, domain lower-cased and IDNA-decoded to Unicode.

Import flanker's address parser from here (`flanker_address`), not from flanker, so that it is
always built quietly (below).
"""

from __future__ import annotations

import functools
import logging

import idna

# flanker builds its five address parsers with ply when it is imported. The tables it ships were
# made by ply 3.10; ply 3.11 sorts the tokens in a grammar's signature, so it finds them stale,
# rebuilds the parsers (about 50 ms), logs some thirty harmless "Symbol '…' is unreachable"
# warnings (each parser starts from another rule of one grammar) and tries to write new tables
# into site-packages ("Couldn't create …" where it may not, e.g. a read-only image). All of that
# goes through this logger: keep its errors, drop its warnings. It must be set before flanker's
# parser is first imported, which is why the `mailroom` command imports this module first
# (tests/test_mailroom_run.py checks `mailroom explain` with stale tables).
PARSER_LOG = "flanker.addresslib._parser.parser"
logging.getLogger(PARSER_LOG).setLevel(logging.ERROR)

from flanker.addresslib import address as flanker_address  # noqa: E402


class InvalidAddress(ValueError):
    pass


# What every service can store: contacts' and conversations' email columns are String(320) (RFC 5321's
# 64-octet local part, "@" and 255-octet domain).
MAX_ADDRESS_CHARS = 320


# Addresses repeat (the same customers, the inbox's own addresses), and flanker's grammar parser is
# the costly part: a tenth of conversations' CPU per inbound email in bench/handler_bench.py. A pure
# function of its input, so its results are kept; only for inputs of an address's length, so that
# hostile input cannot fill the memory with large keys.
_CACHED_INPUT_CHARS = MAX_ADDRESS_CHARS + 80
_INVALID = object()


@functools.lru_cache(maxsize=16384)
def _normalise_cached(raw: str) -> str | object:
    try:
        return _normalise(raw)
    except InvalidAddress:
        return _INVALID


def normalise_email(raw: str) -> str:
    """Return the canonical form of one address: `" <Foo@Bücher.DE> "` → `foo@bücher.de`.

    Raises InvalidAddress for anything that is not a single valid mailbox, for an address holding
    more than one `@` (in a quoted local part) and for one longer than MAX_ADDRESS_CHARS.
    """
    if isinstance(raw, str) and len(raw) <= _CACHED_INPUT_CHARS:
        if _normalise_cached(raw) is _INVALID:
            return _normalise(raw)  # raises, with the reason
        return _normalise_cached(raw)
    return _normalise(raw)


def _normalise(raw: str) -> str:
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
    normalised = f"{local.lower()}@{domain.lower()}"
    if normalised.count("@") != 1:
        # a quoted local part may hold an "@" (`"support@mailroom.test"@evil.example`): it reads as
        # another address, and code that splits at the first "@" takes the wrong domain
        raise InvalidAddress(f"an address with more than one '@': {raw!r}")
    if len(normalised) > MAX_ADDRESS_CHARS:
        raise InvalidAddress(f"an address of {len(normalised)} characters (at most {MAX_ADDRESS_CHARS}): "
                             f"{raw[:80]!r}...")
    return normalised


def try_normalise_email(raw: str | None) -> str | None:
    if not raw:
        return None
    if isinstance(raw, str) and len(raw) <= _CACHED_INPUT_CHARS:
        normalised = _normalise_cached(raw)
        return None if normalised is _INVALID else normalised
    try:
        return _normalise(raw)
    except InvalidAddress:
        return None
