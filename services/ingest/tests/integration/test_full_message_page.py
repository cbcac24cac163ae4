""""View full message" across real processes (ingest, conversations; RabbitMQ, PostgreSQL): a
300 KB HTML message, whose preview is cut, opens whole as a page through the signed link the
conversation's message gives — its script gone, its remote image blocked until asked for, its
cid: image resolved to the message's signed attachment link, under a strict
Content-Security-Policy — and the raw .eml stays one click away. Expired, forged or borrowed
links answer 403."""

import time
import urllib.error
import urllib.request
import uuid
from email.message import EmailMessage

import jwt
import pytest

from mailroom_shared.auth import BLOB_TOKEN_TYPE
from mailroom_testing.specs import CONVERSATIONS, INGEST
from mailroom_testing.subscriber import EventSubscriber
from mailroom_testing.tokens import TEST_SECRET, auth

pytestmark = pytest.mark.integration

MEMBER = auth("agent-a")
OUTSIDER = auth("agent-x")
ACCOUNT_ADMIN = auth("acc-admin", roles=["account_access"])
PIXEL = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000")
END = "END-OF-THE-WHOLE-MESSAGE"


def big_mail() -> bytes:
    message = EmailMessage()
    message["From"] = "Ada <ada@example.com>"
    message["To"] = "billing@mailroom.test"
    message["Subject"] = "Quarterly report <b>Q3</b>"
    message["Message-ID"] = f"<{uuid.uuid4()}@example.com>"
    message.set_content("the report, in HTML")
    filler = "".join(f"<p>Line {n}: revenue grew in region {n % 17}, costs were flat.</p>" for n in range(5000))
    html = ('<p>Logo <img src="cid:logo@x"> tracker <img src="https://tracker.example/p.gif" alt="pixel"></p>'
            '<script>alert("pwned")</script><img src=x onerror="alert(1)"><a href="javascript:alert(2)">x</a>'
            f"{filler}<p>{END}</p>")
    assert len(html.encode()) > 300_000
    message.add_alternative(html, subtype="html")
    message.get_payload()[1].add_related(PIXEL, maintype="image", subtype="png", cid="<logo@x>", filename="logo.png")
    message.add_attachment(b"%PDF-1.4 report", maintype="application", subtype="pdf", filename="report.pdf")
    return message.as_bytes()


def fetch(stack, path, headers=None):
    """(status, headers, body) without the stack's bearer header unless given."""
    request = urllib.request.Request(stack.url(path))
    for key, value in (headers or {}).items():
        if value:
            request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def blob_token(intake_id, *, exp_offset, secret=TEST_SECRET):
    now = int(time.time())
    return jwt.encode({"typ": BLOB_TOKEN_TYPE, "intake": intake_id, "sub": "agent-a", "iat": now - 7200,
                       "exp": now + exp_offset}, secret, algorithm="HS256")


@pytest.fixture
def stack(stack_factory):
    stack = stack_factory([INGEST, CONVERSATIONS], extra_env={"CONVERSATIONS_INBOXES_FILE": ""})
    status, inbox = stack.post("/api/inboxes", {
        "name": "Billing", "channels": [{"address": "billing@mailroom.test"}],
        "members": [{"user_id": "agent-a", "email": "agent-a@mailroom.test"}], "access": {"visibility": "specific"}})
    assert status == 201, inbox
    stack.eventually(lambda: stack.get("/health/ingest")[1].get("channels") == 1, timeout=30)
    return stack


def deliver(stack, raw):
    with EventSubscriber(stack.amqp_uri, [("conversations.events", "message_added")]) as events:
        status, accepted = stack.request("POST", "/api/ingest/channels/billing@mailroom.test/messages", raw=raw)
        assert status == 202, accepted
        [added] = events.wait_for("message_added", timeout=60)
    return added["data"]


