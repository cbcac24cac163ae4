"""Outbound's rules in plain Python: recipients, subjects, thread headers, header safety, MIME,
templates and bodies. No servers."""

import datetime as dt
import hashlib
from email import policy
from email.parser import BytesParser
from unittest import mock

import pytest

from outbound.domain import mime as domain_mime
from outbound.domain import recipients as domain_recipients
from outbound.domain.body import InvalidBody, compose_body, html_to_text, parse_inserts, sanitise_html
from outbound.domain.errors import InvalidEmail
from outbound.domain.headers import HeaderInjection, InvalidRecipient, Mailbox, check_header_value, mailbox
from outbound.domain.senders import choose_sender
from outbound.domain.templates import TemplateRenderError, render, token_context
from outbound.smtp_client import queue_id_from

OWN = ["support@mailroom.test", "sales@mailroom.test"]
NOW = dt.datetime(2026, 11, 25, 10, 0, tzinfo=dt.UTC)


def inbound(**overrides):
    message = {"direction": "in", "sender": {"name": "Ada", "email": "ada@example.com"},
               "attributed_to": {"name": "Ada", "email": "ada@example.com"}, "forward": None, "reply_to": [],
               "to": [{"name": None, "email": "support@mailroom.test"}],
               "cc": [{"name": "Bob", "email": "bob@example.com"}]}
    message.update(overrides)
    return message


def emails(boxes):
    return [b.email for b in boxes]


# --- recipients ------------------------------------------------------------------------------------

def test_reply_goes_to_the_sender_and_reply_all_copies_the_others_but_never_us():
    plain = domain_recipients.default_reply_recipients(inbound(), OWN, reply_all=False)
    assert emails(plain.to) == ["ada@example.com"] and plain.cc == []
    everyone = domain_recipients.default_reply_recipients(inbound(), OWN, reply_all=True)
    assert emails(everyone.to) == ["ada@example.com"] and emails(everyone.cc) == ["bob@example.com"]


def test_reply_to_a_suppliers_message_never_copies_the_customer_in():
    # chatwoot/utils#69: the conversation's contact is Ada, but this message came from a supplier
    supplier = inbound(sender={"name": "Supplier", "email": "orders@supplier.example"},
                       attributed_to={"name": "Supplier", "email": "orders@supplier.example"},
                       to=[{"email": "support@mailroom.test"}], cc=[])
    for reply_all in (False, True):
        result = domain_recipients.default_reply_recipients(supplier, OWN, reply_all=reply_all)
        assert emails(result.to + result.cc) == ["orders@supplier.example"]


def test_reply_to_an_attributed_forward_goes_to_the_original_sender():
    forwarded = inbound(sender={"name": "Agent", "email": "agent@mailroom.test"},
                        attributed_to={"name": "Carol", "email": "carol@example.com"},
                        forward={"trusted": True, "original_sender": {"email": "carol@example.com"}}, cc=[])
    assert emails(domain_recipients.default_reply_recipients(forwarded, OWN, reply_all=False).to) == \
        ["carol@example.com"]
    untrusted = inbound(sender={"name": "Eve", "email": "eve@example.com"},
                        attributed_to={"name": "Eve", "email": "eve@example.com"},
                        forward={"trusted": False}, cc=[])
    assert emails(domain_recipients.default_reply_recipients(untrusted, OWN, reply_all=False).to) == \
        ["eve@example.com"]


def test_reply_honours_reply_to_and_a_follow_up_to_our_own_message_goes_to_its_recipients():
    with_reply_to = inbound(reply_to=[{"name": "Desk", "email": "desk@example.com"}])
    assert emails(domain_recipients.default_reply_recipients(with_reply_to, OWN, reply_all=False).to) == \
        ["desk@example.com"]
    ours = {"direction": "out", "sender": {"email": "support@mailroom.test"},
            "to": [{"email": "ada@example.com"}], "cc": [{"email": "bob@example.com"}]}
    result = domain_recipients.default_reply_recipients(ours, OWN, reply_all=True)
    assert emails(result.to) == ["ada@example.com"] and emails(result.cc) == ["bob@example.com"]


def test_an_address_appears_once_to_before_cc_before_bcc():
    a, b = Mailbox("a@example.com"), Mailbox("b@example.com")
    to, cc, bcc = domain_recipients.final_recipients([a], [a, b], [b, Mailbox("c@example.com")])
    assert emails(to) == ["a@example.com"] and emails(cc) == ["b@example.com"] and emails(bcc) == ["c@example.com"]


