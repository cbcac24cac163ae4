"""HTML → plain text, good enough to find forward header blocks in HTML-only mail.

Built on the stdlib `html.parser` (tolerant of the broken markup mail clients write). What matters for
forward detection is the line structure: block elements and `<br>` end lines, table rows become lines
(Thunderbird's header table), `<blockquote>` becomes `> ` quoting (Apple Mail, Gmail), and the
separators that Outlook draws with markup (`<hr>`, the `divRplyFwdMsg` div, the border-top div) become
the same 32-underscore line Outlook.com writes in its text part.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

OUTLOOK_SEPARATOR = "_" * 32

_BLOCK_TAGS = frozenset({
    "address", "article", "aside", "blockquote", "center", "dd", "div", "dl", "dt", "fieldset", "figure",
    "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p",
    "pre", "section", "table", "tbody", "thead", "tfoot", "tr", "ul",
})
_SKIP_TAGS = frozenset({"head", "script", "style", "title", "template", "noscript", "xml", "o:p"})
_VOID_TAGS = frozenset({"br", "hr", "img", "meta", "link", "input", "wbr", "col", "area", "base"})
# Outlook desktop draws its forward/reply separator as a div with a top border (#E1E1E1 2013+,
# #B5C4DF 2007/2010); Outlook.com/OWA wraps the header block in a div whose id ends in divRplyFwdMsg.
_OUTLOOK_BORDER = re.compile(r"border-top\s*:\s*solid\s+#(?:E1E1E1|B5C4DF)", re.IGNORECASE)
_OUTLOOK_DIV_ID = re.compile(r"divRplyFwdMsg$", re.IGNORECASE)


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.current: list[str] = []
        self.quote_depth = 0
        self.skip_depth = 0
        self.pre_depth = 0
        self.open_tags: list[str] = []

    # ---- line handling ----------------------------------------------------------------------
    def _end_line(self, force: bool = False) -> None:
        text = "".join(self.current)
        self.current = []
        if not self.pre_depth:
            text = re.sub(r"[ \t\r\n\f]+", " ", text).strip()
        if text or force:
            self.lines.append(("> " * self.quote_depth) + text if text else ">" * self.quote_depth)

    def _blank_line(self) -> None:
        self._end_line()
        if self.lines and self.lines[-1].strip("> "):
            self.lines.append(">" * self.quote_depth)

    def _separator(self) -> None:
        self._end_line()
        if not self.lines or self.lines[-1] != OUTLOOK_SEPARATOR:
            self.lines.append(OUTLOOK_SEPARATOR)

    # ---- parser callbacks -------------------------------------------------------------------
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            if tag not in _VOID_TAGS:
                self.skip_depth += 1
            return
        if self.skip_depth:
            return
        attributes = {name: value or "" for name, value in attrs}
        if tag == "br":
            self._end_line(force=True)
            return
        if tag == "hr":
            self._separator()
            return
        if tag in ("td", "th"):
            self.current.append(" ")
            return
        outlook_div = _OUTLOOK_DIV_ID.search(attributes.get("id", "")) or _OUTLOOK_BORDER.search(
            attributes.get("style", "")
        )
        if tag == "div" and outlook_div:
            self._separator()
        elif tag == "blockquote":
            self._blank_line()
            self.quote_depth += 1
        elif tag == "p":
            self._blank_line()
        elif tag in _BLOCK_TAGS:
            self._end_line()
        if tag == "pre":
            self.pre_depth += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self.skip_depth = max(0, self.skip_depth - 1)
            return
        if self.skip_depth:
            return
        if tag == "blockquote":
            self._end_line()
            self.quote_depth = max(0, self.quote_depth - 1)
        elif tag == "p":
            self._blank_line()
        elif tag in _BLOCK_TAGS:
            self._end_line()
        if tag == "pre":
            self.pre_depth = max(0, self.pre_depth - 1)

    def handle_data(self, data: str) -> None:
        if self.skip_depth:
            return
        if self.pre_depth:
            parts = data.split("\n")
            for part in parts[:-1]:
                self.current.append(part)
                self._end_line(force=True)
            self.current.append(parts[-1])
        else:
            self.current.append(data)

    def text(self) -> str:
        self._end_line()
        return "\n".join(self.lines)


def html_to_text(html: str | None) -> str:
    """Readable text of an HTML body, one line per block / `<br>`; never raises on bad markup."""
    if not html:
        return ""
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):  # html.parser can still choke on some garbage; keep what we have
        pass
    return parser.text()
