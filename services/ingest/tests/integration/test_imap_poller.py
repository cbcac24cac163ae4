"""IMAP poller against a real Dovecot (the `dovecot` fixture in conftest.py)."""

from __future__ import annotations

import socket
import threading

import pytest

from ingest.imap_poller import (
    AUTH_FAILED_COUNTER,
    UIDVALIDITY_RESET_COUNTER,
    UNREACHABLE_COUNTER,
    ErrorKind,
    FolderRefusedError,
    MailboxConfig,
    MailboxCursor,
    metrics,
    poll_mailbox,
)

SEEN = b"\\Seen"
DELETED = b"\\Deleted"


class InMemoryCursorStore:
    """A CursorStore whose `data` dict can be handed to a new instance to simulate a restart."""

    def __init__(self, data: dict[str, MailboxCursor] | None = None) -> None:
        self.data = {} if data is None else data
        self.saves = 0

    def load(self, mailbox_id: str) -> MailboxCursor:
        return self.data.get(mailbox_id, MailboxCursor(uidvalidity=None, last_uid=0))

    def save(self, mailbox_id: str, cursor: MailboxCursor) -> None:
        self.saves += 1
        self.data[mailbox_id] = MailboxCursor(cursor.uidvalidity, cursor.last_uid)


class Collector:
    """An `accept` callback that stores raw messages, optionally failing on the Nth call."""

    def __init__(self, fail_on_call: int | None = None) -> None:
        self.messages: list[bytes] = []
        self.calls = 0
        self.fail_on_call = fail_on_call

    def __call__(self, raw: bytes) -> None:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("blob store is down")
        self.messages.append(raw)

    @property
    def subjects(self) -> list[str]:
        return [_subject(raw) for raw in self.messages]


