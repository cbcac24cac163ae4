"""Forward detection: is this message a forward, and who sent the message that was forwarded?

Signals, most reliable first (reference forward-formats.md §1, §7, §11):

1. A redirect/bounce (`Resent-From` added, the original `From` kept): the From header is the original.
2. A forwarded message attached as `message/rfc822` (or an `.eml` file): its own From header.
3. A forward block in the text/plain body (or, when there is none, in text made from the HTML):
   a separator line and/or a header block (`From:` / `Von:` / `差出人:` ...) written by the client.

Text blocks come in two strengths. Separators that say "forwarded" (`---------- Forwarded message`,
`Begin forwarded message:`, `-------- Weitergeleitete Nachricht --------`, mutt, Lotus Notes) are a
forward whatever the subject says. Outlook's layouts (`-----Original Message-----`, the 32 underscores,
a bare `From:/Sent:` block) and `On ... wrote:` lines are written the same way for replies, so they count
only when the subject's outermost prefix is a forward marker (`VS:` over Finnish labels is a reply), when a
forward marker deeper in the chain (`AW: WG:`, `RE: FW:`) sits over a block with nothing written above it,
or, with no prefix at all, when the block opens the body (a separator-less block must then name an address).
Only the first block found decides; everything below it is the forwarded content.

Which sender (§6): the sender of the outermost forwarded block. We step down to the next block only when
the outer one is essentially empty (blank lines, a mobile footer) and itself a forward; reply history
(`On ... wrote:`) is never stepped into. Addresses come only from a From value, never from To/Cc lines,
signatures or running text; a name without an address stays `Address(name, None)`.
"""

from __future__ import annotations

import email.message
import email.utils
import functools
import html
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ingest.domain import parsing
from ingest.domain.htmltext import html_to_text
from ingest.domain.model import Address, ForwardInfo, ParsedMessage, ParseLimits
from ingest.domain.subjects import (
    FORWARD,
    REPLY,
    has_forward_prefix,
    leading_prefix_kind,
    leading_prefix_word,
    strip_prefixes,
)

__all__ = ["detect_forward", "html_to_text"]

# ================================================================================================
# Label tables, per language, as data with a source per entry (forward_labels.json; docs/forwarding.md
# renders them). Keys are the fields of a forwarded header block; only "from" (or "sender"), "date",
# "subject" and "reply_to" are read, the others just tell us a line belongs to the block.
# ================================================================================================

LABEL_TABLE: dict = json.loads((Path(__file__).parent / "forward_labels.json").read_text(encoding="utf-8"))


def _curated(entry: dict) -> bool:
    """Entries read from the reference's per-client fixtures (the tables this detector was tuned on);
    the client-localisation entries (Thunderbird, Roundcube) only add labels."""
    return entry["source"].startswith("mailroom reference")


HEADER_LABELS: dict[str, dict[str, tuple[str, ...]]] = {}
for _entry in LABEL_TABLE["labels"]:
    if _entry["field"] != "other":
        _group = HEADER_LABELS.setdefault("/".join(_entry["langs"]), {})
        _group[_entry["field"]] = (*_group.get(_entry["field"], ()), _entry["label"])
# Lines that may sit in a header block but carry nothing we read.
OTHER_BLOCK_LABELS = tuple(e["label"] for e in LABEL_TABLE["labels"] if e["field"] == "other")
# Separator phrases that explicitly say "forwarded" (strong): Gmail, Apple Mail, Thunderbird, Yahoo,
# Proton, HubSpot, MailMate, Gnus; and "Original message" banners (Outlook, Samsung, IONOS, QQ/Coremail,
# Roundcube), which replies use too (ambiguous).
FORWARD_PHRASES: tuple[str, ...] = tuple(e["phrase"] for e in LABEL_TABLE["separators"] if e["kind"] == "forward")
ORIGINAL_PHRASES: tuple[str, ...] = tuple(e["phrase"] for e in LABEL_TABLE["separators"] if e["kind"] == "original")
# "X on behalf of Y" in Outlook's From value, per language (reference §2.2).
ON_BEHALF_PHRASES = (
    "on behalf of", "im auftrag von", "namens", "en nombre de", "per conto di", "de la part de", "au nom de",
    "för", "代表", "w imieniu", "jménem", "v zastoupení", "от имени", "adına", "em nome de", "på vegne av",
    "på vegne af", "puolesta",
)
# "wrote:" of reply attribution lines, per language (Outlook for Mac uses them for forwards too).
WROTE_WORDS = (
    "wrote", "writes", "a écrit", "escribió", "escreveu", "ha scritto", "scrisse", "schrieb", "schreef",
    "geschreven", "skrev", "napsal", "napsal(a)", "napisał", "napisał(a)", "napisala", "написал", "написала",
    "написал(а)", "kirjoitti", "ezt írta", "napísal", "yazdı", "şunu yazdı", "写道", "寫道", "のメッセージ",
    "작성", "đã viết", "a scris", "skrev følgende",
)
# Mobile footers and the like, which do not make a forwarder's note "non-empty".
_FOOTER = re.compile(
    r"^(sent from|sent via|get outlook for|von meinem|gesendet von|envoyé de|envoyé à partir|enviado desde|"
    r"enviado do|enviado de|inviato da|verzonden vanaf|verstuurd vanaf|verzonden met|skickat från|sendt fra|"
    r"lähetetty|wysłane z|odesláno z|отправлено с|iphoneから送信|从我的|發自我的|发自我的|--$)",
    re.IGNORECASE,
)

# ================================================================================================
# Small helpers
# ================================================================================================


@functools.lru_cache(maxsize=8192)
def _fold(text: str) -> str:
    """Case-insensitive compare form (NFKC, casefold, Turkish dotted İ, collapsed spaces)."""
    text = unicodedata.normalize("NFKC", text).casefold().replace("\u0307", "")
    return re.sub(r"\s+", " ", text).strip()


_FIELD_BY_LABEL: dict[str, str] = {}
for _entry in sorted(LABEL_TABLE["labels"], key=lambda e: not _curated(e)):
    _key, _field = _fold(_entry["label"]), _entry["field"]
    _current = _FIELD_BY_LABEL.get(_key)
    if _current is None or (_current == "sender" and _field == "from"):  # Thunderbird's SENDER is Outlook's From
        _FIELD_BY_LABEL[_key] = _field

_FORWARD_PHRASES = {_fold(p) for p in FORWARD_PHRASES}
_ORIGINAL_PHRASES = {_fold(p) for p in ORIGINAL_PHRASES} - _FORWARD_PHRASES

