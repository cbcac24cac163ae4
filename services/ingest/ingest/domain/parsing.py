"""Turn raw RFC 5322 bytes into a ParsedMessage, robustly.

The stdlib parser (`email` with `policy.default`) builds the tree; everything that reads from the
tree is written defensively because real mail is full of broken MIME, mislabelled charsets and
raw 8-bit headers. Problems become human-readable `defects`; the only exception raised is
`MessageTooComplex`, when a limit (MIME depth, part count, wall-clock budget) is exceeded, so the
caller can quarantine the message with that reason (DESIGN: bad input loses nothing).

Decisions worth knowing:
- Addresses inside group syntax (`Team: a@x, b@y;`) are kept as ordinary recipients; an empty
  group (`undisclosed-recipients:;`) and unparseable entries are skipped with a defect.
- A `From:` that holds only a display name becomes `Address(name, None)`: we never invent an address.
- Charset fall-back order: declared → UTF-8 → declared with replacements when only a few bytes
  are broken → charset_normalizer (if installed) → windows-1252 with replacements.
- Attachments inside an attached message/rfc822 are not listed separately: the whole message is one
  `.eml` attachment and also appears in `embedded_messages`.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import contextlib
import email._header_value_parser as _header_value_parser
import functools
import hashlib
import io
import mimetypes
import quopri
import re
import time
import unicodedata
from dataclasses import dataclass, field
from email import policy
from email.generator import BytesGenerator
from email.headerregistry import HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import parsedate_to_datetime

from ingest.domain.model import Address, Attachment, ParsedMessage, ParseLimits
from mailroom_shared.addresses import flanker_address, try_normalise_email

try:  # optional, better guesses for unlabelled legacy text
    from charset_normalizer import from_bytes as _detect_charset
except ImportError:  # pragma: no cover - exercised only without the package
    _detect_charset = None


class MessageTooComplex(ValueError):
    """The message exceeds a parse limit; str(exc) is the reason to show in quarantine."""


# --------------------------------------------------------------------------------------------
# charsets

# Labels that real mailers use for a superset encoding (WHATWG-style): decoding with the
# superset never loses text that the strict codec would have accepted.
_CHARSET_CANDIDATES: dict[str, tuple[str, ...]] = {
    "us-ascii": ("ascii",),
    "ascii": ("ascii",),
    "iso-8859-1": ("cp1252",),
    "latin1": ("cp1252",),
    "latin-1": ("cp1252",),
    "iso-8859-11": ("cp874",),
    "tis-620": ("cp874",),
    "gb2312": ("gb18030",),
    "gbk": ("gb18030",),
    "euc-cn": ("gb18030",),
    "x-gbk": ("gb18030",),
    "cp936": ("gb18030",),
    "big5": ("big5hkscs", "cp950"),
    "shift_jis": ("cp932",),
    "shift-jis": ("cp932",),
    "sjis": ("cp932",),
    "x-sjis": ("cp932",),
    "ms_kanji": ("cp932",),
    "euc-kr": ("cp949",),
    "ks_c_5601-1987": ("cp949",),
    "iso-2022-jp": ("iso2022_jp", "iso2022_jp_ext", "iso2022_jp_2", "iso2022_jp_2004"),
    "unicode-1-1-utf-7": ("utf-7",),
    "utf8": ("utf-8",),
}
# Text codecs that Python knows but that are not charsets: never let a header pick them.
_FORBIDDEN_CODECS = {"unicode-escape", "raw-unicode-escape", "idna", "punycode", "undefined"}
_SINGLE_BYTE_PREFIXES = ("cp125", "cp874", "iso8859", "latin", "koi8", "mac-", "cp437", "cp85")
_MAX_REPLACEMENT_RATIO = 0.01


def _normalise_label(label: str | None) -> str | None:
    if not label:
        return None
    # RFC 2231 language suffix (utf-8*en) and stray quotes/whitespace seen in the wild
    cleaned = label.strip().strip("\"'").split("*", 1)[0].strip().lower()
    return cleaned or None


def _codecs_for(label: str | None) -> tuple[str, ...]:
    """Python codec names to try for a declared charset, or () when unknown/unusable."""
    name = _normalise_label(label)
    if name is None:
        return ()
    candidates = _CHARSET_CANDIDATES.get(name, (name,))
    usable = []
    for candidate in candidates:
        try:
            info = codecs.lookup(candidate)
        except (LookupError, ValueError):
            continue
        if getattr(info, "_is_text_encoding", True) and info.name not in _FORBIDDEN_CODECS:
            usable.append(info.name)
    return tuple(usable)


def _is_single_byte(codec_name: str) -> bool:
    return codec_name.replace("_", "-").startswith(_SINGLE_BYTE_PREFIXES)


def _strict_decode(data: bytes, codec_names: tuple[str, ...]) -> str | None:
    for codec_name in codec_names:
        try:
            return data.decode(codec_name)
        except (UnicodeDecodeError, LookupError):
            continue
    return None


def decode_bytes(data: bytes, declared: str | None, *, hint: str | None = None) -> tuple[str, str | None]:
    """Decode text best-effort; returns (text, defect or None).

    `hint` is a second charset to try before guessing (e.g. the body charset for raw 8-bit headers).
    """
    declared_codecs = _codecs_for(declared)
    unknown_note = f"unknown charset {declared!r}" if declared and not declared_codecs else None

    # Valid multi-byte UTF-8 labelled as a single-byte charset is a mislabel, not Latin-1 text.
    if declared_codecs and _is_single_byte(declared_codecs[0]) and not data.isascii():
        as_utf8 = _strict_decode(data, ("utf-8",))
        if as_utf8 is not None:
            return as_utf8, f"charset {declared!r} mislabelled, decoded as utf-8"
    text = _strict_decode(data, declared_codecs)  # first even for 7-bit data: ISO-2022-JP, UTF-7
    if text is not None:
        return text, unknown_note
    if data.isascii():
        return data.decode("ascii"), unknown_note or f"invalid {declared!r} text, shown as ascii"
    problem = unknown_note or (f"invalid {declared!r} text" if declared else "8-bit text without charset")

    text = _strict_decode(data, ("utf-8",))
    if text is not None:
        return text, f"{problem}, decoded as utf-8"
    text = _strict_decode(data, _codecs_for(hint))
    if text is not None:
        return text, f"{problem}, decoded as {_normalise_label(hint)}"
    if declared_codecs:
        # A few broken bytes in otherwise valid text: keep the declared charset.
        text = data.decode(declared_codecs[0], errors="replace")
        if _mostly_valid(text):
            return text, f"{problem}, broken bytes replaced"
    guessed = _guess_charset(data)
    if guessed is not None:
        return guessed, f"{problem}, decoded by guess"
    return data.decode("cp1252", errors="replace"), f"{problem}, decoded as windows-1252"


def _mostly_valid(text: str) -> bool:
    """Few replacement characters, or more well-decoded non-ASCII characters than broken ones."""
    broken = text.count("\ufffd")
    decoded = sum(1 for char in text if ord(char) > 127) - broken
    return broken <= max(2, int(len(text) * _MAX_REPLACEMENT_RATIO)) or decoded >= broken


_MIN_BYTES_TO_GUESS = 16


def _guess_charset(data: bytes) -> str | None:
    # Detectors guess wildly on a handful of bytes (a name in a header): windows-1252 is safer there.
    if _detect_charset is None or sum(byte >= 0x80 for byte in data) < _MIN_BYTES_TO_GUESS:
        return None
    try:
        best = _detect_charset(data).best()
    except Exception:  # the detector is a heuristic: never let it break parsing
        return None
    return str(best) if best is not None else None


# --------------------------------------------------------------------------------------------
# headers

_FOLD = re.compile(r"\r?\n(?=[ \t])")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\r\n]*?)\?=")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
_HEX_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")


def _unfold(value: str) -> str:
    return _FOLD.sub("", value).strip("\r\n")


def _raw_to_text(value: str, hint: str | None, defects: list[str] | None) -> str:
    """Undo the parser's surrogateescape: raw 8-bit header bytes decoded best-effort."""
    data = value.encode("utf-8", "surrogateescape")
    if data.isascii():
        return value
    try:
        return data.decode("utf-8")  # RFC 6532 allows raw UTF-8 headers: not a defect
    except UnicodeDecodeError:
        pass
    text, defect = decode_bytes(data, None, hint=hint)
    if defect and defects is not None:
        defects.append(f"raw 8-bit header: {defect}")
    return text