def test_subjects_and_references():
    assert domain_recipients.reply_subject("Where is my order?") == "Re: Where is my order?"
    assert domain_recipients.reply_subject("RE: Where") == "RE: Where"
    assert domain_recipients.forward_subject("Re: Where") == "Fwd: Re: Where"
    assert domain_recipients.base_subject("Re: Fwd: AW: Where") == "Where"
    refs = domain_recipients.thread_references([f"<r{i}@x>" for i in range(30)], [], "<last@x>")
    assert len(refs) == domain_recipients.MAX_REFERENCES
    assert refs[0] == "r0@x" and refs[-1] == "last@x" and refs[-2] == "r29@x"
    assert domain_recipients.thread_references([], ["<p@x>"], "m@x") == ["p@x", "m@x"]


# --- header safety ----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    "hello\r\nBcc: victim@example.com", "hello\nX-Injected: 1", "nul\x00byte", "line\u2028separator",
    "hi=?UTF-8?Q?=0A?=Bcc: injected@example.com", "=?utf-8?b?aGkKQmNjOiB4QHkuY29t?=",
])
def test_header_values_with_line_breaks_are_refused_even_encoded(value):
    with pytest.raises(HeaderInjection):
        check_header_value("subject", value)


def test_addresses_are_validated_one_by_one():
    assert mailbox("to", {"email": "Ada@Example.COM", "name": "Ada Lovelace"}) == \
        Mailbox("ada@example.com", "Ada Lovelace")
    for bad in ("a@b.com, c@d.com", "Ada <ada@example.com>", "ada@example.com\r\nBcc: x@y.z", "no-at-sign", ""):
        with pytest.raises((InvalidRecipient, HeaderInjection)):
            mailbox("to", bad)
    with pytest.raises(HeaderInjection):
        mailbox("to", {"email": "ada@example.com", "name": "Ada\nBcc: x@y.z"})


def test_a_malformed_from_is_an_invalid_email_naming_the_field_never_a_crash():
    inbox = {"identities": [{"email": "support@mailroom.test", "name": "Support"}]}
    for bad in ("not an address", "a@b.com, c@d.com", {"email": None}, 42, "support@mailroom.test\r\nBcc: x@y.z",
                {"email": "support@mailroom.test", "name": "S\nBcc: x@y.z"}):
        with pytest.raises(InvalidEmail) as error:
            choose_sender(inbox, bad, None)
        assert error.value.field.startswith("from"), bad
    assert choose_sender(inbox, {"email": "Support@Mailroom.test", "name": "Ada"}, None) == \
        Mailbox("support@mailroom.test", "Ada")


def outgoing(**overrides):
    values = {"message_id": "abc@mailroom.test", "sender": Mailbox("support@mailroom.test", "Süpport Téam"),
              "to": [Mailbox("ada@example.com", "Ada Łovelace")], "cc": [Mailbox("bob@example.com")],
              "subject": "Réponse: ça va? 😀", "text": "Hello 😀\n", "html": "<p>Hello 😀</p>", "date": NOW}
    values.update(overrides)
    return domain_mime.Outgoing(**values)


def parse(raw: bytes):
    return BytesParser(policy=policy.default).parsebytes(raw)


def test_built_message_has_rfc2047_names_and_subject_rfc2231_filenames_and_no_bcc():
    pdf = b"%PDF-1.4 " + bytes(range(256)) * 10
    raw = domain_mime.build(outgoing(
        reply_to=[Mailbox("support+tok@mailroom.test", "Süpport Téam")], in_reply_to="orig@example.com",
        references=["root@example.com", "orig@example.com"], thread_topic="ça va?", thread_index="AQID",
        parts=[domain_mime.Part("résumé 2026.pdf", "application/pdf", pdf),
               domain_mime.Part("logo.png", "image/png", b"\x89PNG\r\n", inline=True, content_id="logo")],
        html='<p>Hello <img src="cid:logo"></p>'))
    assert raw.isascii() and b"\r\n" in raw
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    assert "=?utf-8?" in head and "Bcc" not in head and "Auto-Submitted" not in head
    message = parse(raw)
    assert str(message["Subject"]) == "Réponse: ça va? 😀"
    assert message["From"].addresses[0].display_name == "Süpport Téam"
    assert message["In-Reply-To"] == "<orig@example.com>"
    assert message["References"] == "<root@example.com> <orig@example.com>"
    assert message["Message-ID"] == "<abc@mailroom.test>" and message["X-Mailroom-Origin"]
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "résumé 2026.pdf" and "filename*=" in raw.decode()
    assert hashlib.sha256(attachment.get_content()).digest() == hashlib.sha256(pdf).digest()
    assert message.get_body(("plain",)).get_content().splitlines() == ["Hello 😀"]


def test_automatic_mail_says_so_and_human_mail_does_not():
    assert parse(domain_mime.build(outgoing(automatic=True)))["Auto-Submitted"] == "auto-generated"
    assert parse(domain_mime.build(outgoing()))["Auto-Submitted"] is None