def make_message(subject: str, body_bytes: int = 0) -> bytes:
    body = ("x" * 76 + "\r\n") * (body_bytes // 78 + 1) if body_bytes else "hello\r\n"
    return (
        f"From: Alice <alice@example.org>\r\nTo: team@example.test\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@example.org>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
        f"\r\n{body}"
    ).encode()


def _subject(raw: bytes) -> str:
    for line in raw.split(b"\r\n"):
        if line.startswith(b"Subject: "):
            return line[len(b"Subject: "):].decode()
    return ""


def config_for(server, **overrides) -> MailboxConfig:
    options = {
        "id": "mbx-1", "host": server.host, "port": server.port, "username": server.user,
        "password": server.password, "ssl": False, "timeout": 10,
    }
    return MailboxConfig(**{**options, **overrides})


# ---- fetching exactly once ---------------------------------------------------------------------


@pytest.mark.integration
def test_first_poll_fetches_all_second_poll_fetches_none(dovecot):
    raws = [make_message(f"m{i}") for i in range(3)]
    for raw in raws:
        dovecot.deliver(raw)
    store, accept = InMemoryCursorStore(), Collector()

    first = poll_mailbox(config_for(dovecot), store, accept)

    assert (first.ok, first.reachable, first.fetched, first.oversized) == (True, True, 3, 0)
    assert accept.messages == raws  # byte for byte, oldest first
    assert store.data["mbx-1"] == MailboxCursor(dovecot.uidvalidity(), 3)
    assert first.uidvalidity_reset is False

    second = poll_mailbox(config_for(dovecot), store, accept)
    assert (second.ok, second.fetched) == (True, 0)
    assert len(accept.messages) == 3


@pytest.mark.integration
def test_new_mail_after_restart_is_fetched_exactly_once(dovecot):
    dovecot.deliver(make_message("before"))
    persisted: dict[str, MailboxCursor] = {}
    before_restart = Collector()
    poll_mailbox(config_for(dovecot), InMemoryCursorStore(persisted), before_restart)

    dovecot.deliver(make_message("after-1"))
    dovecot.deliver(make_message("after-2"))
    # A new process: new store object over the same persisted cursors, new IMAP connection.
    after_restart = Collector()
    result = poll_mailbox(config_for(dovecot), InMemoryCursorStore(persisted), after_restart)
    again = poll_mailbox(config_for(dovecot), InMemoryCursorStore(persisted), after_restart)

    assert before_restart.subjects == ["before"]
    assert after_restart.subjects == ["after-1", "after-2"]
    assert (result.fetched, again.fetched) == (2, 0)


@pytest.mark.integration
def test_batch_size_bounds_each_poll(dovecot):
    for i in range(5):
        dovecot.deliver(make_message(f"m{i}"))
    store, accept = InMemoryCursorStore(), Collector()
    cfg = config_for(dovecot, batch_size=2)

    results = [poll_mailbox(cfg, store, accept) for _ in range(4)]

    assert [r.fetched for r in results] == [2, 2, 1, 0]
    assert [r.has_more for r in results] == [True, True, False, False]
    assert accept.subjects == [f"m{i}" for i in range(5)]


# ---- the user's mailbox is left as it was --------------------------------------------------------


@pytest.mark.integration
def test_messages_are_not_marked_seen_by_default(dovecot):
    dovecot.deliver(make_message("unread"))

    result = poll_mailbox(config_for(dovecot), InMemoryCursorStore(), Collector())

    assert result.fetched == 1
    assert all(SEEN not in flags and DELETED not in flags for flags in dovecot.flags().values())
    assert len(dovecot.uids()) == 1


@pytest.mark.integration
def test_mark_seen_marks_accepted_messages_only(dovecot):
    first, second = dovecot.deliver(make_message("ok")), dovecot.deliver(make_message("fails"))

    cfg = config_for(dovecot, mark_seen=True)
    result = poll_mailbox(cfg, InMemoryCursorStore(), Collector(fail_on_call=2))

    flags = dovecot.flags()
    assert result.fetched == 1
    assert SEEN in flags[first]
    assert SEEN not in flags[second]  # not durably accepted → still unread on the server


@pytest.mark.integration
def test_delete_after_fetch_removes_fetched_messages(dovecot):
    for i in range(2):
        dovecot.deliver(make_message(f"m{i}"))
    store, accept = InMemoryCursorStore(), Collector()

    result = poll_mailbox(config_for(dovecot, delete_after_fetch=True), store, accept)

    assert result.fetched == 2
    assert dovecot.uids() == []
    assert accept.subjects == ["m0", "m1"]


# ---- Junk, Spam and Trash are never read --------------------------------------------------------


@pytest.mark.integration
def test_junk_folder_is_never_read(dovecot):
    dovecot.deliver(make_message("spammy"), folder="Junk")
    dovecot.deliver(make_message("french spam"), folder="Pourriel")
    dovecot.deliver(make_message("real"))
    accept = Collector()

    result = poll_mailbox(config_for(dovecot), InMemoryCursorStore(), accept)

    assert result.ok and accept.subjects == ["real"]
    for folder in ("Junk", "Pourriel"):
        assert [SEEN in flags for flags in dovecot.flags(folder).values()] == [False]


@pytest.mark.parametrize(
    "folder",
    ["Junk", "junk", "Spam", "INBOX.Spam", "INBOX/Junk", "[Gmail]/Spam", "Trash", "Deleted Items", "Bin"],
)
def test_config_for_a_junk_or_trash_folder_is_refused(folder):
    with pytest.raises(FolderRefusedError):
        MailboxConfig(id="m", host="localhost", port=993, username="u", password="p", folder=folder)


@pytest.mark.integration
def test_folder_flagged_junk_by_the_server_is_refused(dovecot):
    # "Pourriel" passes the name check, but Dovecot lists it with the \Junk SPECIAL-USE flag.
    dovecot.deliver(make_message("french spam"), folder="Pourriel")
    store, accept = InMemoryCursorStore(), Collector()

    result = poll_mailbox(config_for(dovecot, folder="Pourriel", mark_seen=True), store, accept)

    assert (result.error_kind, result.reachable, result.fetched) == (ErrorKind.FOLDER_REFUSED, True, 0)
    assert "\\Junk" in result.error
    assert accept.messages == [] and store.data == {}
    assert [SEEN in flags for flags in dovecot.flags("Pourriel").values()] == [False]


# ---- cursor safety -----------------------------------------------------------------------------


@pytest.mark.integration
def test_uidvalidity_change_restarts_from_uid_zero(dovecot):
    dovecot.deliver(make_message("m0"))
    dovecot.deliver(make_message("m1"))
    store, accept = InMemoryCursorStore(), Collector()
    poll_mailbox(config_for(dovecot), store, accept)
    resets_before = metrics.value(UIDVALIDITY_RESET_COUNTER, "mbx-1")

    dovecot.set_uidvalidity(dovecot.uidvalidity() + 1000)
    result = poll_mailbox(config_for(dovecot), store, accept)

    assert result.uidvalidity_reset is True
    assert result.fetched == 2  # everything again; the caller de-duplicates by Message-ID
    assert accept.subjects == ["m0", "m1", "m0", "m1"]
    assert store.data["mbx-1"].uidvalidity == dovecot.uidvalidity()
    assert metrics.value(UIDVALIDITY_RESET_COUNTER, "mbx-1") == resets_before + 1
    assert poll_mailbox(config_for(dovecot), store, accept).uidvalidity_reset is False


@pytest.mark.integration
def test_accept_failure_keeps_cursor_at_last_accepted_message(dovecot):
    uids = [dovecot.deliver(make_message(f"m{i}")) for i in range(4)]
    store = InMemoryCursorStore()
    failing = Collector(fail_on_call=3)  # m0, m1 stored; m2 fails

    result = poll_mailbox(config_for(dovecot), store, failing)

    assert (result.error_kind, result.reachable, result.fetched) == (ErrorKind.ACCEPT_FAILED, True, 2)
    assert "blob store is down" in result.error
    assert store.data["mbx-1"].last_uid == uids[1]
    assert result.has_more is True

    healthy = Collector()
    retry = poll_mailbox(config_for(dovecot), store, healthy)
    assert retry.ok and healthy.subjects == ["m2", "m3"]  # the rest, refetched exactly once
    assert store.data["mbx-1"].last_uid == uids[3]


@pytest.mark.integration
def test_cursor_store_failure_is_reported_not_raised(dovecot):
    dovecot.deliver(make_message("m0"))

    class BrokenStore(InMemoryCursorStore):
        def save(self, mailbox_id, cursor):
            raise OSError("database is locked")

    result = poll_mailbox(config_for(dovecot), BrokenStore(), Collector())

    assert result.error_kind == ErrorKind.CURSOR_FAILED and "database is locked" in result.error


# ---- size bound --------------------------------------------------------------------------------


@pytest.mark.integration
def test_oversized_message_is_reported_skipped_and_left_on_server(dovecot):
    dovecot.deliver(make_message("small-1"))
    big_uid = dovecot.deliver(make_message("big", body_bytes=20_000))
    dovecot.deliver(make_message("small-2"))
    store, accept, rejected = InMemoryCursorStore(), Collector(), []
    cfg = config_for(dovecot, max_message_bytes=5_000, delete_after_fetch=True)

    result = poll_mailbox(cfg, store, accept, reject_oversized=lambda uid, size: rejected.append((uid, size)))

    assert (result.ok, result.fetched, result.oversized) == (True, 2, 1)
    assert accept.subjects == ["small-1", "small-2"]
    assert len(rejected) == 1 and rejected[0][0] == big_uid and rejected[0][1] > 20_000
    assert store.data["mbx-1"].last_uid > big_uid  # the cursor moved past it
    assert dovecot.uids() == [big_uid]  # not fetched, so not deleted either
    assert SEEN not in dovecot.flags()[big_uid]

    again = poll_mailbox(cfg, store, accept, reject_oversized=lambda uid, size: rejected.append((uid, size)))
    assert (again.fetched, again.oversized, len(rejected)) == (0, 0, 1)  # reported once


# ---- unreachable, refused, timeouts --------------------------------------------------------------


@pytest.mark.integration
def test_server_down_is_reported_not_raised(dovecot):
    dovecot.deliver(make_message("m0"))
    store = InMemoryCursorStore()
    poll_mailbox(config_for(dovecot), store, Collector())
    cursor_before = store.data["mbx-1"]
    counted_before = metrics.value(UNREACHABLE_COUNTER, "mbx-1")

    dovecot.stop()
    result = poll_mailbox(config_for(dovecot), store, Collector())

    assert (result.reachable, result.error_kind, result.fetched) == (False, ErrorKind.UNREACHABLE, 0)
    assert result.error
    assert store.data["mbx-1"] == cursor_before
    assert metrics.value(UNREACHABLE_COUNTER, "mbx-1") == counted_before + 1


def test_wrong_port_is_unreachable():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = MailboxConfig(id="mbx-closed", host="127.0.0.1", port=port, username="u", password="p", ssl=False)

    result = poll_mailbox(cfg, InMemoryCursorStore(), Collector())

    assert (result.reachable, result.error_kind) == (False, ErrorKind.UNREACHABLE)


def test_server_that_never_answers_times_out():
    # Accepts the TCP connection but never sends the IMAP greeting.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        cfg = MailboxConfig(id="mbx-silent", host="127.0.0.1", port=port, username="u", password="p",
                            ssl=False, timeout=0.5)
        outcome = {}

        def poll() -> None:
            outcome["result"] = poll_mailbox(cfg, InMemoryCursorStore(), Collector())

        poller = threading.Thread(target=poll)
        poller.start()
        poller.join(timeout=10)

    assert not poller.is_alive(), "poll_mailbox did not honour its timeout"
    assert (outcome["result"].reachable, outcome["result"].error_kind) == (False, ErrorKind.UNREACHABLE)