def _decode_word_payload(encoding: str, encoded: str) -> bytes:
    if encoding in "bB":
        compact = re.sub(r"[^A-Za-z0-9+/]", "", encoded)
        compact = compact[: len(compact) - len(compact) % 4 if len(compact) % 4 == 1 else len(compact)]
        try:
            return base64.b64decode(compact + "=" * (-len(compact) % 4))
        except (binascii.Error, ValueError):
            return encoded.encode("ascii", "replace")
    raw = encoded.replace("_", " ").encode("utf-8", "surrogateescape")
    return _HEX_ESCAPE.sub(lambda match: bytes([int(match.group(1), 16)]), raw)


def decode_encoded_words(text: str, defects: list[str] | None = None) -> str:
    """RFC 2047 decoding that tolerates what mailers get wrong.

    Adjacent words with the same charset are decoded together, because mailers split multi-byte
    characters across words; whitespace between encoded words is dropped (RFC 2047 §6.2).
    """
    if "=?" not in text:
        return text
    pieces: list[str] = []
    pending_charset: str | None = None
    pending = b""
    position = 0

    def flush() -> None:
        nonlocal pending, pending_charset
        if pending_charset is not None:
            decoded, defect = decode_bytes(pending, pending_charset)
            if defect and defects is not None:
                defects.append(f"encoded-word: {defect}")
            pieces.append(decoded)
        pending, pending_charset = b"", None

    for match in _ENCODED_WORD.finditer(text):
        gap = text[position : match.start()]
        if gap and not (gap.isspace() and pending_charset is not None):
            flush()
            pieces.append(gap)
        charset = _normalise_label(match.group(1)) or "us-ascii"
        if pending_charset is not None and charset != pending_charset:
            flush()
        pending_charset = charset
        pending += _decode_word_payload(match.group(2), match.group(3))
        position = match.end()
    flush()
    pieces.append(text[position:])
    return "".join(pieces)


def _clean_text(value: str) -> str:
    """Single-line display text: no control characters (header injection), collapsed spaces."""
    return " ".join(_CONTROL_CHARS.sub(" ", value).split())


def _raw_header_values(msg: Message, name: str) -> list[str]:
    wanted = name.lower()
    try:
        return [_unfold(str(value)) for key, value in msg.raw_items() if key.lower() == wanted]
    except Exception:  # a header the policy cannot even hold: treat as absent
        return []


def raw_header_values(msg: Message, name: str) -> list[str]:
    """Every value of a header as written (unfolded, not decoded), topmost first."""
    return _raw_header_values(msg, name)


def _first_raw_header(msg: Message, name: str) -> str | None:
    values = _raw_header_values(msg, name)
    return values[0] if values else None