def test_reparsing_catches_an_injection_that_slipped_past_validation():
    # Python 3.11.7 (CVE-2024-6923) serialises a real Bcc: line from this subject; the check of the
    # re-parsed header set refuses to hand such bytes to the relay.
    with mock.patch.object(domain_mime, "check_header_value", lambda *a, **k: None), \
            pytest.raises(ValueError, match="header set differs"):
        domain_mime.build(outgoing(subject="hi=?UTF-8?Q?=0A?=Bcc: injected@example.com"))


@pytest.mark.parametrize(("change", "refusal"), [
    (lambda raw: raw.replace(b"Message-ID: <abc@", b"Message-ID: <abd@"), "Message-ID differs"),
    (lambda raw: raw.replace(b"ada@example.com", b"eve@example.com", 1), "recipients differ"),
    (lambda raw: raw.replace(b"bob@example.com", b"bob@example.com, eve@example.com", 1), "recipients differ"),
    (lambda raw: raw.replace(b"<support@mailroom.test>", b"<s@mailroom.test>", 1), "From differs"),
    (lambda raw: raw.replace(b"Subject: =?utf-8?b?UsOp", b"Subject: =?utf-8?b?TsOp", 1), "Subject did not survive"),
    (lambda raw: raw.replace(b"Subject: ", b"Subject: \xc3\xa7a ", 1), "not 7-bit"),
    (lambda raw: raw.replace(b"\r\nContent-Transfer-Encoding:", b"\r\nX-Injected: 1\r\nContent-Transfer-Encoding:", 1),
     "unexpected MIME part headers"),
])
def test_the_reparsed_message_must_say_exactly_what_was_intended(change, refusal):
    """verify() reads the message's structure leniently and the checked headers strictly: each
    difference a receiver would see is refused, the encoded-word Subject and names decoded."""
    built = outgoing()
    raw = domain_mime.build(built)
    intended = [name.lower() for name in parse(raw)]
    domain_mime.verify(raw, built, intended)  # as built: accepted
    changed = change(raw)
    assert changed != raw
    with pytest.raises(ValueError, match=refusal):
        domain_mime.verify(changed, built, intended)


def test_thread_index_shares_the_conversation_part():
    first = domain_mime.thread_index("conv-1", NOW, NOW, False)
    reply = domain_mime.thread_index("conv-1", NOW, NOW + dt.timedelta(hours=1), True)
    import base64
    assert len(base64.b64decode(first)) == 22 and len(base64.b64decode(reply)) == 27
    assert base64.b64decode(reply)[:22] == base64.b64decode(first)


# --- body and templates -----------------------------------------------------------------------------

def test_html_is_sanitised_and_gets_a_text_alternative():
    clean = sanitise_html('<p onclick="x()">Hi <script>alert(1)</script><a href="javascript:x">bad</a>'
                          '<a href="https://ok.example">ok</a><img src="cid:a"></p>')
    assert "script" not in clean and "onclick" not in clean and "javascript" not in clean and "cid:a" in clean
    assert html_to_text("<p>Hi <b>Ada</b></p><p>See <a href='https://x.example/doc'>the doc</a></p>") == \
        "Hi Ada\n\nSee the doc (https://x.example/doc)\n"
    body = compose_body(html="<p>Hi</p>", text=None, inserts=parse_inserts(
        [{"kind": "meeting", "url": "https://meet.example/abc", "title": "Our call"}]))
    assert "Meeting: Our call (https://meet.example/abc)" in body.text and "meet.example" in body.html
    with pytest.raises(InvalidBody):
        parse_inserts([{"kind": "video", "url": "javascript:alert(1)"}])
    with pytest.raises(InvalidBody):
        compose_body(html=None, text=None, inserts=[])


def test_templates_render_tokens_in_a_sandbox_and_missing_tokens_are_clear():
    context = token_context(contact={"name": "Ada <b>Lovelace</b>", "email": "ada@example.com"},
                            conversation={"id": "c1", "subject": "Order #42"})
    assert render("Hi {{ contact.first_name }}: {{ conversation.subject }}", context, html=True) == \
        "Hi Ada: Order #42"
    assert "&lt;b&gt;" in render("{{ contact.name }}", context, html=True)
    with pytest.raises(TemplateRenderError) as error:
        render("Hi {{ contact.phone }}", context)
    assert error.value.missing == ["contact.phone"]
    assert render("Hi {{ contact.phone }}!", context, on_missing="empty") == "Hi !"
    with pytest.raises(TemplateRenderError, match="unsafe"):
        render("{{ contact.email.__class__.__mro__ }}", context)


def test_queue_id_is_read_from_the_data_response():
    assert queue_id_from("2.0.0 Ok: queued as 4XyZ12") == "4XyZ12"
    assert queue_id_from("OK id=1vABC-0001") == "1vABC-0001"
