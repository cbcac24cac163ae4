"""sanitize_html / html_preview: no active content survives, mail still looks like mail."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from ingest.domain.sanitize import html_preview, sanitize_html

XSS_PAYLOADS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "<img src=x onerror=alert(1)>",
    '<IMG SRC="jav&#x09;ascript:alert(1)">',
    '<img src="javascript:alert(1)">',
    '<a href="javascript:alert(1)">x</a>',
    '<a href="JaVaScRiPt:alert(1)">x</a>',
    '<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)">x</a>',
    '<a href="&#x6A;avascript&colon;alert(1)">x</a>',
    '<a href="java\nscript:alert(1)">x</a>',
    '<a href=" javascript:alert(1)">x</a>',
    '<a href="javascript%3Aalert(1)">x</a>',
    '<a href="vbscript:msgbox(1)">x</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    '<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+">',
    "<svg onload=alert(1)><script>alert(1)</script></svg>",
    '<svg><a xlink:href="javascript:alert(1)"><text>x</text></a></svg>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<iframe src="https://evil.example"></iframe>',
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    '<object data="https://evil.example/x.swf"></object>',
    '<embed src="https://evil.example/x.swf">',
    '<form action="https://evil.example"><input name=password><button>Log in</button></form>',
    "<body onload=alert(1)>",
    '<div onmouseover="alert(1)">hover</div>',
    '<p style="width: expression(alert(1))">x</p>',
    '<p style="width: expr&#101;ssion(alert(1))">x</p>',
    '<p style="width: expr\\65 ssion(alert(1))">x</p>',
    '<p style="width: exp/**/ression(alert(1))">x</p>',
    '<p style="background:url(javascript:alert(1))">x</p>',
    '<p style="-moz-binding:url(https://evil.example/x.xml#xss)">x</p>',
    '<p style="behavior:url(x.htc)">x</p>',
    "<style>@import 'https://evil.example/x.css';</style>",
    '<link rel=stylesheet href="https://evil.example/x.css">',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<base href="javascript:alert(1)//">',
    "<div><p><b><i><u><script>alert(1)</script></u></i></b></p></div>",
    "<<script>alert(1)//<</script>",
    '<img """><script>alert(1)</script>">',
    "<img src=`x`onerror=alert(1)>",
    "<!--<script>alert(1)</script>-->",
    "<![CDATA[<script>alert(1)</script>]]>",
    "<details open ontoggle=alert(1)>",
    "<video><source onerror=alert(1)></video>",
    '<a href="https://ok.example" onclick="alert(1)">ok</a>',
    "%3Cscript%3Ealert(1)%3C/script%3E",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
]

# What must never appear in the output, as markup (text such as "alert(1)" may stay as text).
FORBIDDEN = re.compile(
    r"<\s*(script|style|iframe|object|embed|form|input|button|svg|math|link|meta|base|video|source)\b"
    r"|\son\w+\s*=|javascript:|vbscript:|data:|expression|url\s*\(|binding|behavior|xlink",
    re.I,
)


class _TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags(html: str) -> list[tuple[str, dict]]:
    """Start tags with their attributes: nh3 does not keep attribute order stable."""
    collector = _TagCollector()
    collector.feed(html)
    return collector.tags


@pytest.mark.parametrize("payload", XSS_PAYLOADS)
def test_xss_payload_does_not_survive(payload):
    cleaned = sanitize_html(payload, {}).html

    assert not FORBIDDEN.search(cleaned), cleaned


@pytest.mark.parametrize("payload", XSS_PAYLOADS)
def test_sanitising_is_idempotent(payload):
    once = sanitize_html(payload, {}).html

    twice = sanitize_html(once, {}).html

    assert tags(twice) == tags(once)
    assert sorted(twice) == sorted(once)


def test_ordinary_mail_formatting_is_kept():
    html = (
        '<table width="600" cellpadding="4" bgcolor="#ffffff"><tr><td style="color: #333; '
        'font-family: Arial; position: fixed">Hello <b>there</b><br><font color="red">!</font></td></tr>'
        "</table><blockquote>quoted</blockquote>"
    )

    cleaned = sanitize_html(html, {}).html

    assert ("table", {"width": "600", "cellpadding": "4", "bgcolor": "#ffffff"}) in tags(cleaned)
    assert ("td", {"style": "color:#333;font-family:Arial"}) in tags(cleaned)  # position dropped
    assert '<font color="red">!</font>' in cleaned
    assert "<blockquote>quoted</blockquote>" in cleaned