def decode_header_text(
    value: str | None, *, hint: str | None = None, defects: list[str] | None = None
) -> str:
    if value is None:
        return ""
    return _clean_text(decode_encoded_words(_raw_to_text(_unfold(value), hint, defects), defects))


def header_values(msg: Message, name: str) -> list[str]:
    """All values of a header, decoded (RFC 2047, raw 8-bit) to single-line display text."""
    return [decode_header_text(value) for value in _raw_header_values(msg, name)]


# --------------------------------------------------------------------------------------------
# addresses


@dataclass
class _AddressListSplit:
    entries: list[str] = field(default_factory=list)
    empty_groups: list[str] = field(default_factory=list)


def _split_address_list(value: str) -> _AddressListSplit:
    """Split at top-level commas, respecting quotes, comments and angle brackets.

    Group syntax (`name: a, b;`) is flattened: members become ordinary entries.
    """
    result = _AddressListSplit()
    current: list[str] = []
    group_name: str | None = None
    group_members = 0
    in_quotes = escaped = False
    comment_depth = angle_depth = 0

    def finish_entry() -> None:
        nonlocal group_members
        entry = "".join(current).strip()
        current.clear()
        if entry:
            result.entries.append(entry)
            group_members += 1

    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and (in_quotes or comment_depth):
            escaped = True
        elif in_quotes:
            in_quotes = char != '"'
        elif char == '"':
            in_quotes = True
        elif char == "(":
            comment_depth += 1
        elif char == ")" and comment_depth:
            comment_depth -= 1
        elif comment_depth:
            pass
        elif char == "<":
            angle_depth += 1
        elif char == ">" and angle_depth:
            angle_depth -= 1
        elif angle_depth:
            pass
        elif char == ",":
            finish_entry()
            continue
        elif char == ":" and group_name is None:
            group_name, group_members = "".join(current).strip(), 0
            current.clear()
            continue
        elif char == ";" and group_name is not None:
            finish_entry()
            if group_members == 0:
                result.empty_groups.append(group_name)
            group_name = None
            continue
        current.append(char)
    finish_entry()
    if group_name is not None and group_members == 0:
        result.empty_groups.append(group_name)
    return result


_BRACKETED = re.compile(r"<\s*(?:@[^:<>]*:)?([^<>\s]+@[^<>\s]+)\s*>")


# flanker's grammar (ply) costs about 0.1-0.3 ms an address, and the same addresses come again and again:
# the inbox's own address in every To, a customer's in every message of a conversation. What an entry
# parses to depends on its text alone (Address is immutable), so a worker process remembers the last
# few thousand; entries longer than a real mailbox are parsed each time rather than kept.
_ADDRESS_CACHE_SIZE = 4096
_ADDRESS_CACHE_MAX_CHARS = 512


@functools.lru_cache(maxsize=_ADDRESS_CACHE_SIZE)
def _normalised_email_cached(candidate: str) -> str | None:
    return try_normalise_email(candidate)


def normalised_email(candidate: str | None) -> str | None:
    """try_normalise_email, remembered for short candidates (see _ADDRESS_CACHE_SIZE)."""
    if not candidate:
        return None
    if len(candidate) > _ADDRESS_CACHE_MAX_CHARS:
        return try_normalise_email(candidate)
    return _normalised_email_cached(candidate)


def _parse_mailbox(entry: str) -> Address | None:
    if len(entry) > _ADDRESS_CACHE_MAX_CHARS:
        return _read_mailbox(entry)
    return _read_mailbox_cached(entry)


def _read_mailbox(entry: str) -> Address | None:
    parsed = flanker_address.parse(entry, strict=False)
    if parsed is not None and getattr(parsed, "addr_type", None) == "email":
        email = normalised_email(parsed.address)
        if email is not None:
            name = _clean_text(decode_encoded_words(parsed.display_name or "")) or None
            return Address(name=name, email=email)
    # flanker rejects some forms still seen in the wild, e.g. source routes `<@relay:user@host>`
    bracketed = _BRACKETED.search(entry)
    if bracketed:
        email = normalised_email(bracketed.group(1))
        if email is not None:
            name = _clean_text(decode_encoded_words(entry[: bracketed.start()]).strip().strip('"')) or None
            return Address(name=name, email=email)
    return None


_read_mailbox_cached = functools.lru_cache(maxsize=_ADDRESS_CACHE_SIZE)(_read_mailbox)


def parse_address_list(
    values: list[str], header: str, defects: list[str], *, hint: str | None = None
) -> list[Address]:
    addresses: list[Address] = []
    for value in values:
        split = _split_address_list(_raw_to_text(value, hint, defects))
        for group in split.empty_groups:
            defects.append(f"{header}: skipped empty group {group or '(unnamed)'!r}")
        for entry in split.entries:
            mailbox = _parse_mailbox(entry)
            if mailbox is None:
                defects.append(f"{header}: skipped unparseable address {_clean_text(entry)[:200]!r}")
            else:
                addresses.append(mailbox)
    return addresses


def _parse_sender(values: list[str], defects: list[str], hint: str | None) -> Address | None:
    mailboxes = parse_address_list(values, "From", defects, hint=hint)
    if mailboxes:
        return mailboxes[0]
    # Exchange and forward blocks sometimes give only a name: keep it, never invent an address.
    text = decode_header_text(values[0], hint=hint) if values else ""
    if text and not re.search(r"[<>@:;,]", text):
        return Address(name=text.strip('"').strip() or None, email=None)
    return None


# --------------------------------------------------------------------------------------------
# message ids and dates