@pytest.mark.integration
def test_wrong_password_is_reported_without_leaking_it(dovecot):
    dovecot.deliver(make_message("m0"))
    counted_before = metrics.value(AUTH_FAILED_COUNTER, "mbx-1")
    accept = Collector()

    result = poll_mailbox(config_for(dovecot, password="not-the-password"), InMemoryCursorStore(), accept)

    assert (result.reachable, result.error_kind, result.fetched) == (True, ErrorKind.AUTH_FAILED, 0)
    assert "authentication failed" in result.error.lower()
    assert "not-the-password" not in result.error
    assert "not-the-password" not in repr(config_for(dovecot, password="not-the-password"))
    assert accept.messages == []
    assert metrics.value(AUTH_FAILED_COUNTER, "mbx-1") == counted_before + 1


# ---- TLS ---------------------------------------------------------------------------------------


@pytest.mark.integration
def test_imaps_with_the_server_certificate(dovecot):
    dovecot.deliver(make_message("over tls"))
    cfg = config_for(dovecot, port=dovecot.ssl_port, ssl=True, ca_file=dovecot.ca_file)

    result = poll_mailbox(cfg, InMemoryCursorStore(), accept := Collector())

    assert result.ok and accept.subjects == ["over tls"]


@pytest.mark.integration
def test_starttls_with_the_server_certificate(dovecot):
    dovecot.deliver(make_message("upgraded"))
    cfg = config_for(dovecot, ssl=False, starttls=True, ca_file=dovecot.ca_file)

    result = poll_mailbox(cfg, InMemoryCursorStore(), accept := Collector())

    assert result.ok and accept.subjects == ["upgraded"]


@pytest.mark.integration
def test_untrusted_certificate_is_refused(dovecot):
    dovecot.deliver(make_message("must not leak"))
    cfg = config_for(dovecot, port=dovecot.ssl_port, ssl=True)  # system CAs only: self-signed fails

    result = poll_mailbox(cfg, InMemoryCursorStore(), accept := Collector())

    assert (result.reachable, result.error_kind) == (False, ErrorKind.TLS_FAILED)
    assert accept.messages == []


def test_ssl_and_starttls_together_are_refused():
    with pytest.raises(ValueError):
        MailboxConfig(id="m", host="h", port=993, username="u", password="p", ssl=True, starttls=True)
