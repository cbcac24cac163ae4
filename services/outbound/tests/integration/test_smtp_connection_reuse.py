"""SMTP sessions reused per relay (#16) against a real aiosmtpd relay: two emails in a row go over
one connection, a session the relay dropped is replaced without losing or doubling the email,
sessions are never shared between relays, the cap on kept sessions holds, and a session whose
state is unknown after a failure is never reused."""

from __future__ import annotations

import contextlib
import threading

import pytest
from aiosmtpd.controller import Controller

from mailroom_testing.stack import free_port
from outbound.settings import SmtpRelay
from outbound.smtp_client import ConnectionPool, deliver

pytestmark = pytest.mark.integration


class Relay:
    """aiosmtpd handler recording each accepted message with the connection (peer) it came on."""

    def __init__(self):
        self.lock = threading.Lock()
        self.messages: list[tuple[tuple, bytes, list[str]]] = []
        self.connections: set[tuple] = set()
        self.answer_data: str | None = None  # e.g. "451 try later": refuse DATA this way
        self.sessions: list = []

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
        with self.lock:
            self.connections.add(session.peer)
            self.sessions.append(server)
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        if self.answer_data:
            return self.answer_data
        with self.lock:
            self.messages.append((session.peer, envelope.content, list(envelope.rcpt_tos)))
        return "250 2.0.0 Ok: queued as Q1"

    def drop_all(self) -> None:
        """Close every client connection from the server side, as a relay's idle timeout does."""
        for server in list(self.sessions):
            with contextlib.suppress(Exception):
                server.loop.call_soon_threadsafe(server.transport.close)


@pytest.fixture
def relay():
    handler = Relay()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, server_hostname="relay.test")
    controller.start()
    try:
        yield handler, SmtpRelay(host="127.0.0.1", port=port, timeout=10)
    finally:
        controller.stop()


def wait_closed(handler: Relay) -> None:
    import time

    for _ in range(200):  # until the server has closed them (not a timed assertion: a wait for a state)
        if all(server.transport is None or server.transport.is_closing() for server in handler.sessions):
            return
        time.sleep(0.01)


def message(n: int) -> bytes:
    return f"From: a@mailroom.test\r\nTo: c@example.org\r\nSubject: reply {n}\r\n\r\nbody {n}\r\n".encode()


def test_two_replies_in_a_row_share_one_connection(relay):
    handler, smtp = relay
    pool = ConnectionPool()
    first = deliver(smtp, "a@mailroom.test", ["c@example.org"], message(1), pool=pool)
    second = deliver(smtp, "a@mailroom.test", ["d@example.org", "e@example.org"], message(2), pool=pool)
    assert (first.status, second.status) == ("sent", "sent")
    assert len(handler.messages) == 2
    assert handler.messages[0][0] == handler.messages[1][0]  # same client port: one connection
    assert len(handler.connections) == 1
    assert handler.messages[1][2] == ["d@example.org", "e@example.org"]  # no envelope carried over
    assert (pool.opened, pool.reused) == (1, 1)
    pool.close()


def test_without_a_pool_every_email_opens_its_own_connection(relay):
    handler, smtp = relay
    deliver(smtp, "a@mailroom.test", ["c@example.org"], message(1))
    deliver(smtp, "a@mailroom.test", ["c@example.org"], message(2))
    assert len(handler.connections) == 2


def test_a_connection_the_relay_dropped_is_reopened_and_the_email_sent_once(relay):
    handler, smtp = relay
    pool = ConnectionPool()
    assert deliver(smtp, "a@mailroom.test", ["c@example.org"], message(1), pool=pool).status == "sent"
    handler.drop_all()
    wait_closed(handler)

    outcome = deliver(smtp, "a@mailroom.test", ["c@example.org"], message(2), pool=pool)

    assert outcome.status == "sent"
    assert [m[1].count(b"body 2") for m in handler.messages] == [0, 1]  # exactly once
    assert len(handler.connections) == 2 and handler.messages[0][0] != handler.messages[1][0]
    assert (pool.opened, pool.reopened) == (2, 1)
    # and the new session is kept in turn
    assert deliver(smtp, "a@mailroom.test", ["c@example.org"], message(3), pool=pool).status == "sent"
    assert len(handler.connections) == 2
    pool.close()