_MSG_ID_BRACKETED = re.compile(r"<([^<>]*)>")
_COMMENT = re.compile(r"\([^()]*\)")
# Every service stores a message id in a String(998) column (RFC 5322's line length): a longer one
# is not an id we can keep (the message then gets the stable generated id).
MAX_MESSAGE_ID_CHARS = 998


def parse_message_ids(values: list[str]) -> list[str]:
    """Ids without angle brackets, in order, de-duplicated; tolerant of folding and junk text."""
    ids: list[str] = []
    for value in values:
        text = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        bracketed = _MSG_ID_BRACKETED.findall(text)
        candidates = bracketed if bracketed else _COMMENT.sub(" ", text).replace(",", " ").split()
        for candidate in candidates:
            message_id = "".join(candidate.split())  # folding whitespace inside the brackets
            if not bracketed and "@" not in message_id:
                continue  # bare words like "Your message of ..." are not ids
            if len(message_id) > MAX_MESSAGE_ID_CHARS:
                continue
            if message_id and not _CONTROL_CHARS.search(message_id) and message_id not in ids:
                ids.append(message_id)
    return ids


def parse_date(value: str | None):
    if not value:
        return None
    try:
        return parsedate_to_datetime(_clean_text(value))
    except (ValueError, TypeError, IndexError, OverflowError):
        return None


# --------------------------------------------------------------------------------------------
# limits

# Matched at each occurrence of their literal start in the lower-cased message (`_occurrences`), not
# searched with re.I: a case-insensitive search tries every byte of the message (attachments included),
# three passes of 0.2 ms each for a 30 KB message, more than the rest of the screen; bytes.lower() and
# bytes.find take a few microseconds. ASCII lower-casing is exactly what re.I does to a bytes pattern,
# and the regexes begin with their literal, so the matches are those a re.I search would find.
_BOUNDARY_DECLARATION = re.compile(rb"""boundary\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))""")
_MESSAGE_TYPE = re.compile(rb"content-type\s*:\s*message/(?:rfc822|global)")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_MIME_HEADER_FIELD = re.compile(rb"content-[a-z0-9-]*[ \t]*:[^\n]*(?:\n[ \t][^\n]*)*")  # at a line start


class _Budget:
    def __init__(self, limits: ParseLimits) -> None:
        self.limits = limits
        self.started = time.monotonic()
        self.parts = 0

    def check_time(self) -> None:
        elapsed = time.monotonic() - self.started
        if elapsed > self.limits.max_seconds:
            raise MessageTooComplex(f"parsing took over {self.limits.max_seconds:g}s (parse time limit)")

    def enter_part(self, depth: int) -> None:
        self.parts += 1
        if depth > self.limits.max_depth:
            raise MessageTooComplex(f"MIME nesting deeper than {self.limits.max_depth} levels")
        if self.parts > self.limits.max_parts:
            raise MessageTooComplex(f"more than {self.limits.max_parts} MIME parts")
        self.check_time()


def _prescan(raw: bytes, limits: ParseLimits) -> None:
    """Refuse obvious bombs before the stdlib parser (which has no limits) sees them.

    Every multipart level declares a boundary and every message level has a message/* type, so
    their count bounds depth and part count; each delimiter line starts another part.
    """
    header_block = _HEADER_END.search(raw)
    header_bytes = header_block.start() if header_block else len(raw)
    if header_bytes > limits.max_header_bytes:
        raise MessageTooComplex(f"a header block of {header_bytes} bytes (over {limits.max_header_bytes})")
    lowered = raw.lower()
    total_params = 0
    for header in _matches(_MIME_HEADER_FIELD, lowered, b"content-", line_start=True):  # folded lines included
        params = header.group().count(b";")
        if params > limits.max_header_params:
            name = raw[header.start():header.end()].split(b":", 1)[0].decode("ascii", "replace")[:40]
            raise MessageTooComplex(f"a {name} header with more than {limits.max_header_params} parameters")
        total_params += params
        if total_params > limits.max_message_params:  # many parts, each just under the cap per header
            raise MessageTooComplex(f"more than {limits.max_message_params} parameters in the Content-* "
                                    "headers of the message")
    # the boundary as written (case matters): the declaration is found in the lower-cased copy
    declarations = [raw[slice(*match.span(1 if match.start(1) >= 0 else 2))]
                    for match in _matches(_BOUNDARY_DECLARATION, lowered, b"boundary")]
    boundaries = set(declarations)
    containers = len(declarations) + sum(1 for _ in _matches(_MESSAGE_TYPE, lowered, b"content-type"))
    if containers > limits.max_parts:
        raise MessageTooComplex(f"more than {limits.max_parts} MIME parts")
    if not boundaries:
        return
    if _count_delimiter_lines(raw, boundaries) > limits.max_parts + len(boundaries):
        raise MessageTooComplex(f"more than {limits.max_parts} MIME parts")


