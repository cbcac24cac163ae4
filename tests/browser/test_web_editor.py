"""The editor's Insert, image and emoji tools in a real browser (Chromium), against outbound's
templates and snippets: a template fills Compose's Subject and message (rendered with the inbox's
tokens) and a reply's message (with the contact's); a snippet goes where the cursor was; "Insert
image" sends the image inline (cid:, at the customer's mail server as a related part); the emoji
picker works from the keyboard. axe-core on each new state."""

import re

import pytest
from playwright.sync_api import expect

from mailroom_testing.tokens import auth

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not __import__("pathlib").Path("/usr/bin/chromium").exists(),
                                 reason="Debian's chromium is not installed (apt-get install chromium; "
                                        ".ci/run installs it)")]

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def no_serious_violations(web, page, where):
    violations = web.axe_violations(page)
    assert not violations, f"axe on {where}: {violations}"


def saved(inbox, kind, body):
    """An inbox's template or snippet, made by a member (who manages them)."""
    status, answer = inbox.post(f"/api/outbound/{kind}", body, headers=auth("agent-1", email="agent@mailroom.test"))
    assert status == 201, answer
    return answer


def test_templates_snippets_inline_image_and_emoji_reach_the_customer(page, inbox, web):
    support = inbox.inbox_ids["support"]
    saved(inbox, "templates", {"name": "Quote sent", "inbox_id": support, "subject": "Your quote from {{ inbox.name }}",
                               "html": "<p>Hello from the {{ inbox.name }} team.</p><p>Before after</p>"})
    saved(inbox, "templates", {"name": "Follow-up", "inbox_id": support, "subject": "Following up",
                               "html": "<p>Hi {{ contact.first_name }}, any news?</p>"})
    saved(inbox, "snippets", {"name": "Opening hours", "shortcut": "hours", "inbox_id": support,
                              "html": '<p>We are open <b>9 to 5</b>, see <a href="https://example.com/hours">hours</a>.</p>'})
    web.sign_in(page, inbox.web_url)

    # Compose: a template fills Subject and the message
    page.get_by_role("button", name="Compose").click()
    panel = page.get_by_role("dialog", name="Compose")
    panel.get_by_label("To", exact=True).fill("erin@example.com")
    panel.get_by_role("button", name="Insert", exact=True).click()
    # templates are offered per inbox: those of the From's inbox (Billing has none)
    panel.get_by_label("From", exact=True).select_option(label="Billing <billing@mailroom.test> (Billing)")
    expect(panel.get_by_label("Template")).to_have_text("No templates")
    expect(panel.get_by_role("button", name="Use template")).to_be_disabled()
    panel.get_by_label("From", exact=True).select_option(label="Support Team <support@mailroom.test> (Support)")
    panel.get_by_label("Template").select_option(label="Quote sent")
    panel.get_by_role("button", name="Use template").click()
    expect(panel.get_by_label("Subject")).to_have_value("Your quote from Support")
    message = panel.get_by_role("textbox", name="Message")
    expect(message).to_contain_text("Hello from the Support team.")
    no_serious_violations(web, page, "the Insert panel")
    web.screenshot(page, "insert")

    # a snippet goes where the cursor was: between "Before " and "after"
    message.get_by_text("Before after").click()
    page.keyboard.press("End")
    for _ in range(len("after")):
        page.keyboard.press("ArrowLeft")
    expect(panel.get_by_label("Snippet")).to_contain_text("Opening hours (/hours)")
    panel.get_by_label("Snippet").select_option(label="Opening hours (/hours)")
    panel.get_by_role("button", name="Use snippet").click()
    expect(message).to_contain_text("We are open 9 to 5")
    text = message.inner_text()
    assert text.index("Before") < text.index("We are open 9 to 5") < text.index("after"), text
    expect(message.get_by_role("link", name="hours")).to_have_attribute("href", "https://example.com/hours")

    # an image into the message (at the end), then an emoji from the keyboard
    message.press("Control+End")
    with page.expect_file_chooser() as chooser:
        panel.get_by_role("button", name="Insert image").click()
    chooser.value.set_files(files=[{"name": "pixel.png", "mimeType": "image/png", "buffer": PNG}])
    expect(message.locator("img[alt='pixel.png']")).to_have_attribute("src", re.compile("^blob:"))
    emoji = panel.get_by_role("button", name="Emoji")
    emoji.focus()
    page.keyboard.press("Enter")
    menu = page.get_by_role("menu", name="Emoji")
    expect(menu).to_be_visible()
    expect(menu.get_by_role("menuitem").first).to_be_focused()
    no_serious_violations(web, page, "the emoji picker")
    web.screenshot(page, "emoji")
    for _ in range(6):
        page.keyboard.press("ArrowDown")
    expect(menu.get_by_role("menuitem", name="Party popper")).to_be_focused()
    page.keyboard.press("Enter")
    expect(menu).to_be_hidden()
    expect(message).to_contain_text("🎉")
    panel.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_contain_text("Email queued")

    [delivered] = inbox.eventually(lambda: inbox.sink.with_subject("Your quote from Support"), timeout=30)
    mail = delivered["message"]
    html = mail.get_body(("html",)).get_content()
    plain = mail.get_body(("plain",)).get_content()
    assert "Hello from the Support team." in plain and "We are open" in plain and "🎉" in plain
    [cid] = re.findall(r'src="cid:([^"]+)"', html)
    [image] = [part for part in mail.walk() if part.get_content_type() == "image/png"]
    assert image["Content-ID"] == f"<{cid}>" and image.get_content() == PNG
    assert "blob:" not in html and "data-cid" not in html

    # Reply: a template fills the message with the contact's tokens (a reply keeps its subject)
    raw, _ = web.customer_mail(subject="Any update?", sender="Ada Customer <ada@example.com>")
    web.deliver(inbox, raw)
    page.get_by_role("region", name="Support").get_by_role("link", name=re.compile("^Open")).click()
    row = page.get_by_role("list", name=re.compile("Support")).get_by_role("button").filter(has_text="Any update?")
    expect(row).to_be_visible(timeout=30_000)
    row.click()
    expect(page.get_by_role("region", name="Conversation").get_by_role("heading", name="Any update?")).to_be_visible()
    page.get_by_role("button", name="Reply").click()
    reply = page.get_by_role("form", name="Reply")
    reply.get_by_role("button", name="Insert", exact=True).click()
    reply.get_by_label("Template").select_option(label="Follow-up")
    reply.get_by_role("button", name="Use template").click()
    expect(reply.get_by_role("textbox", name="Message")).to_contain_text("Hi Ada, any news?")
    expect(page.get_by_role("status")).to_contain_text("a reply keeps its subject")
    reply.get_by_role("button", name="Send").click()
    [answered] = inbox.eventually(lambda: inbox.sink.with_subject("Re: Any update?"), timeout=30)
    assert "Hi Ada, any news?" in answered["message"].get_body(("plain",)).get_content()
    assert not page.errors, page.errors