# A label line: `From: x`, `*From:* x`, `De : x`, `Subject: <TAB>x`, `보낸 사람: x`.
_LABEL_LINE = re.compile(
    r"^\*{0,2}(?P<label>[^\W\d_][^:：\n*]{0,30}?)\*{0,2}\s*[:：]\s*\*{0,2}\s*(?P<value>.*)$"
)
# Fields run together on one line (Yahoo's HTML→text, flattened QQ mail): split before a label.
# Only the curated labels: run-together fields are an artefact of the clients those tables come from
# (Yahoo, QQ), and a split on every short label of 60 languages would cut ordinary values.
_ALL_LABELS = sorted({e["label"] for e in LABEL_TABLE["labels"] if _curated(e)}, key=len, reverse=True)
_RUN_TOGETHER_ANY = re.compile(r"(?<!^)(?=(?:" + "|".join(map(re.escape, _ALL_LABELS)) + r")\s?[:：])")
# Glued fields (`...acme.com>To: ...`, `GMT+1Subject: ...`): only capitalised labels, as CJK labels
# contain other labels (送信日時 ends in 日時) and are never written glued.
_RUN_TOGETHER_GLUED = re.compile(
    r"(?<=[^\s\W]|[>\"')\]])(?=(?:"
    + "|".join(re.escape(label) for label in _ALL_LABELS if label[0].isupper())
    + r")\s?[:：])"
)