# What a header read through the tree may cost. The stdlib's structured grammar is quadratic or
# recursive in several shapes: quoted strings and parameters in Content-Type/-Disposition (50,000 '"':
# 10 s), stray characters in Content-Transfer-Encoding (each one a defect; 50,000 ',': 27 s), words,
# dots and commas in address lists (50,000 ',': 28 s), nested comments (300 '(': RecursionError), and
# some short values make it raise ('Resent-From: =?iso-2022-jp?b?GyRC?=': IndexError). So a header is
# structured only up to MAX_STRUCTURED_HEADER_CHARS. Nothing in ingest needs a long one structured:
# Content-Type/-Disposition are read through compat32's string helpers (get_content_type, get_param,
# get_filename, get_boundary), which read str() of any header the same way, so real mail's long ones
# (a 200-character RFC 2047 or RFC 2231 filename makes a 400-700 character header) give the same
# filename, type, charset and boundary (tests/unit/test_hostile_headers.py); addresses are read from
# the raw values, and by forward detection from str() of the header when it has no `.addresses`.
MAX_STRUCTURED_HEADER_CHARS = 256
# Longer values are unstructured text (RFC 2047 words decoded), up to this length: that grammar is
# quadratic too (it copies the rest of the value for every word: 40,000 encoded words, 25 s) and costs
# about 2 microseconds a character even where it is linear. Longer values, and every long value once
# one tree has had MAX_UNSTRUCTURED_CHARS_PER_TREE characters parsed as text, are kept as written:
# str() is the value itself, whose RFC 2047 words ingest decodes itself (decode_header_text after
# get_filename, forwards._decode_words).
MAX_UNSTRUCTURED_HEADER_CHARS = 4096
MAX_UNSTRUCTURED_CHARS_PER_TREE = 65_536


class _VerbatimHeader(UnstructuredHeader):
    """An unstructured header whose value is kept exactly as written: no grammar runs over it."""

    @classmethod
    def parse(cls, value, kwds):
        kwds["parse_tree"] = _header_value_parser.UnstructuredTokenList(
            [_header_value_parser.ValueTerminal(value, "vtext")])
        kwds["decoded"] = value


_UNSTRUCTURED_REGISTRY = HeaderRegistry(default_class=UnstructuredHeader, use_default_map=False)
_VERBATIM_REGISTRY = HeaderRegistry(default_class=_VerbatimHeader, use_default_map=False)


class _MemoHeaderFactory:
    """`policy.default` parses a header again each time it is read (`get_content_type()`,
    `get_param()`, `get_filename()`, `msg["From"]` ... each re-run the header grammar), and a message
    is read many times: by the parser itself, the MIME walk, classification and forward detection.
    This factory remembers what it built for one message tree: same (name, value), same immutable
    header object. One per parse, so the memory goes with the message.

    It also bounds what a header costs: a structured header (the registry's class for the name) only
    for values of at most MAX_STRUCTURED_HEADER_CHARS characters that the registry parses without an
    exception; else an unstructured one (RFC 2047 decoded), or, past MAX_UNSTRUCTURED_HEADER_CHARS
    or the tree's MAX_UNSTRUCTURED_CHARS_PER_TREE, the value as written (see above). Whichever class,
    str() of the header and compat32's string helpers read it the same way."""

    __slots__ = ("registry", "built", "unstructured_chars")

    def __init__(self, registry: HeaderRegistry) -> None:
        self.registry = registry
        self.built: dict[tuple[str, str], object] = {}
        self.unstructured_chars = 0

    def __call__(self, name: str, value: str):
        key = (name, value)
        header = self.built.get(key)
        if header is None:
            header = self.built[key] = self._build(name, value)
        return header

    def _build(self, name: str, value: str):
        if len(value) <= MAX_STRUCTURED_HEADER_CHARS:
            # the stdlib grammar's IndexError, RecursionError, HeaderParseError ...: read it as text then
            with contextlib.suppress(Exception):
                shared = "boundary" not in value.lower()
                header = (_shared_structured_header if shared else _structured_header)(self.registry, name, value)
                if header is not None:
                    return header
        if (len(value) <= MAX_UNSTRUCTURED_HEADER_CHARS
                and self.unstructured_chars + len(value) <= MAX_UNSTRUCTURED_CHARS_PER_TREE):
            self.unstructured_chars += len(value)
            with contextlib.suppress(Exception):
                return _UNSTRUCTURED_REGISTRY(name, value)
        return _VERBATIM_REGISTRY(name, value)

    def __getitem__(self, name: str):
        return self.registry[name]

    def map_to_type(self, name: str, cls) -> None:
        self.registry.map_to_type(name, cls)
        _header_class.cache_clear()
        _shared_structured_header.cache_clear()


# Most structured headers of one message are those of the last: `text/plain; charset=utf-8`, `base64`,
# `quoted-printable`, `inline`. Their header objects are immutable (str subclasses whose attributes are
# read-only views), so a worker keeps a few hundred short ones across messages (each holds its parse tree:
# some 10 KB; 256 hit as often as 2,048 over the bench corpus). A value declaring a boundary is unique to
# its message by design: built per tree only, it would just push the shared ones out. The stdlib also makes
# a new class per header read (HeaderRegistry.__getitem__ calls type()): one per registry and name is enough.
_SHARED_HEADERS = 256


@functools.lru_cache(maxsize=256)
def _header_class(registry: HeaderRegistry, lowered_name: str) -> type:
    return registry[lowered_name]


def _structured_header(registry: HeaderRegistry, name: str, value: str):
    """The registry's header for a value of at most MAX_STRUCTURED_HEADER_CHARS, or None when its grammar
    raises (remembered too when shared: the value decides), except RecursionError (the stack's depth
    decides: raised, so never remembered)."""
    try:
        return _header_class(registry, name.lower())(name, value)
    except RecursionError:
        raise
    except Exception:
        return None


_shared_structured_header = functools.lru_cache(maxsize=_SHARED_HEADERS)(_structured_header)


_HEADER_REGISTRY = HeaderRegistry()


def _message_policy() -> policy.EmailPolicy:
    """policy.default, with headers parsed once per message tree (see _MemoHeaderFactory)."""
    return policy.default.clone(header_factory=_MemoHeaderFactory(_HEADER_REGISTRY))


