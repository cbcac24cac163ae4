"""Server-side sanitisation of inbound HTML mail (nh3 / ammonia allow-list).

What survives: formatting and table markup usual in mail, links (http, https, mailto, tel) with
rel="noopener noreferrer nofollow" and target="_blank", a safe subset of inline CSS, images whose
source is an attachment (`cid:`) or, when allowed, a remote http(s) URL.

What never survives: script/style/iframe/object/embed/form/svg/math elements, event handlers,
`id`/`class` (they could target the host page's CSS), javascript:/vbscript:/data: and any other
scheme, relative URLs (meaningless in mail, and they would point at our own origin), CSS with
url()/expression()/escapes/comments.

Remote images are blocked by default by dropping the `src` attribute: the `<img>` stays (with its
alt text and size), nothing is fetched, and no blocked URL is carried along in the output. To show
the images the caller re-sanitises the stored raw HTML with `allow_remote_images=True`.
`cid:` sources are rewritten to the URL given for that content-id; an unknown cid loses its `src`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import unescape
from urllib.parse import unquote

import nh3

_TAGS = (set(nh3.ALLOWED_TAGS) - {"area", "map"}) | {"font", "tfoot", "section", "address"}
# Elements whose content is code or fallback for active content: drop it together with the tag.
_DROP_WITH_CONTENT = {
    "script",
    "style",
    "title",
    "head",
    "template",
    "iframe",
    "frame",
    "frameset",
    "noframes",
    "object",
    "embed",
    "applet",
    "noembed",
    "svg",
    "math",
    "xmp",
    "textarea",
    "select",
    "button",
}
_TABLE_ATTRIBUTES = {"align", "valign", "width", "height", "bgcolor", "colspan", "rowspan", "nowrap"}
_ATTRIBUTES: dict[str, set[str]] = {
    "*": {"style", "dir", "lang", "title"},
    "a": {"href", "hreflang", "name"},
    "img": {"src", "alt", "width", "height", "align", "border"},
    "font": {"color", "face", "size"},
    "table": _TABLE_ATTRIBUTES | {"border", "cellpadding", "cellspacing", "summary"},
    "td": _TABLE_ATTRIBUTES | {"headers"},
    "th": _TABLE_ATTRIBUTES | {"headers", "scope"},
    "tr": _TABLE_ATTRIBUTES,
    "tbody": {"align", "valign"},
    "thead": {"align", "valign"},
    "tfoot": {"align", "valign"},
    "col": {"align", "valign", "span", "width"},
    "colgroup": {"align", "valign", "span", "width"},
    "blockquote": {"cite"},
    "q": {"cite"},
    "del": {"cite", "datetime"},
    "ins": {"cite", "datetime"},
    "ol": {"start", "type"},
    "ul": {"type"},
    "hr": {"align", "size", "width"},
    "bdo": {"dir"},
    "time": {"datetime"},
}
_URL_SCHEMES = {"http", "https", "mailto", "tel", "cid"}
_LINK_REL = "noopener noreferrer nofollow"

# Layout and typography only: no positioning (overlays for phishing), no url(), no behaviours.
_STYLE_PROPERTIES = {
    "color",
    "background-color",
    "font",
    "font-family",
    "font-size",
    "font-style",
    "font-weight",
    "font-variant",
    "text-align",
    "text-decoration",
    "text-indent",
    "text-transform",
    "line-height",
    "letter-spacing",
    "word-spacing",
    "white-space",
    "word-break",
    "word-wrap",
    "overflow-wrap",
    "vertical-align",
    "direction",
    "unicode-bidi",
    "width",
    "height",
    "max-width",
    "min-width",
    "max-height",
    "min-height",
    "margin",
    "margin-top",
    "margin-right",
    "margin-bottom",
    "margin-left",
    "padding",
    "padding-top",
    "padding-right",
    "padding-bottom",
    "padding-left",
    "border",
    "border-top",
    "border-right",
    "border-bottom",
    "border-left",
    "border-color",
    "border-style",
    "border-width",
    "border-collapse",
    "border-spacing",
    "border-radius",
    "list-style-type",
    "display",
    "table-layout",
    "text-overflow",
}
_DANGEROUS_CSS = re.compile(r"url\s*\(|expression|javascript|vbscript|behavior|binding|@import|[\\<>&]|/\*")
_REMOTE = re.compile(r"^\s*(https?:)?//", re.I)


@dataclass(frozen=True)
class SanitizedHtml:
    html: str
    remote_images_blocked: int


def _clean_style(value: str) -> str | None:
    declarations = []
    for declaration in value.split(";"):
        prop, colon, css_value = declaration.partition(":")
        prop, css_value = prop.strip().lower(), css_value.strip()
        if not colon or prop not in _STYLE_PROPERTIES or not css_value:
            continue
        if _DANGEROUS_CSS.search(unquote(css_value).lower()):
            continue
        declarations.append(f"{prop}:{css_value}")
    return ";".join(declarations) or None


class _AttributeFilter:
    """Called by nh3 for every allowed attribute, after the URL scheme check."""

    def __init__(self, cid_urls: dict[str, str], allow_remote_images: bool) -> None:
        self.cid_urls = {cid.strip().strip("<>"): url for cid, url in cid_urls.items()}
        self.allow_remote_images = allow_remote_images
        self.remote_images_blocked = 0

    def __call__(self, tag: str, attribute: str, value: str) -> str | None:
        if attribute == "style":
            return _clean_style(value)
        if attribute in ("src", "href") and value.strip().lower().startswith("cid:"):
            return self.cid_urls.get(unquote(value.strip()[4:]).strip().strip("<>"))
        if tag == "img" and attribute == "src" and _REMOTE.match(value):
            if self.allow_remote_images:
                return value
            self.remote_images_blocked += 1
            return None
        return value


def _clean(html: str, attribute_filter, allowed_relative: set[str]) -> str:
    return nh3.clean(
        html,
        tags=_TAGS,
        clean_content_tags=_DROP_WITH_CONTENT,
        attributes=_ATTRIBUTES,
        attribute_filter=attribute_filter,
        strip_comments=True,
        link_rel=_LINK_REL,
        set_tag_attribute_values={"a": {"target": "_blank"}},
        url_schemes=_URL_SCHEMES,
        # Relative URLs are denied, except the attachment URLs we wrote in for cid: sources.
        url_relative=lambda url: url if url in allowed_relative else None,
    )


def sanitize_html(html: str, cid_urls: dict[str, str], *, allow_remote_images: bool = False) -> SanitizedHtml:
    """Sanitise untrusted mail HTML; see the module docstring for what is kept."""
    attribute_filter = _AttributeFilter(cid_urls, allow_remote_images)
    cleaned = _clean(html or "", attribute_filter, set(attribute_filter.cid_urls.values()))
    return SanitizedHtml(html=cleaned, remote_images_blocked=attribute_filter.remote_images_blocked)


def _keep_existing(tag: str, attribute: str, value: str) -> str | None:
    return _clean_style(value) if attribute == "style" else value


_OPEN_TAG_OR_ENTITY_AT_END = re.compile(r"(<[^>]*|&[#A-Za-z0-9]*)$")


def _cut(html: str, max_bytes: int) -> str:
    """At most max_bytes of UTF-8, never inside a character, a tag or an entity."""
    head = html.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")
    return _OPEN_TAG_OR_ENTITY_AT_END.sub("", head)


def html_preview(html: str, max_bytes: int = 100_000) -> tuple[str, bool]:
    """Return (preview, truncated): sanitised HTML of at most max_bytes UTF-8 bytes, well-formed.

    Meant for HTML that sanitize_html produced: the cut is re-cleaned with the same allow-list
    (closing open elements), keeping image sources already present, including relative ones.
    """
    html = html or ""
    if len(html.encode("utf-8")) <= max_bytes:
        return html, False
    budget = max_bytes
    while budget > 0:
        head = _cut(html, budget)
        # already sanitised: any relative URL left in it was one of our attachment URLs
        relative_sources = {unescape(url) for url in re.findall(r'(?:src|href)="([^"]*)"', head)}
        preview = _clean(head, _keep_existing, relative_sources)
        size = len(preview.encode("utf-8"))
        if size <= max_bytes:
            return preview, True
        budget -= size - max_bytes  # closing tags added by the re-clean: cut that much earlier
    return "", True
