"""A teammate works the inbox in a real browser (Chromium): sign in, see mail arrive, reply,
compose, assign, close; an admin who is not a member only looks; hostile mail runs nothing and
loads nothing remote. Every page is checked with axe-core."""

import base64
import re

import pytest
from playwright.sync_api import expect

from mailroom_testing.tokens import auth

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not __import__("pathlib").Path("/usr/bin/chromium").exists(),
                                 reason="Debian's chromium is not installed (apt-get install chromium; "
                                        ".ci/run installs it)")]


def no_serious_violations(web, page, where):
    violations = web.axe_violations(page)
    assert not violations, f"axe on {where}: {violations}"


def conversation_button(page, subject):
    return page.get_by_role("list", name=re.compile("Support")).get_by_role("button", name=re.compile(re.escape(subject)))


def test_sign_in_see_new_mail_without_reload_and_reply_with_cc_threaded(page, inbox, web):
    page.goto(inbox.web_url)
    no_serious_violations(web, page, "the sign-in page")
    web.screenshot(page, "sign-in")
    web.sign_in(page, inbox.web_url)
    support = page.get_by_role("region", name="Support")
    support.get_by_role("link", name=re.compile("^Open")).click()
    expect(support.get_by_role("link", name=re.compile("^Open"))).to_have_attribute("aria-current", "page")
    expect(page.get_by_text("No conversations here.")).to_be_visible()

    raw, customer_id = web.customer_mail(subject="Where is my order?", cc="Bob <bob@example.com>")
    web.deliver(inbox, raw)
    # no reload: the page polls and the conversation and the count appear
    row = conversation_button(page, "Where is my order?")
    expect(row).to_be_visible(timeout=30_000)
    expect(row).to_contain_text("Ada Customer")
    expect(row).to_contain_text("my order #42 is late")
    expect(support.get_by_role("link", name=re.compile("^Open"))).to_have_text(re.compile("Open\\s*1"))
    expect(support.get_by_role("link", name=re.compile("^Unassigned"))).to_have_text(re.compile("Unassigned\\s*1"))
    no_serious_violations(web, page, "the inbox")

    page.keyboard.press("j")  # keyboard: j opens the first conversation
    conversation = page.get_by_role("region", name="Conversation")
    expect(conversation.get_by_role("heading", name="Where is my order?")).to_be_visible()
    expect(conversation.frame_locator("iframe").first.locator("body")).to_contain_text("my order #42 is late") \
        if conversation.locator("iframe").count() else expect(conversation).to_contain_text("my order #42 is late")
    web.screenshot(page, "conversation")
    no_serious_violations(web, page, "a conversation")

    page.keyboard.press("r")  # keyboard: r opens the reply editor
    reply = page.get_by_role("form", name="Reply")
    expect(reply.get_by_label("To", exact=True)).to_have_value(re.compile("ada@example.com"))
    reply.get_by_role("button", name="More").click()
    page.get_by_role("menuitem", name="Cc", exact=True).click()
    cc = reply.get_by_label("Cc", exact=True)
    cc.fill("carol@example.com")
    reply.get_by_role("textbox", name="Message").click()  # focus leaves the field: what was typed stays
    expect(cc).to_have_value("carol@example.com")
    page.keyboard.type("It ships today.")
    no_serious_violations(web, page, "the reply editor")
    web.screenshot(page, "reply")
    reply.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_contain_text("Reply queued")

    [delivered] = inbox.eventually(lambda: inbox.sink.with_subject("Re: Where is my order?"), timeout=30)
    message = delivered["message"]
    assert sorted(delivered["rcpt_tos"]) == ["ada@example.com", "carol@example.com"]
    assert [a.addr_spec for a in message["Cc"].addresses] == ["carol@example.com"]
    assert message["From"].addresses[0].addr_spec == web.SUPPORT
    assert message["In-Reply-To"] == f"<{customer_id}>" and f"<{customer_id}>" in message["References"]
    assert "It ships today." in message.get_body(("plain",)).get_content()
    # and it shows in the conversation (no reload) and in Sent
    expect(conversation.get_by_role("article", name=re.compile("Support Team"))).to_be_visible(timeout=30_000)
    support.get_by_role("link", name=re.compile("^Sent")).click()
    expect(conversation_button(page, "Where is my order?")).to_be_visible()
    page.keyboard.press("Escape")
    assert not page.dialogs and not page.errors, (page.dialogs, page.errors)