def test_saved_html_enters_the_editor_as_formatting_only(page, inbox, web):
    """A snippet's HTML is copied element by element (no innerHTML): whatever outbound lets through,
    no script, handler, frame or image from it reaches the app's page."""
    support = inbox.inbox_ids["support"]
    saved(inbox, "snippets", {"name": "Odd", "inbox_id": support, "html":
                              '<p onclick="window.__pwned=1">Plain <i>words</i></p><img src="https://evil.example/x.png">'
                              '<a href="javascript:window.__pwned=2">bad link</a>'
                              '<a href="mailto:a@example.com">mail</a>'})
    web.sign_in(page, inbox.web_url)
    page.get_by_role("button", name="Compose").click()
    panel = page.get_by_role("dialog", name="Compose")
    panel.get_by_label("From", exact=True).select_option(label="Support Team <support@mailroom.test> (Support)")
    panel.get_by_role("button", name="Insert", exact=True).click()
    panel.get_by_label("Snippet").select_option(label="Odd")
    panel.get_by_role("button", name="Use snippet").click()
    message = panel.get_by_role("textbox", name="Message")
    expect(message).to_contain_text("Plain words")
    message.get_by_text("Plain").click()
    assert message.locator("img, script, iframe, [onclick]").count() == 0
    assert message.locator("a[href^='javascript']").count() == 0
    expect(message.get_by_role("link", name="mail")).to_have_attribute("href", "mailto:a@example.com")
    assert page.evaluate("window.__pwned") is None
    assert not page.errors, page.errors
