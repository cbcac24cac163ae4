"""Which recipients a DSN reports on (RFC 3464 per-recipient fields), read from real DSN bytes
through ingest's parser: failed and delayed recipients with their status, Original-Recipient
preferred, and malformed, hostile or oversized reports giving what can be read, never an error."""

from ingest.domain.bounces import MAX_BOUNCED_RECIPIENTS, bounced_recipients
from ingest.domain.parsing import parse_message


def dsn(blocks: str, report_type="message/delivery-status") -> bytes:
    return ("From: MAILER-DAEMON@mx.example.net\r\nTo: support@mailroom.test\r\nSubject: Undelivered\r\n"
            "MIME-Version: 1.0\r\n"
            'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
            "--B\r\nContent-Type: text/plain\r\n\r\nSorry.\r\n\r\n"
            f"--B\r\nContent-Type: {report_type}\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n{blocks}"
            "--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <abc@mailroom.test>\r\n\r\n--B--\r\n").encode()


def test_each_reported_recipient_with_its_action_and_status():
    found = bounced_recipients(parse_message(dsn(
        "Final-Recipient: rfc822; bob@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <bob@example.com>: no such user\r\n\r\n"
        "Original-Recipient: rfc822;Cat@Example.com\r\nFinal-Recipient: rfc822; cat.alias@example.org\r\n"
        "Action: Delayed\r\nStatus: 4.4.1\r\n\r\n")).message)
    assert found == [
        {"email": "bob@example.com", "action": "failed", "status": "5.1.1",
         "diagnostic": "smtp; 550 5.1.1 <bob@example.com>: no such user"},
        {"email": "Cat@Example.com", "action": "delayed", "status": "4.4.1", "diagnostic": None}]


def test_a_global_dsn_with_a_utf8_address_is_read():
    found = bounced_recipients(parse_message(dsn(
        "Final-Recipient: utf-8; zoë@bücher.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n",
        "message/global-delivery-status")).message)
    assert [f["email"] for f in found] == ["zoë@bücher.example"]


def test_malformed_and_hostile_reports_give_what_can_be_read():
    found = bounced_recipients(parse_message(dsn(
        "Final-Recipient: rfc822; not-an-address\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        "Final-Recipient: rfc822; a@b.example, evil@x.example\r\nAction: failed\r\n\r\n"
        "Action: failed\r\nStatus: 5.1.1\r\n\r\n"
        "Final-Recipient: rfc822; ok@example.com\r\nAction: failed\r\nStatus: 5.1.1" + "9" * 200 + "\r\n"
        "Diagnostic-Code: " + "x" * 5000 + "\r\n\r\n")).message)
    assert [f["email"] for f in found] == ["ok@example.com"]
    assert len(found[0]["status"]) <= 40 and len(found[0]["diagnostic"]) <= 500
    # not a DSN at all, or a report part with no recipient blocks
    plain = parse_message(b"From: a@b.example\r\nTo: c@d.example\r\nSubject: hi\r\n\r\nhello\r\n").message
    assert bounced_recipients(plain) == []
    assert bounced_recipients(parse_message(dsn("")).message) == []


def test_an_oversized_report_is_capped():
    blocks = "".join(f"Final-Recipient: rfc822; u{i}@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
                     for i in range(500))
    found = bounced_recipients(parse_message(dsn(blocks)).message)
    assert len(found) == MAX_BOUNCED_RECIPIENTS and found[0]["email"] == "u0@example.com"
