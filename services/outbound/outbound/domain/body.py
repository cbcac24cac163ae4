"""The body of an outgoing email, in plain Python: HTML sanitised with an allow-list, a plain
text alternative derived from it, inserts (document, meeting, article, video, quote and plain links), and
checks of inline images (`cid:`) against the attachments."""

from __future__ import annotations

import html as html_lib
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urlsplit

import nh3

ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "div", "em", "font",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "li", "ol", "p", "pre", "s", "small",
    "span", "strike", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr",
    "u", "ul",
}
ALLOWED_ATTRIBUTES = {
    "*": {"style", "title", "dir", "lang", "align"},
    "a": {"href", "name", "target"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan", "valign", "width"}, "th": {"colspan", "rowspan", "valign", "width"},
    "table": {"width", "cellpadding", "cellspacing", "border"},
    "font": {"color", "face", "size"}, "ol": {"start", "type"},
}
URL_SCHEMES = {"http", "https", "mailto", "cid", "tel"}
# `quote`: a link to a sales quote (price proposal) the recipient can open and accept.
INSERT_KINDS = ("document", "meeting", "article", "video", "quote", "link")
_CID = re.compile(r"""\bsrc\s*=\s*["']?cid:([^"'\s>]+)""", re.IGNORECASE)


class InvalidBody(ValueError):
    pass


def sanitise_html(html: str) -> str:
    """Allow-listed HTML (scripts, handlers, iframes, forms and unknown schemes removed)."""
    return nh3.clean(html, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES, url_schemes=URL_SCHEMES,
                     link_rel="noopener noreferrer", strip_comments=True)


class _TextExtractor(HTMLParser):
    BLOCK = {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "hr",
             "table", "ul", "ol"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._links: list[str | None] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag in ("style", "script", "head", "title"):
            self._skip += 1
        if tag == "li":
            self.parts.append("\n- ")
        elif tag in self.BLOCK:
            self.parts.append("\n")
        if tag == "a":
            self._links.append(attributes.get("href"))
        if tag == "img" and attributes.get("alt"):
            self.parts.append(f"[{attributes['alt']}]")

    def handle_endtag(self, tag):
        if tag in ("style", "script", "head", "title"):
            self._skip = max(0, self._skip - 1)
        if tag in ("p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table", "ul", "ol"):
            self.parts.append("\n")
        if tag == "a" and self._links:
            href = self._links.pop()
            if href and not href.startswith(("cid:", "#")):
                target = href[7:] if href.startswith("mailto:") else href
                if not "".join(self.parts[-3:]).rstrip().endswith(target):
                    self.parts.append(f" ({target})")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """A readable plain-text alternative: paragraphs and line breaks kept, links as `text (url)`."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    lines = [line.strip() for line in text.splitlines()]
    collapsed = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return collapsed + "\n" if collapsed else ""


def text_to_html(text: str) -> str:
    escaped = html_lib.escape(text)
    return "".join(f"<p>{p.replace(chr(10), '<br>')}</p>" for p in re.split(r"\n\s*\n", escaped) if p.strip())


def cid_references(html: str | None) -> set[str]:
    return {m.group(1).strip("<>") for m in _CID.finditer(html or "")}


@dataclass(frozen=True)
class Insert:
    kind: str
    url: str
    title: str


def parse_inserts(values: list[dict] | None) -> list[Insert]:
    inserts = []
    for i, value in enumerate(values or []):
        if not isinstance(value, dict):
            raise InvalidBody(f"inserts[{i}]: give {{kind, url, title}}")
        kind = value.get("kind") or "link"
        if kind not in INSERT_KINDS:
            raise InvalidBody(f"inserts[{i}].kind: one of {', '.join(INSERT_KINDS)}")
        url = (value.get("url") or "").strip()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or any(ch.isspace() for ch in url):
            raise InvalidBody(f"inserts[{i}].url: an absolute http(s) URL is required")
        title = (value.get("title") or url).strip()
        inserts.append(Insert(kind, url, title))
    return inserts


_INSERT_LABEL = {"document": "Document", "meeting": "Meeting", "article": "Article", "video": "Video",
                 "quote": "Quote", "link": "Link"}


def render_inserts_html(inserts: list[Insert]) -> str:
    items = "".join(
        f'<p class="mailroom-insert mailroom-insert-{i.kind}">{_INSERT_LABEL[i.kind]}: '
        f'<a href="{html_lib.escape(i.url, quote=True)}">{html_lib.escape(i.title)}</a></p>'
        for i in inserts)
    return items


@dataclass(frozen=True)
class Body:
    text: str
    html: str | None  # sanitised; None: a plain-text email


def compose_body(*, html: str | None, text: str | None, inserts: list[Insert], quoted_html: str | None = None,
                 quoted_text: str | None = None, max_chars: int = 1_000_000) -> Body:
    """The final body: the author's HTML (sanitised) or text, then inserts, then a quoted part
    (forwards). The text alternative is derived from the HTML unless the author gave one."""
    if html is None and text is None and not inserts and quoted_html is None and quoted_text is None:
        raise InvalidBody("the email has no body: give html or text")
    for name, value in (("html", html), ("text", text)):
        if value is not None and not isinstance(value, str):
            raise InvalidBody(f"{name} must be a string")
        if value is not None and len(value) > max_chars:
            raise InvalidBody(f"{name} is longer than {max_chars} characters")
    if "\x00" in (html or "") + (text or ""):
        raise InvalidBody("the body contains a NUL character")
    if html is None and not inserts and quoted_html is None:
        body_text = (text or "")
        if quoted_text:
            body_text = f"{body_text.rstrip()}\n\n{quoted_text}" if body_text.strip() else quoted_text
        return Body(text=_normalise_newlines(body_text), html=None)
    parts = [sanitise_html(html) if html is not None else text_to_html(text or "")]
    if inserts:
        parts.append(render_inserts_html(inserts))
    if quoted_html is not None:
        parts.append(sanitise_html(quoted_html))
    final_html = sanitise_html("".join(parts))
    keep_text = text is not None and not inserts and quoted_html is None
    final_text = text if keep_text else html_to_text(final_html)
    return Body(text=_normalise_newlines(final_text), html=final_html)


def _normalise_newlines(value: str) -> str:
    return value.replace("\r\n", "\n").replace("\r", "\n")
