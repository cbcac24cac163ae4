"""The whole of a stored message as one HTML page ("View full message"), in plain Python: its
headers, its HTML body sanitised (sanitize.py's allow-list) without the preview's size cap, or
its text, its attachments, and links to the raw `.eml` and to the page with remote images shown.

The page is served under a strict Content-Security-Policy: nothing but images from our own origin
(the message's `cid:` images, rewritten to its signed attachment links) and inline styles; no
scripts, frames, forms, fonts or connections; remote images only when the reader asked for them
(`?images=1`). The signed link is in the page's URL, so no Referer ever leaves it."""

from __future__ import annotations

import html as html_lib
from dataclasses import dataclass, field

IMAGES_ALLOWED_VALUES = ("1", "true", "yes", "load")


def content_security_policy(remote_images: bool) -> str:
    images = "'self' https: http:" if remote_images else "'self'"
    return ("default-src 'none'; "
            f"img-src {images}; "
            "style-src 'unsafe-inline'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; "
            # no allow-scripts: same-origin only lets the page load its own attachment images
            "sandbox allow-same-origin allow-popups allow-popups-to-escape-sandbox")


def response_headers(remote_images: bool) -> dict[str, str]:
    return {"Content-Security-Policy": content_security_policy(remote_images),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",  # the URL carries the signed access token
            "Cache-Control": "private, no-store"}


def images_requested(value: str | None) -> bool:
    return (value or "").strip().lower() in IMAGES_ALLOWED_VALUES


@dataclass(frozen=True)
class PageLinks:
    raw: str  # the .eml download
    with_images: str  # this page with remote images shown
    without_images: str
    attachment: dict[str, str] = field(default_factory=dict)  # sha256 → signed download URL


@dataclass(frozen=True)
class PageContent:
    subject: str
    sender: str | None
    to: list[str]
    cc: list[str]
    date: str | None
    html: str | None  # sanitised already
    text: str | None
    remote_images_blocked: int
    attachments: list[dict]  # {filename, content_type, size, sha256}
    defects: list[str] = field(default_factory=list)


_STYLE = ("body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d1d1f}"
          ".mailroom-head{padding:12px 16px;border-bottom:1px solid #ddd;background:#f7f7f8}"
          ".mailroom-head dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0}"
          ".mailroom-head dt{color:#666}.mailroom-head dd{margin:0;word-break:break-word}"
          ".mailroom-actions{margin-top:8px}.mailroom-actions a{margin-right:12px}"
          ".mailroom-notice{margin-top:8px;padding:6px 8px;background:#fff6d6;border:1px solid #ecd98b}"
          ".mailroom-body{padding:16px}.mailroom-text{white-space:pre-wrap;word-break:break-word;font:inherit}"
          ".mailroom-attachments{padding:8px 16px;border-top:1px solid #ddd}")


def _e(value) -> str:
    return html_lib.escape(str(value or ""), quote=True)


def _size(size) -> str:
    size = int(size or 0)
    for unit in ("bytes", "KB", "MB"):
        if size < 1024 or unit == "MB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} bytes"


def _attachment(attachment: dict, links: PageLinks) -> str:
    name = _e(attachment.get("filename") or "attachment")
    detail = f' ({_e(attachment.get("content_type"))}, {_size(attachment.get("size"))})'
    url = links.attachment.get(attachment.get("sha256") or "")
    return (f'<a href="{_e(url)}" download>{name}</a>' if url else name) + detail


def render_page(content: PageContent, links: PageLinks, *, remote_images: bool) -> str:
    """The page, every value from the message escaped (the body: sanitised HTML, or text)."""
    rows = [("From", content.sender), ("To", ", ".join(content.to)), ("Cc", ", ".join(content.cc)),
            ("Date", content.date), ("Subject", content.subject)]
    head = "".join(f"<dt>{name}</dt><dd>{_e(value)}</dd>" for name, value in rows if value)
    actions = [f'<a href="{_e(links.raw)}" download>Download the original (.eml)</a>']
    notice = ""
    if remote_images:
        actions.append(f'<a href="{_e(links.without_images)}">Hide remote images</a>')
    elif content.remote_images_blocked:
        count = content.remote_images_blocked
        notice = (f'<div class="mailroom-notice">{count} remote image{"s" if count != 1 else ""} blocked to '
                  f'protect your privacy. <a href="{_e(links.with_images)}">Show remote images</a></div>')
    if content.html is not None:
        body = content.html
    elif content.text is not None:
        body = f'<pre class="mailroom-text">{_e(content.text)}</pre>'
    else:
        body = "<p><em>This message has no text.</em></p>"
    attachments = ""
    if content.attachments:
        items = "".join(f"<li>{_attachment(a, links)}</li>" for a in content.attachments)
        attachments = f'<section class="mailroom-attachments"><h2>Attachments</h2><ul>{items}</ul></section>'
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
            "<meta name=\"referrer\" content=\"no-referrer\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(content.subject or '(no subject)')}</title><style>{_STYLE}</style></head><body>"
            f'<header class="mailroom-head"><dl>{head}</dl>'
            f'<div class="mailroom-actions">{"".join(actions)}</div>{notice}</header>'
            f'<main class="mailroom-body">{body}</main>{attachments}</body></html>')


def unavailable_page(reason: str, raw_link: str) -> str:
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Message not shown</title></head><body>"
            f"<p>This message cannot be shown as a page: {_e(reason)}.</p>"
            f'<p><a href="{_e(raw_link)}" download>Download the original (.eml)</a></p></body></html>')