def test_links_are_safe_and_open_in_a_new_tab():
    cleaned = sanitize_html('<a href="https://shop.example/order/1">order</a>', {}).html

    assert tags(cleaned) == [
        (
            "a",
            {
                "href": "https://shop.example/order/1",
                "target": "_blank",
                "rel": "noopener noreferrer nofollow",
            },
        )
    ]
    assert cleaned.endswith(">order</a>")


def test_mailto_links_are_kept_relative_links_are_not():
    cleaned = sanitize_html('<a href="mailto:a@example.com">mail</a><a href="/admin">x</a>', {}).html

    assert 'href="mailto:a@example.com"' in cleaned
    assert "/admin" not in cleaned


def test_remote_images_are_blocked_by_default_and_counted():
    html = '<img src="https://tracker.example/p.gif" alt="Logo" width="1"><img src="//cdn.example/x.png">'

    result = sanitize_html(html, {})

    assert "tracker.example" not in result.html and "cdn.example" not in result.html
    assert tags(result.html) == [("img", {"alt": "Logo", "width": "1"}), ("img", {})]  # kept, no source
    assert result.remote_images_blocked == 2


def test_remote_images_are_kept_when_allowed():
    result = sanitize_html('<img src="https://cdn.example/logo.png">', {}, allow_remote_images=True)

    assert result.html == '<img src="https://cdn.example/logo.png">'
    assert result.remote_images_blocked == 0


def test_css_background_images_are_not_a_way_around_blocking():
    html = '<td style="background-image: url(https://tracker.example/p.gif); color: red">x</td>'

    cleaned = sanitize_html(f"<table><tr>{html}</tr></table>", {}).html

    assert "tracker" not in cleaned
    assert 'style="color:red"' in cleaned


def test_cid_images_point_at_the_attachment_url_and_unknown_cids_are_dropped():
    html = '<img src="cid:logo.png@01D9" alt="logo"><img src="CID:&lt;missing@x&gt;">'
    urls = {"<logo.png@01D9>": "/api/v1/attachments/42/content?sig=a&b=c"}

    result = sanitize_html(html, urls)

    assert ("img", {"src": "/api/v1/attachments/42/content?sig=a&b=c", "alt": "logo"}) in tags(result.html)
    assert "missing" not in result.html
    assert result.remote_images_blocked == 0


def test_cid_urls_can_be_absolute():
    result = sanitize_html('<img src="cid:a@b">', {"a@b": "https://files.example/a"})

    assert result.html == '<img src="https://files.example/a">'
    assert result.remote_images_blocked == 0


def test_document_head_and_title_do_not_leak_into_the_body():
    html = (
        "<html><head><title>Internal title</title><style>p{color:red}</style></head>"
        "<body><p>Hi</p></body></html>"
    )

    assert sanitize_html(html, {}).html == "<p>Hi</p>"


# -- preview -------------------------------------------------------------------------------------


def test_preview_of_short_html_is_unchanged():
    assert html_preview("<p>short</p>", max_bytes=100) == ("<p>short</p>", False)


def test_preview_is_cut_within_budget_and_stays_well_formed():
    html = "<div><p>" + "word " * 200 + "</p><table><tr><td>cell</td></tr></table></div>"

    preview, truncated = html_preview(html, max_bytes=300)

    assert truncated
    assert len(preview.encode("utf-8")) <= 300
    assert preview.startswith("<div><p>word")
    assert preview.endswith("</p></div>")


def test_preview_never_cuts_inside_a_multibyte_character_or_a_tag_or_an_entity():
    html = "<p>" + "€" * 10 + '<a href="https://example.com/long/path">link</a> &amp; more</p>'

    for budget in range(5, len(html.encode("utf-8"))):
        preview, truncated = html_preview(html, max_bytes=budget)
        assert truncated
        assert len(preview.encode("utf-8")) <= budget
        assert "\ufffd" not in preview
        assert preview.count("<") == preview.count(">")
        assert re.search(r"&(?!amp;)", preview) is None


def test_preview_keeps_attachment_image_urls():
    sanitized = sanitize_html('<p><img src="cid:a@b">' + "x" * 500 + "</p>", {"a@b": "/att/1"}).html

    preview, _ = html_preview(sanitized, max_bytes=100)

    assert '<img src="/att/1">' in preview


def test_preview_of_untrusted_html_is_still_safe():
    preview, _ = html_preview("<p>" + "a" * 50 + "<script>alert(1)</script>" + "b" * 100, max_bytes=120)

    assert "script" not in preview