def _matches(pattern: re.Pattern, data: bytes, literal: bytes, *, line_start: bool = False):
    """What `pattern.finditer(data)` finds (with re.M's `^` in front when `line_start`), for a pattern
    that begins with `literal`: tried only where the literal occurs, found with bytes.find."""
    position = data.find(literal)
    while position >= 0:
        match = None
        if not line_start or position == 0 or data[position - 1] == 0x0A:
            match = pattern.match(data, position)
        if match is not None:
            yield match
            position = data.find(literal, max(match.end(), position + 1))
        else:
            position = data.find(literal, position + 1)


def _count_delimiter_lines(raw: bytes, boundaries: set[bytes]) -> int:
    """Lines that start with `--` and one of the boundaries (what `^--(?:b1|b2…)` with re.M counts),
    without compiling a regular expression per message (each boundary is unique)."""
    prefixes = tuple(b"--" + boundary for boundary in boundaries)
    count = 1 if raw.startswith(prefixes) else 0
    position = raw.find(b"\n--")
    while position >= 0:
        if raw.startswith(prefixes, position + 1):
            count += 1
        position = raw.find(b"\n--", position + 1)
    return count


def _parse_tree(raw: bytes, defects: list[str]) -> EmailMessage:
    message_policy = _message_policy()
    try:
        return BytesParser(policy=message_policy).parsebytes(raw)
    except RecursionError as exc:
        raise MessageTooComplex("MIME nesting too deep for the parser") from exc
    except Exception as exc:  # a stdlib parser bug must not lose the message
        defects.append(f"MIME structure unreadable ({type(exc).__name__}); headers only")
    try:
        return BytesParser(policy=message_policy).parsebytes(raw, headersonly=True)
    except Exception:
        return EmailMessage(policy=message_policy)


_HEADER_LINE = re.compile(rb"^[!-9;-~]+[ \t]*:")
_DELIMITER_LINE = re.compile(r"^--([^\s]{1,200})[ \t]*$", re.M)


_SUBTYPE = re.compile(r"[a-z0-9][a-z0-9.+_-]*")


def _recover_boundary(part: Message, limits: ParseLimits, defects: list[str]) -> EmailMessage | None:
    """A multipart without a boundary parameter whose body starts with `--something`: use that.

    The body is taken as received (get_payload() would turn each 8-bit byte into U+FFFD, three bytes in
    UTF-8: text in the parts came out garbled, and a recovered part recovered again tripled them at each
    level), under a Content-Type made only of the subtype (`multipart/mixed(` kept its `(` before, so the
    new boundary sat in a comment: recovered again and again down to the depth limit); a body that still
    does not split with it is left to the caller, shown as text."""
    body = getattr(part, "_payload", None)
    if not isinstance(body, str):
        return None
    match = _DELIMITER_LINE.search(body.lstrip()[:1000])
    if match is None or not body.lstrip().startswith("--"):
        return None
    boundary = match.group(1).removesuffix("--")
    subtype = _SUBTYPE.match(part.get_content_subtype())
    header = f'Content-Type: multipart/{subtype.group() if subtype else "mixed"}; boundary="{boundary}"\n\n'
    data = header.encode("utf-8", "surrogateescape") + body.encode("utf-8", "surrogateescape")
    _prescan(data, limits)
    recovered = _parse_tree(data, defects)
    if not isinstance(structure_of(recovered), list):
        return None
    defects.append("multipart without boundary parameter, boundary taken from the body")
    return recovered


def _drop_stray_header_line(raw: bytes) -> bytes | None:
    """A non-header line inside the header block makes the stdlib take the rest as body.

    If real header lines follow it before the blank line, drop the stray line and parse again.
    """
    lines = raw.split(b"\n")
    for index, line in enumerate(lines):
        stripped = line.rstrip(b"\r")
        if not stripped:
            return None  # reached the body: nothing stray
        if _HEADER_LINE.match(stripped) or (index and stripped[:1] in (b" ", b"\t")):
            continue
        following = [rest.rstrip(b"\r") for rest in lines[index + 1 : index + 50]]
        block = following[: following.index(b"")] if b"" in following else following
        if index and block and _HEADER_LINE.match(block[0]):
            return b"\n".join(lines[:index] + lines[index + 1 :])
        return None
    return None


# --------------------------------------------------------------------------------------------
# the MIME walk


def _content_type(part: Message, defects: list[str]) -> str:
    try:
        return part.get_content_type()
    except Exception:
        defects.append("unreadable Content-Type, treated as application/octet-stream")
        return "application/octet-stream"


def _param(part: Message, name: str, header: str = "content-type") -> str | None:
    try:
        value = part.get_param(name, header=header)
    except Exception:
        return None
    if isinstance(value, tuple):  # RFC 2231 (charset, language, value) triple
        value = value[2]
    return str(value) if value else None


def _disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except Exception:
        return None


def structure_of(part: Message) -> list | str | None:
    """The undecoded payload: a list of sub-parts for containers, else text; None if unreadable.

    The stdlib's get_payload() can raise on hostile parameters (e.g. a NUL in the charset).
    """
    try:
        return part.get_payload()
    except Exception:
        return None


def _payload_bytes(part: Message, defects: list[str]) -> bytes:
    try:
        payload = part.get_payload(decode=True)
    except Exception as exc:
        defects.append(f"undecodable part body ({type(exc).__name__})")
        return b""
    if isinstance(payload, bytes):
        return payload
    blocks = structure_of(part)
    if isinstance(blocks, list):  # message/delivery-status and friends: header blocks, as text
        return b"\r\n".join(_serialise(block) for block in blocks if isinstance(block, Message))
    return b""