def test_a_session_left_in_an_unknown_state_is_not_reused(relay):
    """The relay refuses DATA with a 4xx: the email is retried later (temporary) and the session,
    whose transaction ended with an answer, stays usable; a 421 closes it."""
    handler, smtp = relay
    pool = ConnectionPool()
    handler.answer_data = "451 4.3.0 try later"
    assert deliver(smtp, "a@mailroom.test", ["c@example.org"], message(1), pool=pool).status == "temporary"
    handler.answer_data = "421 4.3.2 shutting down"
    assert deliver(smtp, "a@mailroom.test", ["c@example.org"], message(2), pool=pool).status == "temporary"
    handler.answer_data = None
    assert deliver(smtp, "a@mailroom.test", ["c@example.org"], message(3), pool=pool).status == "sent"
    assert len(handler.connections) == 2  # the first two shared one; the 421 one was not reused
    assert len(handler.messages) == 1
    pool.close()


def test_sessions_are_per_relay_and_the_idle_cap_holds(relay):
    handler, smtp = relay
    other = Relay()
    port = free_port()
    controller = Controller(other, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        other_smtp = SmtpRelay(host="127.0.0.1", port=port, timeout=10)
        pool = ConnectionPool(max_idle_per_relay=1)
        deliver(smtp, "a@mailroom.test", ["c@example.org"], message(1), pool=pool)
        deliver(other_smtp, "a@mailroom.test", ["c@example.org"], message(2), pool=pool)
        deliver(smtp, "a@mailroom.test", ["c@example.org"], message(3), pool=pool)
        assert len(handler.messages) == 2 and len(other.messages) == 1
        assert len(handler.connections) == 1 and len(other.connections) == 1

        # two held at once (two senders): only one is kept afterwards, the other closed
        first, second = pool.take((smtp, None)), None
        assert first is not None and pool.take((smtp, None)) is None
        second_outcome = deliver(smtp, "a@mailroom.test", ["c@example.org"], message(4), pool=pool)
        assert second_outcome.status == "sent" and len(handler.connections) == 2
        pool.give_back((smtp, None), first)  # over the cap of 1: closed
        assert len(pool._idle[(smtp, None)]) == 1
        pool.close()
        assert second is None
    finally:
        controller.stop()


def test_an_idle_session_past_its_age_is_not_reused(relay):
    handler, smtp = relay
    now = [0.0]
    pool = ConnectionPool(max_idle_seconds=30, clock=lambda: now[0])
    deliver(smtp, "a@mailroom.test", ["c@example.org"], message(1), pool=pool)
    now[0] = 31.0
    deliver(smtp, "a@mailroom.test", ["c@example.org"], message(2), pool=pool)
    assert len(handler.connections) == 2 and pool.reused == 0
    pool.close()


def test_a_session_is_retired_after_max_messages(relay):
    handler, smtp = relay
    pool = ConnectionPool(max_messages=2)
    for n in range(5):
        assert deliver(smtp, "a@mailroom.test", ["c@example.org"], message(n), pool=pool).status == "sent"
    assert len(handler.connections) == 3  # 2 + 2 + 1
    pool.close()


def test_refused_sender_and_recipients_keep_the_session_usable(relay):
    handler, smtp = relay
    pool = ConnectionPool()
    # aiosmtpd refuses a recipient without '@' with 553: all refused → a refusal, RSET, kept
    refused = deliver(smtp, "a@mailroom.test", ["not-an-address"], message(1), pool=pool)
    assert refused.status != "sent"
    assert deliver(smtp, "a@mailroom.test", ["c@example.org"], message(2), pool=pool).status == "sent"
    assert len(handler.connections) == 1 and len(handler.messages) == 1
    pool.close()


