"""Calls in a conversation, in a real browser (Chromium): a member logs a call with "Log call"; it
shows in the conversation's timeline (as text), with a `tel:` link "Call <number>" to the contact;
a call the API refuses says why and keeps the form; an admin who is not a member sees "Log call"
disabled with the reason, and the API answers 403. axe-core on the new states."""

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


def open_conversation(page, subject):
    page.get_by_role("region", name="Support").get_by_role("link", name=re.compile("^Open")).click()
    row = page.get_by_role("list", name=re.compile("Support")).get_by_role("button").filter(has_text=subject)
    expect(row).to_be_visible(timeout=30_000)
    row.click()
    conversation = page.get_by_role("region", name="Conversation")
    expect(conversation.get_by_role("heading", name=subject)).to_be_visible()
    return conversation


def test_a_member_logs_a_call_and_it_shows_with_a_tel_link_and_an_admin_cannot(page, inbox, web):
    raw, _ = web.customer_mail(subject="Please call me", sender="Ada Customer <ada@example.com>")
    web.deliver(inbox, raw)
    web.sign_in(page, inbox.web_url)
    conversation = open_conversation(page, "Please call me")
    expect(conversation.get_by_role("link", name=re.compile("^Call "))).to_have_count(0)  # no number known yet

    conversation.get_by_role("button", name="Log call").click()
    form = page.get_by_role("form", name="Log call")
    form.get_by_label("Direction").select_option(label="Outgoing")
    form.get_by_label("Phone number").fill("+44 20 7946 0958")
    form.get_by_label("Outcome").select_option(label="No answer")
    form.get_by_label("Duration (seconds)").fill("75")
    form.get_by_label("Notes").fill("<b>Left</b> a voicemail <img src=x onerror=alert(1)>")
    form.get_by_label("Recording URL").fill("http://recordings.example.com/1")  # not https: refused
    no_serious_violations(web, page, "the Log call form")
    web.screenshot(page, "log-call")
    form.get_by_role("button", name="Save call").click()
    expect(page.get_by_role("status")).to_contain_text("recording_url")
    expect(form).to_be_visible()  # kept, to correct
    form.get_by_label("Recording URL").fill("https://recordings.example.com/1")
    form.get_by_role("button", name="Save call").click()
    expect(page.get_by_role("status")).to_contain_text("Call logged.")

    call = conversation.get_by_role("complementary", name=re.compile("^Outgoing call"))
    expect(call).to_contain_text("+442079460958")
    expect(call).to_contain_text("No answer")
    expect(call).to_contain_text("1 min 15 s")
    expect(call).to_contain_text(f"logged by {web.MEMBER}")
    expect(call).to_contain_text("<b>Left</b> a voicemail <img src=x onerror=alert(1)>")  # as text
    expect(call.get_by_role("link", name="Recording")).to_have_attribute("href", "https://recordings.example.com/1")
    expect(conversation.get_by_role("link", name="Call +442079460958")).to_have_attribute("href", "tel:+442079460958")
    no_serious_violations(web, page, "a conversation with a call")
    web.screenshot(page, "call")
    conversation_id = page.locator("#conversation-list button[aria-current='true']").get_attribute("data-id")
    status, calls = inbox.get(f"/api/conversations/{conversation_id}/calls", headers=auth(web.MEMBER))
    assert status == 200 and len(calls["items"]) == 1, calls  # the refused attempt logged nothing

    # an admin who is not a member: Log call disabled with the reason; the API's 403 agrees
    page.get_by_role("button", name="Sign out").click()
    web.sign_in(page, inbox.web_url, user_id="auditor", role="account_access")
    conversation = open_conversation(page, "Please call me")
    log_call = conversation.get_by_role("button", name="Log call")
    expect(log_call).to_be_disabled()
    expect(log_call).to_have_accessible_description(re.compile("only its members can act"))
    expect(conversation.get_by_role("complementary", name=re.compile("^Outgoing call"))).to_be_visible()
    status, _ = inbox.post(f"/api/conversations/{conversation_id}/calls", {
        "direction": "inbound", "phone_number": "+442079460958", "outcome": "answered"},
        headers=auth("auditor", roles=["account_access"]))
    assert status == 403
    assert not page.errors, page.errors