def test_the_whole_message_opens_as_a_sanitised_page_with_a_strict_policy(stack):
    added = deliver(stack, big_mail())
    status, message = stack.get(f"/api/messages/{added['message_id']}", headers=MEMBER)
    assert status == 200 and message["html_truncated"] is True and END not in message["html"]
    page_url = message["full_message_view_url"]
    assert page_url.startswith(f"/api/ingest/messages/{added['intake_id']}/view?access=")
    assert message["full_message_url"].startswith(f"/api/ingest/messages/{added['intake_id']}/raw?access=")

    status, headers, body = fetch(stack, page_url)  # no bearer: the link is the credential
    page = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "img-src 'self';" in policy and "script-src" not in policy
    assert headers["Referrer-Policy"] == "no-referrer" and headers["X-Content-Type-Options"] == "nosniff"
    assert END in page  # the whole message, not the preview
    assert "<script" not in page and "pwned" not in page and "onerror" not in page and "javascript:" not in page
    assert "tracker.example" not in page and "1 remote image blocked" in page
    assert "Quarterly report &lt;b&gt;Q3&lt;/b&gt;" in page  # headers are text, never markup
    # the cid: image points at the message's attachment, with the same signed access
    token = page_url.split("access=")[1]
    logo = next(a for a in message["attachments"] if a["filename"] == "logo.png")
    bare_logo = logo["url"].split("?")[0]
    assert f'src="{bare_logo}?access={token}"' in page
    status, _, image = fetch(stack, f"{bare_logo}?access={token}")
    assert status == 200 and image == PIXEL
    # the raw .eml stays, and the attachment is listed with its link
    status, headers, raw = fetch(stack, f"/api/ingest/messages/{added['intake_id']}/raw?access={token}")
    assert status == 200 and headers["Content-Type"] == "message/rfc822" and END.encode() in raw.replace(b"=\n", b"")
    assert f'/api/ingest/messages/{added["intake_id"]}/raw?access={token}' in page
    assert "report.pdf" in page and "application/pdf" in page

    # remote images on request: the page again with them, and a policy that lets them load
    status, headers, body = fetch(stack, f"{page_url}&images=1")
    shown = body.decode()
    assert status == 200 and "https://tracker.example/p.gif" in shown and "<script" not in shown
    assert "img-src 'self' https: http:" in headers["Content-Security-Policy"]
    assert "default-src 'none'" in headers["Content-Security-Policy"] and "Hide remote images" in shown
    # a hostile or unknown `images` value: blocked, as by default; the same request twice: the same page
    status, headers, body = fetch(stack, f"{page_url}&images=%3Cscript%3E")
    assert status == 200 and "tracker.example" not in body.decode() and "img-src 'self';" in \
        headers["Content-Security-Policy"]
    assert fetch(stack, page_url)[2] == fetch(stack, page_url)[2]


def test_expired_forged_and_borrowed_links_are_refused(stack):
    added = deliver(stack, big_mail())
    intake_id = added["intake_id"]
    page = f"/api/ingest/messages/{intake_id}/view"
    assert fetch(stack, f"{page}?access={blob_token(intake_id, exp_offset=3600)}")[0] == 200  # a good link
    expired = fetch(stack, f"{page}?access={blob_token(intake_id, exp_offset=-3600)}")
    assert expired[0] == 403 and b"expired" in expired[2]
    assert fetch(stack, f"{page}?access=forged")[0] == 403
    assert fetch(stack, f"{page}?access={blob_token(intake_id, exp_offset=3600, secret='x' * 40)}")[0] == 403
    other = str(uuid.uuid4())
    assert fetch(stack, f"/api/ingest/messages/{other}/view?access={blob_token(intake_id, exp_offset=3600)}")[0] \
        == 403  # a link for another message
    # without a link: sign in as someone who views every inbox, else 401 / 404
    assert fetch(stack, page)[0] == 401
    assert fetch(stack, page, MEMBER)[0] == 404  # members use the signed link of the message
    assert fetch(stack, page, OUTSIDER)[0] == 404
    status, _, body = fetch(stack, page, ACCOUNT_ADMIN)
    assert status == 200 and END.encode() in body and b"?access=" in body  # its own links are signed for it
    assert fetch(stack, f"/api/ingest/messages/{other}/view", ACCOUNT_ADMIN)[0] == 404
    assert fetch(stack, "/api/ingest/messages/..%2F..%2Fetc%2Fpasswd/view", ACCOUNT_ADMIN)[0] == 404
    # who may not view the inbox is never given the link
    assert stack.get(f"/api/messages/{added['message_id']}", headers=OUTSIDER)[0] == 404


def test_a_text_only_message_is_shown_as_escaped_text(stack):
    raw = (f"From: Bob <bob@example.com>\r\nTo: billing@mailroom.test\r\nSubject: plain\r\n"
           f"Message-ID: <{uuid.uuid4()}@example.com>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
           "<script>alert(1)</script> & <b>not bold</b>\r\n").encode()
    added = deliver(stack, raw)
    message = stack.get(f"/api/messages/{added['message_id']}", headers=MEMBER)[1]
    status, _, body = fetch(stack, message["full_message_view_url"])
    page = body.decode()
    assert status == 200 and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;not bold&lt;/b&gt;" in page
    assert "<script" not in page and "<b>" not in page