_ADDR_SPEC = r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+"
_ADDRESS = re.compile(_ADDR_SPEC)
_BRACKETED_ADDRESS = re.compile(r"[<\[(]\s*(?:mailto:)?\s*(?P<addr>" + _ADDR_SPEC + ")")
_X500 = re.compile(r"\[?/O=[^\]]*\]?", re.IGNORECASE)
_ON_BEHALF = re.compile(
    r"(?:(?<=\s)|(?<=[\]>)]))(?:" + "|".join(re.escape(p) for p in ON_BEHALF_PHRASES) + r")\s+",
    re.IGNORECASE,
)
_LIST_LIKE = re.compile(
    r"bounce|owner|listserv|mailman|majordomo|-request@|googlegroups|@lists?\.|\bvia\b", re.IGNORECASE
)
_QUOTES = "\"'«»„“”‘’‚‹›「」"
_UNICODE_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2500\u2501\ufe58\ufe63"  # Proton's U+2010 etc.
_DASHES = str.maketrans(dict.fromkeys(_UNICODE_DASHES, "-"))
# zero-width and soft-hyphen characters, and the bidi controls (LRM/RLM U+200E/F, embeddings and overrides
# U+202A-E, isolates U+2066-9) that right-to-left clients put around lines and inside `<...>`: removed before
# any matching, so also from the addresses read
_INVISIBLE = re.compile("[\ufeff\u200b\u200c\u200d\u2060\u00ad\u200e\u200f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class _Line:
    depth: int  # `>` quote depth
    text: str  # without quote markers and surrounding whitespace

    # What the block scan asks of a line, answered once per line: a header block is read from every
    # label line on (up to _MAX_BLOCK_LINES lines), so a body of thousands of `From:` lines asked each
    # line the same questions 40 times, the run-together split being a regex over 200 labels at every
    # position (1.2 MB of them took 27 s).
    @functools.cached_property
    def label(self) -> tuple[str, str] | None:
        return _label(self.text)

    @functools.cached_property
    def separator(self) -> _Separator | None:
        return _separator(self.text)

    @functools.cached_property
    def glued_labels(self) -> tuple[tuple[str, str] | None, ...]:
        """`_label` of each field of the line, when several are glued together (`...acme.com>To: ...`)."""
        return tuple(_label(part) for part in _split_run_together(self.text, anywhere=False))


@dataclass(frozen=True)
class _Block:
    kind: str  # "forward" (explicit separator), "original"/"headers" (Outlook-like), "attribution" (wrote:)
    client: str
    start: int
    end: int  # first line after the header block
    depth: int
    sender: Address | None
    subject: str | None
    date: str | None
    note: str = ""  # how the sender was read, when it was not simply the From value (for explain)


_QUOTE_MARKERS = re.compile(r"^(?:[ \t]*>)+")


def _normalise(text: str) -> list[_Line]:
    """Lines without quote markers, after the clean-up of reference §5 (NBSP, BOM, dashes, `：`, CRLF)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _INVISIBLE.sub("", text)
    # NFKC and dash folding are applied where we match (labels, separators), not to the values we return.
    if "&" in text:  # entities left behind by some HTML flatteners (QQ's `&nbsp;原始邮件&nbsp;`)
        text = re.sub(r"&(nbsp|lt|gt|amp|quot);", lambda m: html.unescape(m.group(0)), text)
    lines = []
    for raw in text.split("\n"):
        quote = _QUOTE_MARKERS.match(raw)
        depth = quote.group(0).count(">") if quote else 0
        body = raw[quote.end():] if quote else raw
        lines.append(_Line(depth, body.replace("\xa0", " ").strip()))
    return lines


def _label(text: str) -> tuple[str, str] | None:
    """(field, value) when the line is `Label: value` with a known label."""
    match = _LABEL_LINE.match(text)
    if not match:
        return None
    field = _FIELD_BY_LABEL.get(_fold(match.group("label")))
    if field is None:
        return None
    return field, match.group("value").strip().strip("*").strip()


def _clean_value(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().strip("*").strip()
    return value or None


def _decode_words(text: str) -> str:
    """RFC 2047 words left in a text block or a header (`=?utf-8?q?J=C3=B6rg?=`), decoded as the parser
    decodes headers. Not with email.header.decode_header: it raises HeaderParseError on a broken word
    (`=??b?A?=`) and is quadratic in the number of words (a list.pop(0) per word: 70,000 words, 7 s)."""
    if "=?" not in text:
        return text
    return parsing.decode_encoded_words(text)


# ================================================================================================
# From values → Address
# ================================================================================================


def _valid_email(candidate: str | None) -> str | None:
    """Normalised address, or None; we want internet addresses, so the domain must have a dot."""
    email_address = parsing.normalised_email(candidate)
    if email_address and "." in email_address.rpartition("@")[2]:
        return email_address
    return None


def _clean_name(name: str | None) -> str | None:
    if not name:
        return None
    name = re.sub(r"\bmailto:\S*", "", name)
    name = re.sub(r"\s+", " ", name).strip(" \t,;:<>[]" + _QUOTES)
    name = name.rstrip("( ").lstrip(") ").strip(_QUOTES + " ")  # the bracket that opened the address
    return name or None


def _mailbox(text: str) -> Address | None:
    """One mailbox in any of the shapes of reference §4 (without the "on behalf of" pair)."""
    text = text.strip().strip("*").strip().rstrip(";,").strip()
    text = re.sub(r"\s+on\s+\d{1,2}/\d{1,2}/\d{2,4}.*$", "", text)  # Notes: `"Name" <addr> on 09/05/2000 ...`
    if _X500.search(text):  # Exchange legacyDN: a name, never an address
        return Address(_clean_name(_X500.sub("", text)), None) if _clean_name(_X500.sub("", text)) else None
    bracketed = _BRACKETED_ADDRESS.search(text)
    bare = _ADDRESS.search(text)
    if bracketed:
        email_address = _valid_email(bracketed.group("addr"))
        name = _clean_name(text[: bracketed.start()])
    elif bare:
        email_address = _valid_email(bare.group(0))
        name = _clean_name(text[: bare.start()] + " " + text[bare.end():])
    else:
        email_address = None
        if re.fullmatch(r"<?\S+@[^\s/]+>?", text):
            return None  # an address we cannot use is not a name either
        name = _clean_name(re.sub(r"/[^@\s]*(@\S*)?$", "", text))  # Notes `Name/OU/ORG@ORG` → `Name`
    if name and email_address and (_fold(name) == email_address or _ADDRESS.fullmatch(name)):
        name = None  # `addr <addr>`, `"addr" <addr>`
    if name is None and email_address is None:
        return None
    return Address(name, email_address)


def parse_from_value(value: str | None) -> Address | None:
    """The sender written in a forward block's From value; resolves Outlook's "X on behalf of Y".

    Outlook prints SENDER <on behalf of> PRINCIPAL. For list traffic the author is the principal; for a
    delegate or a shared mailbox the human who wrote the mail is the sender (reference §2.2).
    """
    if not value:
        return None
    text = _decode_words(html.unescape(value))
    parts = _ON_BEHALF.split(text, maxsplit=1)
    if len(parts) == 2 and parts[1].strip():
        sender_part, principal_part = parts
        if _LIST_LIKE.search(sender_part) or not _mailbox(sender_part):
            principal = _mailbox(re.sub(r"\s+via\s+\S+\s*$", "", principal_part.strip()))
            if principal:
                return principal
        sender = _mailbox(sender_part)
        if sender:
            return sender
    return _mailbox(text)


# ================================================================================================
# Separators, header blocks and attribution lines
# ================================================================================================

_SEPARATOR = re.compile(
    r"^(?P<lead>[-=_~*]{2,})?\s*(?P<phrase>[^-=_~*\s].*?)\s*"
    r"(?:(?P<trail>[-=_~*]{2,})\s*(?P<rest>.*)|(?P<colon>:)\s*)?$"
)
_UNDERSCORES = re.compile(r"^_{10,}$")
_MUTT = re.compile(r"^-{3,}\s*Forwarded message from\s+(?P<who>.+?)\s*-{3,}$", re.IGNORECASE)
_NOTES = re.compile(r"^-{3,}\s*Forwarded by\s+(?P<who>.+?)(?:\s+on\s+(?P<date>.+?))?\s*-*$", re.IGNORECASE)
_NOTES_DATE = re.compile(r"^\d{1,2}/\d{1,2}/\d{2,4}(?:\s+\d{1,2}:\d{2}(?::\d{2})?\s*(?:AM|PM)?)?$", re.I)


@dataclass(frozen=True)
class _Separator:
    kind: str  # "forward" | "original"
    client: str
    rest: str = ""  # header fields run together on the separator line (Yahoo)


_MAX_PHRASE = max(map(len, _FORWARD_PHRASES | _ORIGINAL_PHRASES))
_TWO_MARKS = re.compile(r"[-=_~*]{2}")


def _cannot_be_separator(text: str) -> bool:
    """A cheap, exact shortcut for long lines (prose): without two marks in a row (`--`, `**`, ...)
    there is no lead or trail, so the phrase is the whole line (less a colon), and folding keeps
    every non-space character except U+0307: a line with more of them than the longest phrase
    cannot be a separator. Spares the regex's scan of every prose line of a long body."""
    if len(text) <= _MAX_PHRASE + 2 or _TWO_MARKS.search(text):
        return False
    return len("".join(text.split())) - 1 - text.count("\u0307") > _MAX_PHRASE


def _separator(text: str) -> _Separator | None:
    if not text.isascii():  # both are identities on ASCII text
        text = unicodedata.normalize("NFKC", text).translate(_DASHES)
    if _UNDERSCORES.match(text):
        return _Separator("original", "outlook")
    if _cannot_be_separator(text):
        return None
    match = _SEPARATOR.match(text)
    if not match:
        return None
    phrase = _fold(match.group("phrase"))
    lead, trail, colon = match.group("lead") or "", match.group("trail") or "", match.group("colon")
    rest = (match.group("rest") or "").strip()
    if phrase in _FORWARD_PHRASES:
        return _Separator("forward", _forward_client(phrase, lead, trail, colon), rest)
    if phrase in _ORIGINAL_PHRASES and (lead or trail):
        client = "outlook" if len(lead) == 5 and not text.startswith("----- ") else "original_message"
        return _Separator("original", client, rest)
    return None


def _forward_client(phrase: str, lead: str, trail: str, colon: str | None) -> str:
    """A best-effort client name for `detected_by` (cosmetic: detection does not depend on it)."""
    if "start of forwarded" in phrase:
        return "gnus"
    if colon and not lead:
        return "mailmate" if phrase == "forwarded message" else "apple_mail"
    dashes = len(lead or trail)
    if dashes >= 9:
        return "gmail"
    if dashes == 8 or dashes == 3:
        return "thunderbird"
    if dashes == 7:
        return "proton"
    return "yahoo" if dashes else "unknown"


def _split_run_together(text: str, anywhere: bool) -> list[str]:
    pattern = _RUN_TOGETHER_ANY if anywhere else _RUN_TOGETHER_GLUED
    return [part.strip() for part in pattern.split(text) if part.strip()]


_INCOMPLETE_VALUE = re.compile(
    r"(mailto:|[<\[(]|" + "|".join(map(re.escape, ON_BEHALF_PHRASES)) + r"|\bEn|De la)\s*$", re.IGNORECASE
)
# the longest end _INCOMPLETE_VALUE matches (values are stripped), and a character for `\b`
_INCOMPLETE_TAIL = 1 + max(len(phrase) for phrase in (*ON_BEHALF_PHRASES, "mailto:", "De la"))
_CONTINUATION_START = re.compile(
    r"^(?:[<\[(]|mailto:|part de|nombre de|de la(?:\s+part\s+de\b.*)?$|\S+@\S+\])", re.IGNORECASE
)


def _continues(field: str, value: str, text: str, following: _Line | None) -> bool:
    """Whether a non-label line continues the previous field's value (wrapped lines)."""
    if field not in ("from", "sender", "to", "cc", "subject", "date"):
        return False
    if _INCOMPLETE_VALUE.search(value[-_INCOMPLETE_TAIL:]):  # only its end counts (and a value grows)
        return True  # `[mailto:` wrap, `... 代表` / `En` + `nombre de` wrap
    if field in ("from", "sender") and _CONTINUATION_START.match(text):
        return True
    return following is not None and following.text != "" and following.label is not None


_MAX_BLOCK_LINES = 40


def _header_block(lines: list[_Line], start: int, extra: list[str] = ()) -> tuple[dict[str, str], int]:
    """Parse `Label: value` lines from `start`; returns (fields, index after the block).

    Tolerates up to 3 blank lines before the block, single blank lines between fields (HTML→text), wrapped
    values, and fields run together on one line. Stops at the first body line.
    """
    fields: dict[str, str] = {}
    last: str | None = None
    pending = [text for part in extra for text in _split_run_together(part, anywhere=True)]
    for text in pending:
        found = _label(text)
        if found and found[0] not in fields:
            fields[found[0]] = found[1]
            last = found[0]
    i, n = start, len(lines)
    blanks = 0
    while i < n and not lines[i].text and blanks < 3 and not fields:
        i, blanks = i + 1, blanks + 1
    limit = min(n, i + _MAX_BLOCK_LINES)  # bounds the work on pathological input (thousands of "From:" lines)
    while i < limit:
        line = lines[i]
        text = line.text
        if not text:
            following = next((j for j in range(i + 1, min(n, i + 3)) if lines[j].text), None)
            if fields and following is not None and lines[following].label:
                i = following
                continue
            break
        if line.separator:
            break
        if line.label:
            for item in line.glued_labels:
                if item and item[0] not in fields:
                    fields[item[0]] = item[1]
                    last = item[0]
                elif item:
                    last = None
            i += 1
            continue
        if last and _continues(last, fields[last], text, lines[i + 1] if i + 1 < n else None):
            fields[last] = f"{fields[last]} {text}".strip()
            i += 1
            continue
        break
    return fields, i


def _block_from_fields(kind: str, client: str, start: int, end: int, depth: int, fields: dict[str, str],
                       fallback_sender: str | None = None) -> _Block | None:
    sender = parse_from_value(fields.get("from")) or parse_from_value(fields.get("sender"))
    if sender is None and fallback_sender:
        sender = parse_from_value(fallback_sender)
    if sender is None:
        return None
    note = ""
    if sender.email is None and fields.get("reply_to"):
        # A name-only From line (Exchange-internal sender, Apple's rendering of some senders): the
        # Reply-To line of the same header block gives the address. Never over a From with its own
        # address, and only from this block's own lines (not a note, signature or body).
        reply_to = parse_from_value(fields["reply_to"])
        if reply_to is not None and reply_to.email:
            sender = Address(sender.name or reply_to.name, reply_to.email)
            note = "address from the block's Reply-To line (the From line names no address)"
    return _Block(kind, client, start, end, depth, sender, _clean_value(fields.get("subject")),
                  _clean_value(fields.get("date")), note)


def _notes_block(lines: list[_Line], i: int, depth: int) -> _Block | None:
    """Lotus Notes: the separator names the forwarder; the original author is on the next non-blank line,
    as `"Name" <addr> on DATE` or as `Name` followed by a date line."""
    n = len(lines)
    j = i + 1
    if j < n and re.match(r"^[\d:APM\s]*-{3,}$", lines[j].text):  # the separator wrapped onto a 2nd line
        j += 1
    while j < n and not lines[j].text:
        j += 1
    if j >= n or _label(lines[j].text):
        return None
    who, date = lines[j].text, None
    inline_date = re.match(r"^(?P<who>.+?)\s+on\s+(?P<date>\d{1,2}/\d{1,2}/\d{2,4}.*)$", who)
    k = j + 1
    if inline_date:
        who, date = inline_date.group("who"), inline_date.group("date")
    elif k < n and _NOTES_DATE.match(lines[k].text):
        date, k = lines[k].text, k + 1
    sender = parse_from_value(who)
    if sender is None:
        return None
    # `Please respond to`, `To:`, `cc:`, `Subject:` follow, with blank lines and odd indentation.
    subject, end = None, k
    for m in range(k, min(n, k + 12)):
        found = _label(lines[m].text)
        if found and found[0] == "subject":
            subject, end = _clean_value(found[1]), m + 1
            break
    return _Block("forward", "lotus_notes", i, end, depth, sender, subject, date)


_WROTE = re.compile(
    # `... wrote:`, or the word before the mailbox and a short word after it (sv `skrev "N" <a> följande:`)
    r"(?:" + "|".join(re.escape(w) for w in sorted(WROTE_WORDS, key=len, reverse=True))
    + r")\b(?:.{0,40}|.{0,200}[>)]\s*\w{0,12})[:：]$",
    re.IGNORECASE,
)
_ATTRIBUTION_INTRO = re.compile(
    r".*(?:,\s|\bheeft\s|időpontban\s|používateľ\s|пользователь\s|użytkownik\s|schrieb\s|skrev\s|"
    r"\d{1,2}[:.]\d{2}(?::\d{2})?\s*(?:AM|PM|am|pm|Uhr)?\s)",
)


def _attribution(lines: list[_Line], i: int) -> tuple[Address, int] | None:
    """`On DATE, "Name" <addr> wrote:` (and translations, possibly wrapped over 2-3 lines)."""
    text = lines[i].text
    if not text or len(text) > 300 or lines[i].label:
        return None
    used = 1
    while not text.endswith((":", "：")) and used < 3 and i + used < len(lines) and lines[i + used].text:
        text = f"{text} {lines[i + used].text}"
        used += 1
    if not text.endswith((":", "：")) or len(text) > 400:
        return None
    address = _BRACKETED_ADDRESS.search(text) or _ADDRESS.search(text)
    if not address:
        return None
    if not (_WROTE.search(text) or re.search(r"\d.*[>)]\s*[:：]$", text)):
        return None
    before = text[: address.start()]
    quoted = re.search(r"[\"«„“]([^\"«»„“”]+)[\"»”]\s*$", before)
    if quoted:
        name = quoted.group(1)
    else:
        intro = _ATTRIBUTION_INTRO.match(before)
        name = before[intro.end():] if intro else before
    email_address = _valid_email(address.groupdict().get("addr") or address.group(0))
    if email_address is None:
        return None
    name = _clean_name(name)
    if name and (name.casefold() == email_address or _ADDRESS.fullmatch(name)):
        name = None
    return Address(name, email_address), used


def _find_blocks(lines: list[_Line]):
    """Every forward/reply block, top-down."""
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        if not line.text:
            i += 1
            continue
        block = _block_at(lines, i)
        if block is not None:
            yield block
            i = max(block.end, i + 1)
            continue
        i += 1


_DASH_START = "-" + _UNICODE_DASHES


def _block_at(lines: list[_Line], i: int) -> _Block | None:
    text, depth = lines[i].text, lines[i].depth
    if text[:1] in _DASH_START:  # the Notes and mutt separators both start with `---`
        dashed = text.translate(_DASHES)
        if _NOTES.match(dashed):
            return _notes_block(lines, i, depth)
        mutt = _MUTT.match(dashed)
        if mutt:
            fields, end = _header_block(lines, i + 1)
            return _block_from_fields("forward", "mutt", i, end, depth, fields, fallback_sender=mutt.group("who"))
    separator = lines[i].separator
    if separator:
        fields, end = _header_block(lines, i + 1, [separator.rest] if separator.rest else [])
        if separator.kind == "original" and not ("from" in fields or "sender" in fields):
            return None  # 32 underscores before a signature or a disclaimer
        return _block_from_fields(separator.kind, separator.client, i, end, depth, fields)
    found = lines[i].label
    if found and found[0] == "from":
        fields, end = _header_block(lines, i)
        if len(set(fields) & {"date", "subject", "to", "cc", "sender"}) >= 1:
            return _block_from_fields("headers", "outlook", i, end, depth, fields)
        return None
    attribution = _attribution(lines, i)
    if attribution:
        sender, used = attribution
        return _Block("attribution", "outlook_mac", i, i + used, depth, sender, None, None)
    return None


def _has_block(text: str) -> bool:
    return next(_find_blocks(_normalise(text)), None) is not None


_FINNISH_LABELS = frozenset({"lähettäjä", "lähetetty", "vastaanottaja", "aihe", "päivämäärä"})


def _finnish_block(lines: list[_Line], block: _Block) -> bool:
    """Whether the block's labels are Finnish (to read an ambiguous `VS:` subject marker)."""
    for line in lines[block.start: max(block.end, block.start + 1)]:
        match = _LABEL_LINE.match(line.text)
        if match and _fold(match.group("label")) in _FINNISH_LABELS:
            return True
    return False


def _essentially_empty(lines: list[_Line]) -> bool:
    """Nothing but blank lines, rules, mobile footers or a word or two ("FYI")."""
    leftovers = []
    for line in lines:
        text = line.text.strip(" -_*=>\t")
        if text and not _FOOTER.match(text):
            leftovers.append(text)
    return len(leftovers) <= 2 and sum(len(t) for t in leftovers) <= 20


_SIGN_OFF = re.compile(
    r"^(?:(?:best|kind|warm|many)\s+)?(?:regards|wishes|cheers|thanks|thank you|thx|br|rgds|mfg|"
    r"(?:viele|liebe|beste|freundliche)\s+grüße|grüße|gruß|cordialement|bien à vous|salutations|saludos|"
    r"un saludo|atentamente|cordiali saluti|saluti|grazie|met vriendelijke groet(?:en)?|groeten|"
    r"med vänlig hälsning|vänliga hälsningar|hälsningar|mvh|med venlig hilsen|hilsen|ystävällisin terveisin|"
    r"pozdrawiam|z poważaniem|s pozdravem|s pozdravom|srdačan pozdrav|lp|üdvözlettel|cu stimă|"
    r"με εκτίμηση|с уважением|з повагою|saygılarımla|atenciosamente|abraços|obrigad[oa]|敬具|此致|敬礼|"
    r"감사합니다|مع التحية|مع خالص التحية|تحياتي|בברכה|با احترام|धन्यवाद|सादर|ধন্যবাদ|நன்றி|ขอบคุณ(?:ครับ|ค่ะ)?|"
    r"trân trọng|salam|hormat saya|terima kasih)\b[\s,.!]*$",
    re.IGNORECASE,
)
_CONTACT_LINE = re.compile(
    r"^(?:(?:tel|phone|mobile|mob|cell|fax|direct|t|m|p|f|e|w|ph)\.?\s*[:.]?\s*)?"
    r"(?:[+(]?\d[\d\s().\-/]{5,}|\S+@\S+\.\w+|(?:https?://|www\.)\S+)\s*$",
    re.IGNORECASE,
)


def _signature_only(lines: list[_Line]) -> bool:
    """Only a signature: a sign-off, a name, a title or company, phone numbers, an address or a link
    (at most 8 such lines; everything after a `-- ` delimiter). A sentence makes it a note."""
    leftovers = [t for t in (line.text.strip(" _*=>\t") for line in lines) if t and not _FOOTER.match(t)]
    if len(leftovers) > 8:
        return False
    for text in leftovers:
        if text.strip("-") == "" or _SIGN_OFF.match(text) or _CONTACT_LINE.match(text):
            continue
        words = text.replace("|", " ").split()
        if len(words) == 1 and len(leftovers) == 1:
            return False  # a lone word ("Done", "Approved") is a reply, not a signature
        if (len(words) <= 5 and len(text) <= 60 and not re.search(r"\d|[?!:;]$|\.$", text)
                and all(not w[:1].isalpha() or not w[:1].islower() for w in words)):
            continue  # a name, a title or a company, capitalised (or in a script without case)
        return False
    return True


# ---- the structural path: a header block recognised by its shape, where no label table knows it ----

_GENERIC_LABEL_LINE = re.compile(
    r"^\*{0,2}(?P<label>[^\W\d_][^:：\n*<>@/\[\]()]{0,40}?)\*{0,2}\s*[:：]\s*\*{0,2}\s*(?P<value>\S.*)$"
)
_CLOCK = re.compile(r"\d{1,2}\s*[:.：]\s*\d{2}")
_NUMERIC_DATE = re.compile(r"\d{1,4}\s*[./\-年]\s*\d{1,2}\s*[./\-月]\s*\d{1,4}")


@functools.cache
def _month_and_day_names() -> frozenset[str]:
    """Month and weekday names (wide and abbreviated, format and stand-alone) of the table's languages, from
    the CLDR data Babel ships: loaded once, on the first structural look (about 0.2 s), never on mail that
    has no candidate block."""
    from babel import Locale, UnknownLocaleError  # noqa: PLC0415 - only the structural path needs it

    names: set[str] = set()
    for language in LABEL_TABLE["top_languages"]:
        try:
            locale = Locale.parse(language)
        except (UnknownLocaleError, ValueError):
            continue
        for context in ("format", "stand-alone"):
            for width in ("wide", "abbreviated"):
                for table in (locale.months, locale.days):
                    names.update(_fold(name).strip(".") for name in table[context][width].values())
    return frozenset(name for name in names if name)


def _looks_like_date(value: str) -> bool:
    """Whether a value reads as a date in some locale: digits (any script) with a clock time or a numeric
    date, or a number beside a month or weekday name of one of the table's languages."""
    if "@" in value or not re.search(r"\d", value):
        return False
    if _CLOCK.search(value) or _NUMERIC_DATE.search(value):
        return True
    words = {_fold(word) for word in re.findall(r"[^\W\d_][^\W\d_.]*\.?", value)}
    names = _month_and_day_names()
    return any(word.strip(".") in names for word in words)


def _fold_body(text: str) -> str:
    """A whole body in compare form for a substring test: NFKC and casefold (both in C), not cached (the
    lru_cache of _fold is for labels and values, not megabytes of text)."""
    return unicodedata.normalize("NFKC", _INVISIBLE.sub("", text)).casefold().replace("\u0307", "")


def _looks_like_name(value: str) -> bool:
    return 1 <= len(value.split()) <= 6 and len(value) <= 80 and not re.search(r"\d|https?:", value)


# A leading prefix in a language the subject tables do not know (`إعادة توجيه:`, `XY:`): one or two words
# and a colon, for the structural path only (it needs the subject repeated, not what the prefix means).
_UNKNOWN_PREFIX = re.compile(r"^(?:[^\W\d_]{1,14}(?:\s[^\W\d_]{1,14})?\s?[:：]\s*){1,3}")


def _subject_core(subject: str) -> str:
    core = strip_prefixes(_INVISIBLE.sub("", subject))
    bare = _UNKNOWN_PREFIX.sub("", core)
    return _fold(bare if len(bare) >= 3 else core)


def _repeats_subject(value: str, core: str) -> bool:
    """The value is the message's subject (less its prefixes, known or not: `إعادة توجيه: X` holds X)."""
    value = _subject_core(value)
    if len(core) < 3 or not value:
        return False
    return value == core or core in value or (len(value) >= max(3, len(core) // 2) and value in core)


def _generic_label(text: str) -> str | None:
    match = _GENERIC_LABEL_LINE.match(text)
    if not match or len(match.group("label").split()) > 4:
        return None
    return match.group("value").strip().strip("*").strip() or None


def _structural_block(lines: list[_Line], i: int, core: str) -> _Block | None:
    """A run of 3-6 `label: value` lines (any script; single blank lines between them allowed, as HTML→text
    leaves them) in which one value repeats the subject, another reads as a date, and the first of the
    others (the From line comes before To/Cc in every client's order) holds an address or a name."""
    run: list[tuple[int, str]] = []
    j, n = i, len(lines)
    while j < n and len(run) <= 6:
        text = lines[j].text
        if not text:
            if run and j + 1 < n and lines[j + 1].text and _generic_label(lines[j + 1].text):
                j += 1
                continue
            break
        value = _generic_label(text)
        if value is None:
            break
        run.append((j, value))
        j += 1
    if not 3 <= len(run) <= 6:
        return None
    subject_at = next((k for k, (_, value) in enumerate(run) if _repeats_subject(value, core)), None)
    if subject_at is None:
        return None
    date_at = next((k for k, (_, value) in enumerate(run) if k != subject_at and _looks_like_date(value)), None)
    if date_at is None:
        return None
    sender_at = next(k for k in range(len(run)) if k not in (subject_at, date_at))
    value = run[sender_at][1]
    if not (_ADDRESS.search(value) or _looks_like_name(value)):
        return None
    sender = parse_from_value(value)
    if sender is None:
        return None
    label = lines[run[sender_at][0]].text.split(":")[0].split("：")[0].strip("* ")
    return _Block("headers", "structural", i, run[-1][0] + 1, lines[i].depth, sender, run[subject_at][1],
                  run[date_at][1], f"structure: sender on the '{label}' line, date and subject lines found")


def _find_structural(lines: list[_Line], subject: str, start: int = 0) -> _Block | None:
    core = _subject_core(subject)
    if len(core) < 3:
        return None
    for i in range(start, len(lines)):
        line = lines[i]
        if line.text and _generic_label(line.text) is not None:
            block = _structural_block(lines, i, core)
            if block is not None:
                return block
    return None


# ================================================================================================
# Deciding
# ================================================================================================


def _step(rule: str, block: _Block | None = None, detail: str = "") -> dict:
    step: dict = {"rule": rule}
    if block is not None:
        step["block"] = f"{block.kind}:{block.client}"
        step["line"] = block.start + 1
        step["sender"] = block.sender.as_dict() if block.sender else None
        if block.subject:
            step["subject"] = block.subject
    if detail or (block is not None and block.note):
        step["detail"] = "; ".join(part for part in (detail, block.note if block else "") if part)
    return step


def _from_text(text: str, subject: str) -> tuple[_Block, list[dict]] | None:
    """The block that holds the original sender, and the steps that led to it."""
    lines = _normalise(text)
    subject = _INVISIBLE.sub("", subject)
    blocks = _find_blocks(lines)
    first = next(blocks, None)
    path = "table"
    if first is None:
        # No client's labels or separators: recognise the block by its shape (the subject must be
        # repeated in the body, which keeps most mail off this path at the cost of one `in`).
        core = _subject_core(subject)
        if len(core) < 3 or core not in _fold_body(text):
            return None
        first = _find_structural(lines, subject)
        if first is None:
            return None
        path = "structure"
        blocks = iter(())
    outermost = leading_prefix_kind(subject)
    forward_marked = has_forward_prefix(subject)
    if outermost == FORWARD and leading_prefix_word(subject) == "vs" and _finnish_block(lines, first):
        outermost = REPLY  # `VS:` is the Finnish reply marker (Danish/Norwegian forward), reference §8.1
        forward_marked = False
    if first.kind == "forward":
        # A quoted forward under a "Re:" subject is the history of a reply to a forward.
        accepted = not (first.depth > 0 and outermost == REPLY)
    else:
        # Outlook layouts and `On ... wrote:` (Outlook for Mac forwards) look the same in replies, so they
        # need a forward prefix, or nothing written above them (a reply has its text there). With no
        # prefix at all, a separator-less block naming no address ("From: the CEO") is too weak.
        nothing_above = _essentially_empty(lines[: first.start])
        # `RE: FW:` / `AW: WG:`: a forward only when nothing but a signature was written above the block.
        blank_above = _nothing_above(lines, first) or _signature_only(lines[: first.start])
        accepted = outermost == FORWARD or (blank_above and forward_marked) or (
            outermost is None and nothing_above
            and (first.kind != "headers" or first.sender is None or first.sender.email is not None)
            # A structural block with no known marker at all could be a web form's `Name:/Email:/Date:/
            # Subject:` summary: it needs a subject prefix we cannot read (a forward marker in a language
            # without a table) or a rule line right above it.
            and (path != "structure" or bool(_UNKNOWN_PREFIX.match(strip_prefixes(subject)))
                 or _rule_above(lines, first)))
    if not accepted:
        return None
    steps = [_step(f"{path}: outermost block", first,
                   "" if first.kind == "forward" or outermost == FORWARD
                   else ("a forward marker in the subject and nothing but a signature above the block"
                         if forward_marked and not _nothing_above(lines, first) else
                         "nothing written above the block"))]
    current = first
    while True:
        following = next(blocks, None)
        if following is None and has_forward_prefix(current.subject):
            # the inner block of a forward of a forward may be in a language no table knows
            following = _find_structural(lines, current.subject or "", current.end)
        if following is None:
            break
        # Step down only through an empty or signature-only forward of a forward, never into reply history.
        if following.kind == "attribution":
            steps.append(_step("stop: the next block is reply history (an attribution line)", following))
            break
        between = lines[current.end: following.start]
        if _essentially_empty(between):
            why = "empty"
        elif _signature_only(between):
            why = "signature-only"
        else:
            steps.append(_step("stop: the forwarder wrote a note above the next block", following))
            break
        # "Itself a forward": its own subject says so (a block without a subject line, e.g. Lotus
        # Notes or an attribution line, is trusted when the next block is an explicit forward separator).
        untitled_explicit = current.subject is None and following.kind == "forward"
        if not (has_forward_prefix(current.subject) or untitled_explicit):
            steps.append(_step("stop: the block is not itself a forward (no forward marker in its subject)",
                               following))
            break
        steps.append(_step(f"step down: the block above is {why} and itself a forward", following))
        current = following
    return current, steps


def _rule_above(lines: list[_Line], block: _Block) -> bool:
    """A line of dashes, underscores or equals signs (a separator in any language) just above the block."""
    above = next((line.text for line in reversed(lines[: block.start]) if line.text), "")
    return len(above) >= 2 and above[:2].translate(_DASHES) in ("--", "__", "==")


def _nothing_above(lines: list[_Line], block: _Block) -> bool:
    return not any(line.text.strip(" -_*=>\t") and not _FOOTER.match(line.text.strip(" -_*=>\t"))
                   for line in lines[: block.start])


def _message_text(message: email.message.Message) -> tuple[str, str] | None:
    """(text, "text"|"html") of a message's body, decoded; for embedded messages."""
    plain = html_body = None
    parts = message.walk() if message.is_multipart() else [message]
    for part in parts:
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        if (part.get_content_disposition() or "inline") == "attachment":
            continue
        payload = part.get_payload(decode=True) or b""
        # as parsing decodes the message's own bodies: a label that names no charset (`undefined`,
        # `idna`, which raise UnicodeError even with errors="replace") is never used as a codec
        content, _defect = parsing.decode_bytes(payload, parsing._param(part, "charset"))
        if part.get_content_subtype() == "plain" and plain is None:
            plain = content
        elif part.get_content_subtype() == "html" and html_body is None:
            html_body = content
    if plain and plain.strip():
        return plain, "text"
    if html_body:
        return html_to_text(html_body), "html"
    return None


def _header_text(message: email.message.Message, name: str) -> str | None:
    value = message.get(name)
    if value is None:
        return None
    return _INVISIBLE.sub("", _decode_words(str(value))).strip() or None


def _header_mailbox(message: email.message.Message, name: str) -> Address | None:
    header = message.get(name)
    if header is not None and _INVISIBLE.search(str(header)):
        header = None  # bidi marks inside `<...>`: read from the cleaned text below
    for parsed in getattr(header, "addresses", ()):  # policy.default headers are already parsed
        email_address = _valid_email(parsed.addr_spec)
        if email_address:
            display = _clean_name(parsed.display_name)
            return Address(display if display and _fold(display) != email_address else None, email_address)
    value = _header_text(message, name)
    if not value:
        return None
    try:  # compat32's parser: recursive in comments (1,000 '(' = RecursionError)
        mailboxes = email.utils.getaddresses([value])
    except (RecursionError, ValueError, IndexError):
        mailboxes = []
    for display, addr in mailboxes:
        email_address = _valid_email(addr)
        if email_address:
            name = _clean_name(display) if _fold(display or "") != email_address else None
            return Address(name, email_address)
    return parse_from_value(value)


def _embedded_messages(parsed: ParsedMessage, limits: ParseLimits) -> list[email.message.Message]:
    if parsed.embedded_messages:
        return list(parsed.embedded_messages)
    found = []  # some clients attach the forwarded message as application/octet-stream `*.eml`
    for attachment in parsed.attachments:
        if attachment.filename.lower().endswith(".eml") and attachment.payload:
            # parsed as parse_message parses mail (screened, bounded header factory): the outer
            # message's screen could not see into a base64 attachment, and this runs after its time check
            try:
                parsing._prescan(attachment.payload, limits)
                found.append(parsing._parse_tree(attachment.payload, []))
            except parsing.MessageTooComplex:
                continue  # not read for a forward: the attachment itself is kept as it is
    return found


def _from_embedded(message: email.message.Message, depth: int = 0) -> ForwardInfo | None:
    sender = _header_mailbox(message, "From") or _header_mailbox(message, "Sender")
    if sender is None:
        return None
    subject = _header_text(message, "Subject")
    attached = {"rule": "rfc822_attachment: the attached message's From header", "sender": sender.as_dict()}
    info = ForwardInfo(sender, subject, _header_text(message, "Date"), "rfc822_attachment", (attached,))
    # The attached message may itself be an empty forward of a forward: step down the same way.
    body = _message_text(message)
    if body and has_forward_prefix(subject):
        lines = _normalise(body[0])
        first = next(_find_blocks(lines), None)
        if first and first.kind != "attribution" and _essentially_empty(lines[: first.start]):
            inner = _from_text(body[0], subject or "")
            if inner:
                block, steps = inner
                return ForwardInfo(block.sender, block.subject, block.date, "rfc822_attachment",
                                   (attached, *steps))
    if depth < 5 and (not body or _essentially_empty(_normalise(body[0]))):
        for part in message.walk():
            if part.get_content_type() == "message/rfc822" and part is not message:
                payload = part.get_payload()
                inner_message = payload[0] if isinstance(payload, list) and payload else None
                if isinstance(inner_message, email.message.Message):
                    nested = _from_embedded(inner_message, depth + 1)
                    if nested and has_forward_prefix(subject):
                        return ForwardInfo(nested.original_sender, nested.original_subject, nested.original_date,
                                           nested.detected_by, (attached, *nested.steps))
    return info


def _is_auto_report(message: email.message.Message | None) -> bool:
    """DSNs and auto-replies quote or attach *our* mail: never a forward."""
    if message is None:
        return False
    if message.get_content_type() == "multipart/report":
        return True
    return str(message.get("Auto-Submitted", "no")).strip().lower().startswith("auto-replied")


def _resent(parsed: ParsedMessage) -> ForwardInfo | None:
    message = parsed.message
    if message is None or not (message.get("Resent-From") or message.get("Resent-Sender")):
        return None
    original = _header_mailbox(message, "From")
    if original is None and parsed.sender is not None:
        original = Address(parsed.sender.name, _valid_email(parsed.sender.email))
    if original is None:
        return None
    resender = _header_mailbox(message, "Resent-From") or _header_mailbox(message, "Resent-Sender")
    if resender is not None and resender.email and resender.email == original.email:
        return None  # a client that stamps Resent-From with the author itself: not a redirect
    return ForwardInfo(original, parsed.subject or None, _header_text(message, "Date"), "resent_headers")


_GROUPS_VIA = re.compile(r"^(?P<name>.+?)\s+via\s+\S.*$", re.IGNORECASE)


def _header_addresses(message: email.message.Message, *names: str) -> set[str]:
    found = set()
    for name in names:
        for value in message.get_all(name) or []:
            for candidate in _ADDRESS.findall(_INVISIBLE.sub("", str(value))):
                email_address = _valid_email(candidate)
                if email_address:
                    found.add(email_address)
    return found


def _server_forward(parsed: ParsedMessage) -> ForwardInfo | None:
    """Forwards done by servers, decided from the headers before the body is read (reference §7):

    * a Google Groups relay rewrites From to `'Name' via Group <group@...>` and keeps the author in
      `X-Original-Sender`: the original sender is X-Original-Sender (with the name from before "via");
    * a Gmail filter forward (`X-Forwarded-For` / `X-Forwarded-To`, a `+caf_` Return-Path) and an
      Exchange mailbox or inbox-rule auto-forward (`X-MS-Exchange-Organization-AutoForwarded: true`, with or
      without a `FW:` prefix) keep the author's From header: the original sender is From.

    A forward loop (the From address itself among the forwarding or loop headers' addresses) is never a
    forward of itself."""
    message = parsed.message
    if message is None:
        return None
    exchange = str(message.get("X-MS-Exchange-Organization-AutoForwarded", "")).strip().lower() == "true"
    gmail_headers = message.get("X-Forwarded-For") is not None or message.get("X-Forwarded-To") is not None
    caf = any("+caf_" in str(value).lower() for value in message.get_all("Return-Path") or [])
    relay = message.get("X-Original-Sender") is not None
    if not (exchange or gmail_headers or caf or relay):
        return None  # the common case: no header of a server forward, nothing parsed
    sender = _header_mailbox(message, "From")
    subject, date = parsed.subject or None, _header_text(message, "Date")
    author = _header_mailbox(message, "X-Original-Sender") if relay else None
    if author is not None and author.email and (sender is None or sender.email != author.email):
        via = _GROUPS_VIA.match(sender.name or "") if sender else None
        name = _clean_name(via.group("name")) if via else None
        step = {"rule": "header: list relay (X-Original-Sender differs from the rewritten From)",
                "sender": Address(name, author.email).as_dict(),
                "detail": f"From {sender.email if sender else None} is the relay"}
        return ForwardInfo(Address(name, author.email), subject, date, "server_relay:x_original_sender", (step,))
    if sender is None or not sender.email or not (exchange or gmail_headers or caf):
        return None
    if sender.email in _header_addresses(message, "X-Forwarded-For", "X-Forwarded-To", "X-Loop"):
        return None  # the author's own mailbox forwarding to itself: a loop, not a forward
    if exchange:
        rule, detected_by = "header: Exchange auto-forward (X-MS-Exchange-Organization-AutoForwarded)", \
            "server_forward:exchange"
    else:
        rule, detected_by = "header: Gmail filter forward (X-Forwarded-For/-To, +caf_ Return-Path)", \
            "server_forward:gmail"
    step = {"rule": rule, "sender": sender.as_dict(), "detail": "the server kept the author's From header"}
    return ForwardInfo(sender, subject, date, detected_by, (step,))


# ---- the cheap pre-check: mail without any forward marker never reaches the block scan ----

# Each at a line start, written as a newline before it (the text gets one in front): a search for `^` with
# re.M tries every character of the text, one for "\n" jumps from line to line.
_MARKER_LINE = re.compile(r"\n([ \t>]*(?:[-_=~*\u2010-\u2015\u2212\u2500\u2501]{2}|[^\n:：]{1,48}?[:：]))")
_ATTRIBUTION_END = re.compile(r"[@>][^\n]{0,200}(?:\n[^\n]{0,80}){0,2}[:：][ \t]*$", re.MULTILINE)
_COLON_AT_LINE_END = re.compile(r"[:：][ \t]*$", re.MULTILINE)
_LINE_TAG = re.compile(r"<(?:br|p|div|tr|hr|li|h\d|blockquote|/p|/div|/tr|/li|/h\d|/blockquote)\b[^>]*>",
                       re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")


def _has_forward_marker(text: str, subject: str) -> bool:
    """Whether the text holds anything a forward block can start with: a separator-like line, a line whose
    head is a known label or separator phrase, an attribution line (an address before a final colon), or,
    for the structural path, the subject repeated. Exact for the table path (every block starts with one
    of these); a few regex passes in C instead of the per-line scan."""
    for match in _MARKER_LINE.finditer("\n" + text):
        head = match.group(1)
        if head.rstrip()[-1:] not in ":：":
            return True  # `--`, `__`, `==`: a separator or a Notes/mutt line may start here
        head = head.lstrip(" \t>*").rstrip(":： \t*")
        folded = _fold(_INVISIBLE.sub("", head).replace("\xa0", " ")).strip("*")
        if folded in _FIELD_BY_LABEL or folded in _FORWARD_PHRASES or folded in _ORIGINAL_PHRASES:
            return True
    if _has_attribution_end(text):
        return True
    core = _subject_core(subject)
    # ASCII text is its own NFKC form, holds no invisible characters, and casefolds as it lower-cases
    return len(core) >= 3 and core in (text.lower() if text.isascii() else _fold_body(text))


def _has_attribution_end(text: str) -> bool:
    """`_ATTRIBUTION_END.search(text)`, searched only over the lines that end with a colon and the two above
    them (where its matches lie): its search from every `@` and `>` (each quoted line) scanned hundreds of
    characters for a colon that most lines do not end with."""
    for colon in _COLON_AT_LINE_END.finditer(text):
        start = colon.start()
        for _ in range(3):  # the start of the colon's line, and of the two lines above it
            start = text.rfind("\n", 0, start)
            if start < 0:
                break
        if _ATTRIBUTION_END.search(text, start + 1, colon.end()):
            return True
    return False


def _html_marker_text(html_body: str) -> str:
    """The HTML with its tags removed (and the few entities a label line needs), for the pre-check."""
    text = _TAG.sub("", _LINE_TAG.sub("\n", html_body))
    return text.replace("&nbsp;", " ").replace("&#160;", " ").replace("&lt;", "<").replace("&gt;", ">")


def detect_forward(parsed: ParsedMessage, limits: ParseLimits | None = None) -> ForwardInfo | None:
    """The original sender of a forwarded (or redirected, or server-forwarded) message, or None when it is
    not a forward. `limits` (the parse's) screen an attached `.eml` before it is parsed."""
    if _is_auto_report(parsed.message):
        return None
    server = _server_forward(parsed)
    if server:
        return server
    resent = _resent(parsed)
    if resent:
        steps = ({"rule": "header: redirect (Resent-From added, the original From kept)",
                  "sender": resent.original_sender.as_dict()},)
        return ForwardInfo(resent.original_sender, resent.original_subject, resent.original_date,
                           resent.detected_by, steps)
    subject = parsed.subject or ""
    found = None
    if parsed.text and parsed.text.strip():
        body, source = parsed.text, "text_block"
    elif parsed.html:
        body, source = None, "html_block"
    else:
        body, source = "", "text_block"
    text_marked = bool(body) and _has_forward_marker(body, subject)
    if text_marked:
        found = _from_text(body, subject)
    # An HTML-only message, or a text part that is only a stub ("view this message in HTML") or lost
    # the block: the HTML is converted only when it holds a marker.
    if found is None and parsed.html and (
            body is None or (source == "text_block" and not (text_marked and _has_block(body)))) \
            and _has_forward_marker(_html_marker_text(parsed.html), subject):
        found = _from_text(html_to_text(parsed.html), subject)
        source = "html_block"
    block = found[0] if found else None
    # An explicit inline forward wins over an attached message: the attachment then belongs to the
    # forwarded content. Otherwise an attached message/rfc822 is the most reliable signal.
    if block is None or block.kind != "forward":
        for embedded in _embedded_messages(parsed, limits or ParseLimits()):
            info = _from_embedded(embedded)
            if info:
                return info
    if found is None:
        return None
    block, steps = found
    original_subject = block.subject or strip_prefixes(subject) or None
    return ForwardInfo(block.sender, original_subject, block.date, f"{source}:{block.client}", tuple(steps))