def _serialise(msg: Message) -> bytes:
    """Bytes of an embedded message, headers kept as received (no refolding or re-encoding)."""
    buffer = io.BytesIO()
    # the memoising, bounded header factory (the generator reads Content-Type and the boundary again)
    keep_as_is = _message_policy().clone(refold_source="none", cte_type="8bit", linesep="\r\n")
    try:
        BytesGenerator(buffer, mangle_from_=False, policy=keep_as_is).flatten(msg)
    except Exception:
        return b""
    return buffer.getvalue()


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.I)
_UNSAFE_FILENAME_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"|?*]')


def _safe_filename(name: str) -> str:
    """Last path component, no control or reserved characters, at most 255 characters."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = _clean_text(_UNSAFE_FILENAME_CHARS.sub("_", unicodedata.normalize("NFC", base)))
    if base.strip(".") == "":
        return ""
    if len(base) > 255:
        stem, dot, ext = base.rpartition(".")
        base = (stem[: 254 - len(ext)] + dot + ext) if dot and len(ext) < 20 else base[:255]
    return base


def _generated_filename(content_type: str, index: int) -> str:
    fallback = ".txt" if content_type.startswith(("text/", "message/")) else ".bin"
    extension = mimetypes.guess_extension(content_type, strict=False) or fallback
    return f"attachment-{index}{extension}"


@dataclass
class _Leaf:
    part: Message
    content_type: str
    in_alternative: bool
    in_related: bool
    body_candidate: bool


class _Walker:
    def __init__(self, root: EmailMessage, budget: _Budget, defects: list[str]) -> None:
        self.root = root
        self.budget = budget
        self.defects = defects
        self.leaves: list[_Leaf] = []
        self.embedded: list[tuple[Message, EmailMessage | None]] = []  # (part, inner message)
        self.order: list[object] = []  # leaves and embedded entries, in document order

    def walk(self) -> None:
        self._visit(self.root, 0, collect=True, in_alternative=False, in_related=False)

    def _record_stdlib_defects(self, part: Message) -> None:
        for defect in getattr(part, "defects", ()):
            note = f"MIME: {type(defect).__name__}"
            if note not in self.defects:
                self.defects.append(note)

    def _visit(
        self, part: Message, depth: int, *, collect: bool, in_alternative: bool, in_related: bool
    ) -> None:
        self.budget.enter_part(depth)
        self._record_stdlib_defects(part)
        content_type = _content_type(part, self.defects)
        maintype, _, subtype = content_type.partition("/")
        payload = structure_of(part)

        if content_type in ("message/rfc822", "message/global"):
            inner = self._embedded_message(part, depth)
            if collect:
                entry = (part, inner)
                self.embedded.append(entry)
                self.order.append(entry)
            if inner is not None:  # walked for the limits only: its bodies are not ours
                self._visit(inner, depth + 1, collect=False, in_alternative=False, in_related=False)
            return
        if maintype == "multipart" and isinstance(payload, list):
            for child in payload:
                if isinstance(child, Message):
                    self._visit(
                        child,
                        depth + 1,
                        collect=collect,
                        in_alternative=in_alternative or subtype == "alternative",
                        in_related=in_related or subtype == "related",
                    )
            return
        if maintype == "multipart":
            recovered = _recover_boundary(part, self.budget.limits, self.defects)
            if recovered is not None:
                self._visit(
                    recovered,
                    depth + 1,
                    collect=collect,
                    in_alternative=in_alternative,
                    in_related=in_related,
                )
                return
            # No usable boundary: the stdlib keeps the body as text; show it rather than lose it.
            self.defects.append("multipart without usable boundary, shown as text")
            content_type = "text/plain"
        if collect:
            leaf = _Leaf(
                part=part,
                content_type=content_type,
                in_alternative=in_alternative,
                in_related=in_related,
                body_candidate=content_type in ("text/plain", "text/html")
                and _disposition(part) != "attachment",
            )
            self.leaves.append(leaf)
            self.order.append(leaf)

    def _embedded_message(self, part: Message, depth: int) -> EmailMessage | None:
        payload = structure_of(part)
        inner = payload[0] if isinstance(payload, list) and payload else None
        if not isinstance(inner, Message):
            return None
        encoding = str(part.get("content-transfer-encoding", "")).strip().lower()
        if encoding in ("base64", "quoted-printable"):
            # Not allowed by RFC 2046 but sent anyway: the stdlib parsed encoded text as headers.
            self.defects.append(f"message/rfc822 with {encoding} encoding, decoded")
            encoded = _serialise(inner)
            decoded = base64.b64decode(encoded, validate=False) if encoding == "base64" else None
            if decoded is None:
                decoded = quopri.decodestring(encoded)
            _prescan(decoded, self.budget.limits)
            inner = _parse_tree(decoded, self.defects)
        return inner if isinstance(inner, EmailMessage) else None


# --------------------------------------------------------------------------------------------
# assembling the result


def _decode_body(part: Message, content_type: str, defects: list[str], limits: ParseLimits) -> str:
    data = _payload_bytes(part, defects)
    declared = _param(part, "charset")
    if declared is None and content_type == "text/html":
        meta = _META_CHARSET.search(data[:2048])
        declared = meta.group(1).decode("ascii") if meta else None
    text, defect = decode_bytes(data, declared)
    if defect:
        defects.append(f"{content_type} body: {defect}")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if len(text) > limits.max_text_chars:
        defects.append(f"{content_type} body truncated at {limits.max_text_chars} characters")
        text = text[: limits.max_text_chars]
    return text


def _pick_body(leaves: list[_Leaf], content_type: str) -> _Leaf | None:
    candidates = [leaf for leaf in leaves if leaf.body_candidate and leaf.content_type == content_type]
    if not candidates:
        return None
    # multipart/alternative members are the intended bodies; otherwise the first one wins
    preferred = [leaf for leaf in candidates if leaf.in_alternative]
    return (preferred or candidates)[0]


def _content_id(part: Message, hint: str | None) -> str | None:
    raw = _first_raw_header(part, "content-id")
    if raw is None:
        return None
    value = decode_header_text(raw, hint=hint).strip().strip("<>").strip()
    if value.lower().startswith("cid:"):
        value = value[4:]
    return value or None


def _filename(part: Message, hint: str | None) -> str:
    try:
        raw = part.get_filename()
    except Exception:
        raw = None
    if not raw:
        return ""
    return _safe_filename(decode_header_text(str(raw), hint=hint))


def _leaf_attachment(leaf: _Leaf, index: int, defects: list[str], hint: str | None) -> Attachment:
    part = leaf.part
    payload = _payload_bytes(part, defects)
    content_id = _content_id(part, hint)
    disposition = _disposition(part)
    if disposition not in ("attachment", "inline"):
        # RFC 2183: unknown dispositions are attachments; a Content-ID or a related part is inline
        disposition = "inline" if disposition is None and (content_id or leaf.in_related) else "attachment"
    return Attachment(
        filename=_filename(part, hint) or _generated_filename(leaf.content_type, index),
        content_type=leaf.content_type,
        size=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(),
        disposition=disposition,
        content_id=content_id,
        payload=payload,
    )


def _message_attachment(
    part: Message, inner: EmailMessage | None, index: int, hint: str | None
) -> Attachment:
    payload = _serialise(inner) if inner is not None else b""
    filename = _filename(part, hint)
    if not filename:
        subject = decode_header_text(_first_raw_header(inner, "subject"), hint=hint) if inner else ""
        filename = _safe_filename(f"{subject}.eml") if subject else ""
        filename = filename or f"forwarded-message-{index}.eml"
    return Attachment(
        filename=filename,
        content_type=_content_type(part, []),
        size=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(),
        disposition=_disposition(part) or "attachment",
        content_id=_content_id(part, hint),
        payload=payload,
    )


def _body_charset_hint(leaves: list[_Leaf]) -> str | None:
    for leaf in leaves:
        if leaf.body_candidate:
            charset = _param(leaf.part, "charset")
            if charset and _codecs_for(charset):
                return charset
    return None


def parse_message(raw: bytes, limits: ParseLimits | None = None) -> ParsedMessage:
    """Parse raw message bytes. Raises MessageTooComplex only; everything else is a defect."""
    limits = limits or ParseLimits()
    budget = _Budget(limits)
    defects: list[str] = []
    _prescan(raw, limits)
    root = _parse_tree(raw, defects)
    if any(type(defect).__name__ == "MissingHeaderBodySeparatorDefect" for defect in root.defects):
        repaired = _drop_stray_header_line(raw)
        if repaired is not None:
            defects.append("dropped a malformed line from the header block")
            root = _parse_tree(repaired, defects)
    budget.check_time()

    walker = _Walker(root, budget, defects)
    try:
        walker.walk()
    except MessageTooComplex:
        raise
    except Exception as exc:  # keep what was collected; the raw message is stored anyway
        defects.append(f"MIME walk stopped early ({type(exc).__name__})")

    hint = _body_charset_hint(walker.leaves)
    text_leaf = _pick_body(walker.leaves, "text/plain")
    html_leaf = _pick_body(walker.leaves, "text/html")

    attachments: list[Attachment] = []
    for item in walker.order:
        budget.check_time()
        if isinstance(item, _Leaf):
            if item is not text_leaf and item is not html_leaf:
                attachments.append(_leaf_attachment(item, len(attachments) + 1, defects, hint))
        else:
            part, inner = item
            attachments.append(_message_attachment(part, inner, len(attachments) + 1, hint))

    header = _HeaderReader(root, defects, hint)
    message_ids = parse_message_ids(header.raw_all("message-id"))
    if not header.raw_all("message-id"):
        defects.append("missing Message-ID")
    return ParsedMessage(
        message=root,
        message_id=message_ids[0] if message_ids else None,
        subject=header.text("subject"),
        sender=_parse_sender(header.raw_all("from"), defects, hint),
        reply_to=header.addresses("reply-to", "Reply-To"),
        to=header.addresses("to", "To"),
        cc=header.addresses("cc", "Cc"),
        date=parse_date(header.text("date")),
        in_reply_to=parse_message_ids(header.raw_all("in-reply-to")),
        references=parse_message_ids(header.raw_all("references")),
        text=_decode_body(text_leaf.part, "text/plain", defects, limits) if text_leaf else None,
        html=_decode_body(html_leaf.part, "text/html", defects, limits) if html_leaf else None,
        attachments=attachments,
        embedded_messages=[inner for _, inner in walker.embedded if inner is not None],
        defects=defects,
    )


class _HeaderReader:
    def __init__(self, msg: Message, defects: list[str], hint: str | None) -> None:
        self.msg = msg
        self.defects = defects
        self.hint = hint

    def raw_all(self, name: str) -> list[str]:
        return _raw_header_values(self.msg, name)

    def text(self, name: str) -> str:
        return decode_header_text(_first_raw_header(self.msg, name), hint=self.hint, defects=self.defects)

    def addresses(self, name: str, label: str) -> list[Address]:
        return parse_address_list(self.raw_all(name), label, self.defects, hint=self.hint)
