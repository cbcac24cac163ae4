"""A DSN for some recipients of our email (outbound's `email_bounced` with `recipients`): they are
listed on the message beside its delivery state, each once, whatever order the events come in."""

from conversations.domain import delivery


def test_bounced_recipients_are_listed_once_and_the_state_is_kept():
    sent = delivery.with_state(None, "sent", {"smtp_queue_id": "Q1"})
    flags = delivery.with_bounced_recipients(sent, [
        {"email": "bob@example.com", "status": "5.1.1", "reason": "550 5.1.1 unknown", "suppressed": True}])
    assert flags["delivery"]["state"] == "sent"
    assert flags["bounced_recipients"] == [
        {"email": "bob@example.com", "status": "5.1.1", "reason": "550 5.1.1 unknown", "suppressed": True}]
    assert "bounced:bob@example.com: 550 5.1.1 unknown" in flags["reasons"]
    assert any(r.startswith("delivery:sent") for r in flags["reasons"])
    # the same recipient again (a redelivered event, another DSN): nothing changes
    assert delivery.with_bounced_recipients(flags, [{"email": "BOB@example.com"}]) is None
    assert delivery.with_bounced_recipients(flags, []) is None
    # a later state keeps the list
    later = delivery.with_state(flags, "bounced", {"reason": "all"})
    assert later["bounced_recipients"] == flags["bounced_recipients"]
    assert "bounced:bob@example.com: 550 5.1.1 unknown" in later["reasons"]


def test_hostile_entries_are_cut_and_unknown_keys_dropped():
    flags = delivery.with_bounced_recipients({}, [
        {"email": "eve@example.com", "reason": "x" * 5000, "html": "<script>"}, {"email": ""}, {"status": "5.1.1"}])
    assert flags["bounced_recipients"] == [{"email": "eve@example.com", "status": None, "reason": "x" * 5000,
                                            "suppressed": None}]
    assert len(flags["reasons"][-1]) == delivery.MAX_LABEL_CHARS
