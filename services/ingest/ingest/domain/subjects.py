"""Subject prefixes: which leading `Fwd:` / `AW:` / `转发：` markers a subject carries, and what is left.

Clients write the forward and reply markers in their UI language (Outlook: `WG:` de, `TR:` fr, `RV:` es,
`I:` it, `ENC:` pt-BR, `VB:` sv, ...), stack them (`Re: Fwd:`, `AW: WG:`, `RE[2]:`) and mix them with
bracket tags (`[EXTERNAL] FW:`, `Fwd: [Ticket #123] ...`). We look at the whole leading chain, compare
case-insensitively after Unicode NFKC (which folds the full-width colon `：`), and only accept words from
the tables below, so an ordinary `Note: ...` or `FW planning for Q3` is never taken for a prefix.
"""

from __future__ import annotations

import re
import unicodedata

# Forward markers by language (reference §8.1). `VS` means "forward" in Danish/Norwegian but "reply" in
# Finnish; we count it as forward because the prefix is only ever a hint next to a forward block.
FORWARD_PREFIXES: dict[str, tuple[str, ...]] = {
    "en": ("fw", "fwd", "fwrd", "forward", "forwarded"),
    "de": ("wg", "weitergeleitet"),
    "fr": ("tr", "transfert", "transféré"),
    "es": ("rv", "reenviado", "reenviar"),
    "it": ("i", "inoltro", "inoltrato"),
    "pt": ("enc", "encaminhado", "encaminhada"),
    "nl": ("doorst", "doorsturen", "doorgestuurd"),
    "da_no": ("vs", "videresend", "videresendt"),
    "sv": ("vb", "vidarebefordrat", "vidarebefordra"),
    "fi": ("vl", "välitetty", "edelleenlähetetty"),
    "pl": ("pd", "podaj dalej", "przekaż dalej"),
    "ro": ("redir", "redir."),
    "tr": ("ilt", "ilet", "iletilen"),
    "hu": ("továbbítás", "továbbított"),
    "el": ("πρθ", "προωθημένο"),
    "he": ("הועבר",),
    "is": ("fs", "framsenda"),
    "id": ("trs", "terusan"),
    "cy": ("yml",),
    "ru_uk": ("пересл", "переслано", "пересылка"),
    "zh": ("转发", "轉寄", "轉發", "转寄"),
    "ja": ("転送",),
    "ko": ("전달",),
}

# Reply markers, including the auto-reply subjects of the big clients ("Automatic reply: ...").
REPLY_PREFIXES: dict[str, tuple[str, ...]] = {
    "en": ("re", "reply", "automatic reply", "auto reply", "autoreply", "auto-reply", "out of office"),
    "de": ("aw", "antw", "antwort", "abwesenheitsnotiz", "automatische antwort"),
    "fr": ("ref", "réf", "réponse", "réponse automatique"),
    "es": ("respuesta", "respuesta automática"),
    "it": ("r", "rif", "risposta", "risposta automatica"),
    "pt": ("res", "resposta", "resposta automática"),
    "nl": ("antw", "antwoord", "automatisch antwoord"),
    "nordic": ("sv", "svar", "automatiskt svar", "automatisk svar"),
    "fi": ("vast", "vastaus"),
    "pl_cs": ("odp", "odpowiedź", "odpověď"),
    "tr": ("ynt", "yanıt", "cvp"),
    "hu": ("vá", "válasz"),
    "hr": ("odg",),
    "el": ("απ", "σχετ"),
    "he": ("תגובה",),
    "id": ("bls", "balas"),
    "cy": ("atb",),
    "ru_uk": ("отв", "ответ", "відп"),
    "zh": ("回复", "回覆", "答复", "答覆", "回信"),
    "ja": ("返信",),
    "ko": ("회신", "답장"),
}

FORWARD = "forward"
REPLY = "reply"


def _fold(word: str) -> str:
    """Compare form: NFKC, case-folded, without the combining dot that casefold adds to Turkish `İ`."""
    return unicodedata.normalize("NFKC", word).casefold().replace("\u0307", "").strip()


_KIND_BY_WORD: dict[str, str] = {}
for _words in REPLY_PREFIXES.values():
    _KIND_BY_WORD.update({_fold(w): REPLY for w in _words})
for _words in FORWARD_PREFIXES.values():
    _KIND_BY_WORD.update({_fold(w): FORWARD for w in _words})

# One bracketed tag: `[EXTERNAL]`, `[Ticket #123]`, `【内部連絡】`, `〔社外〕`.
_TAG = re.compile(r"\s*(?:\[[^\]\n]{0,80}\]|【[^】\n]{0,80}】|〔[^〕\n]{0,80}〕)")
# One prefix token: 1-3 words, an optional counter (`RE[2]`, `Re(3)`, `Re^2`), then `:` or `：`.
_TOKEN = re.compile(
    r"\s*(?P<word>[^\W\d_][\w.'\-]{0,24}?(?:[ \u00a0][^\W\d_][\w.'\-]{0,24}?){0,2})"
    r"\s*(?:\[\d{1,3}\]|\(\d{1,3}\)|\^\d{1,3})?\s*[:：]"
)


def prefix_chain(subject: str | None) -> tuple[list[str], int]:
    """The kinds ("forward"/"reply") of the leading prefixes, outermost first, and where the rest starts.

    Bracket tags may sit anywhere in the chain; a tag after the last prefix belongs to the subject.
    """
    text = subject or ""
    kinds: list[str] = []
    pos = 0  # end of the last prefix consumed
    scan = 0
    while scan < len(text):
        tag = _TAG.match(text, scan)
        if tag:
            scan = tag.end()
            continue
        token = _TOKEN.match(text, scan)
        if not token:
            break
        word = _fold(token.group("word"))
        kind = _KIND_BY_WORD.get(word) or _KIND_BY_WORD.get(word.rstrip("."))
        if kind is None:
            break
        kinds.append(kind)
        pos = scan = token.end()
    return kinds, pos


def strip_prefixes(subject: str | None) -> str:
    """`"[EXTERNAL] RE: Fwd: AW: Hello"` → `"Hello"`; `"Fwd: [Ticket #123] Hi"` → `"[Ticket #123] Hi"`."""
    _, pos = prefix_chain(subject)
    return (subject or "")[pos:].strip()


def leading_prefix_word(subject: str | None) -> str | None:
    """The outermost prefix word in compare form (`"[EXT] VS: x"` → `"vs"`), for language-dependent
    markers such as `VS` (forward in Danish/Norwegian, reply in Finnish)."""
    text = subject or ""
    scan = 0
    while scan < len(text):
        tag = _TAG.match(text, scan)
        if not tag:
            break
        scan = tag.end()
    token = _TOKEN.match(text, scan)
    if not token:
        return None
    word = _fold(token.group("word"))
    return word if (word in _KIND_BY_WORD or word.rstrip(".") in _KIND_BY_WORD) else None


def leading_prefix_kind(subject: str | None) -> str | None:
    """The outermost (most recent) action: `"Re: Fwd: x"` → "reply", `"WG: AW: x"` → "forward"."""
    kinds, _ = prefix_chain(subject)
    return kinds[0] if kinds else None


def has_forward_prefix(subject: str | None) -> bool:
    """True when any prefix of the leading chain is a forward marker (`Re: Fwd:`, `[EXT] AW: WG:`)."""
    return FORWARD in prefix_chain(subject)[0]


def has_reply_prefix(subject: str | None) -> bool:
    return REPLY in prefix_chain(subject)[0]
