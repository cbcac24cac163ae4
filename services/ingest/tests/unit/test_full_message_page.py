"""The "View full message" page's rules in plain Python: the policy it is served under, what the
reader's `images` value means, and a page where every value from the message is text, never markup."""

from ingest.domain.full_message import (
    PageContent,
    PageLinks,
    content_security_policy,
    images_requested,
    render_page,
    response_headers,
)

LINKS = PageLinks(raw="/raw?access=T", with_images="/view?images=1&access=T", without_images="/view?access=T",
                  attachment={"abc": "/att/abc?access=T"})


def content(**overrides):
    values = dict(subject="Hello", sender="Ada <ada@example.com>", to=["support@mailroom.test"], cc=[],
                  date="2026-11-25T10:00:00+00:00", html="<p>Hi</p>", text="Hi", remote_images_blocked=2,
                  attachments=[{"filename": "a.pdf", "content_type": "application/pdf", "size": 2048, "sha256": "abc"}])
    values.update(overrides)
    return PageContent(**values)


def test_the_policy_allows_no_script_and_remote_images_only_when_asked():
    strict = content_security_policy(False)
    assert strict.startswith("default-src 'none';") and "img-src 'self';" in strict
    assert "script" not in strict and "allow-scripts" not in strict and "form-action 'none'" in strict
    assert "img-src 'self' https: http:;" in content_security_policy(True)
    headers = response_headers(False)
    assert headers["Referrer-Policy"] == "no-referrer" and headers["Cache-Control"] == "private, no-store"
    assert [images_requested(v) for v in ("1", "true", "load", " YES ", "0", "", None, "<script>", "1;x")] == [
        True, True, True, True, False, False, False, False, False]


def test_headers_and_names_from_the_message_are_escaped():
    page = render_page(content(subject="<script>alert(1)</script>", sender='"><img src=x onerror=alert(1)>',
                               attachments=[{"filename": "<b>x</b>.pdf", "content_type": "a/b\"", "size": 1,
                                             "sha256": "abc"}]), LINKS, remote_images=False)
    assert "<script>alert" not in page and "<img src=x" not in page and "<b>x</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'href="/raw?access=T"' in page and 'href="/att/abc?access=T"' in page
    assert "2 remote images blocked" in page and 'href="/view?images=1&amp;access=T"' in page


def test_html_is_preferred_then_text_then_a_notice():
    assert "<p>Hi</p>" in render_page(content(), LINKS, remote_images=False)
    text_page = render_page(content(html=None, text="a < b & c"), LINKS, remote_images=False)
    assert '<pre class="mailroom-text">a &lt; b &amp; c</pre>' in text_page
    assert "has no text" in render_page(content(html=None, text=None), LINKS, remote_images=False)
    shown = render_page(content(), LINKS, remote_images=True)
    assert "Hide remote images" in shown and "blocked" not in shown
