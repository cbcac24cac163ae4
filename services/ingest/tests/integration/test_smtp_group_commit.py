"""The SMTP listener's group commit and metrics (#16): messages whose DATA ends while a commit runs
share the next one, 250 is never answered before the message's row is committed (read back from
another connection at the moment the answer is made), a failed group transaction falls back to
one message at a time, one message's failure is its own, duplicates in one batch are stored once;
accepted/rejected/bytes/duration are counted and served on INGEST_SMTP_METRICS_PORT."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import smtplib
import sys
import threading
import urllib.error
import urllib.request
import uuid
from dataclasses import replace
from email.message import EmailMessage

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from ingest import handlers
from ingest.blobstore import DirectoryBlobStore
from ingest.models import Base, Intake
from ingest.settings import Settings
from ingest.smtp_listener import GroupCommit, IntakeHandler, ListenerHealth, _Pending, build_server, serve_http
from mailroom_shared.db import Database
from mailroom_testing.publishing import publish_event
from mailroom_testing.specs import INGEST
from mailroom_testing.stack import free_port

pytestmark = pytest.mark.integration

CHANNEL = "support@mailroom.test"
OTHER = "sales@mailroom.test"


def message(subject="Order #42 missing", message_id=None) -> bytes:
    mail = EmailMessage()
    mail["From"] = "Ada <ada@example.com>"
    mail["To"] = CHANNEL
    mail["Subject"] = subject
    mail["Message-ID"] = message_id or f"<{uuid.uuid4()}@example.com>"
    mail.set_content("Hello\n")
    return mail.as_bytes()


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def database(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'ingest.db'}")
    Base.metadata.create_all(db.engine)
    with db.transaction() as session:
        handlers.replace_inbox(session, "inbox-1", [CHANNEL, OTHER], [])
    yield db
    db.dispose()


def count(database) -> int:
    with database.transaction() as session:
        return session.execute(select(func.count()).select_from(Intake)).scalar_one()


def run_concurrently(committer: GroupCommit, raws: list[bytes], recipients=(CHANNEL,)) -> list:
    async def main():
        return await asyncio.gather(*(committer.accept(raw, list(recipients), "ada@example.com", {CHANNEL, OTHER})
                                      for raw in raws), return_exceptions=True)
    return asyncio.run(main())


def commit_together(committer: GroupCommit, raws: list[bytes]) -> list:
    """The commit stage alone: every message's blob written first, then all of them ready for
    the transaction at the same moment (what a burst of sessions looks like to it)."""
    async def main():
        loop = asyncio.get_running_loop()
        pendings = [_Pending(raw, [CHANNEL], "ada@example.com", {CHANNEL, OTHER}, loop.create_future())
                    for raw in raws]
        for pending in pendings:
            committer._prepare(pending)
        return await asyncio.gather(*(committer._commit(pending) for pending in pendings))
    return asyncio.run(main())


def test_messages_ready_together_share_one_commit(database, tmp_path):
    committer = GroupCommit(database, DirectoryBlobStore(tmp_path / "blobs"), Settings(blob_dir=tmp_path / "blobs"))
    results = commit_together(committer, [message(f"m{n}") for n in range(10)])
    assert all(len(r.intake_ids) == 1 for r in results)
    assert count(database) == 10 and committer.commits == 1

    # one alone: committed at once, alone
    [alone] = run_concurrently(committer, [message("alone")])
    assert len(alone.intake_ids) == 1 and committer.commits == 2 and count(database) == 11

    # sessions in parallel: every message stored, in at most one commit each
    results = run_concurrently(committer, [message(f"p{n}") for n in range(10)])
    assert all(len(r.intake_ids) == 1 for r in results) and count(database) == 21
    assert 2 < committer.commits <= 12


def test_the_batch_is_bounded(database, tmp_path):
    committer = GroupCommit(database, DirectoryBlobStore(tmp_path / "blobs"), Settings(blob_dir=tmp_path / "blobs"),
                            max_batch=4)
    results = commit_together(committer, [message(f"m{n}") for n in range(10)])
    assert all(len(r.intake_ids) == 1 for r in results)
    assert committer.commits == 3  # 4 + 4 + 2


def test_duplicates_in_one_batch_and_across_batches_are_stored_once(database, tmp_path):
    committer = GroupCommit(database, DirectoryBlobStore(tmp_path / "blobs"), Settings(blob_dir=tmp_path / "blobs"))
    same = message("same", message_id="<same@example.com>")
    results = run_concurrently(committer, [same, same, message("other")], recipients=(CHANNEL, OTHER))
    assert sorted(len(r.intake_ids) for r in results) == [0, 2, 2]  # the repeat: a duplicate in both channels
    assert [sorted(r.duplicates) for r in results if not r.intake_ids] == [sorted([CHANNEL, OTHER])]
    [again] = run_concurrently(committer, [same], recipients=(CHANNEL, OTHER))
    assert again.intake_ids == [] and sorted(again.duplicates) == sorted([CHANNEL, OTHER])
    assert count(database) == 4


class FailingBlobStore(DirectoryBlobStore):
    """Refuses to store a message whose bytes contain `poison`."""

    def put(self, raw: bytes) -> str:
        if b"poison" in raw:
            raise OSError("disk full")
        return super().put(raw)


def test_one_messages_failure_is_its_own_and_a_failed_transaction_falls_back_to_one_by_one(database, tmp_path,
                                                                                           monkeypatch):
    settings = Settings(blob_dir=tmp_path / "blobs", max_message_bytes=5_000)
    committer = GroupCommit(database, FailingBlobStore(tmp_path / "blobs"), settings)
    results = run_concurrently(committer, [message("ok 1"), message("poison"), message("x" * 6_000), message("ok 2")])
    assert isinstance(results[1], OSError) and isinstance(results[2], handlers.MessageTooLarge)
    assert len(results[0].intake_ids) == 1 and len(results[3].intake_ids) == 1
    assert count(database) == 2

    def broken_insert(rows):
        raise RuntimeError("the group transaction failed")

    monkeypatch.setattr(committer, "_insert", broken_insert)
    results = run_concurrently(committer, [message("fallback 1"), message("fallback 2")])
    assert all(len(r.intake_ids) == 1 for r in results)  # stored one by one instead
    assert count(database) == 4


class Listener:
    """The listener's server on an event loop of its own thread, answering from `handler`."""

    def __init__(self, handler: IntakeHandler):
        self.loop = asyncio.new_event_loop()
        self.server = self.loop.run_until_complete(
            self.loop.create_server(lambda: build_server(handler), "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_250_is_never_answered_before_the_row_is_committed_and_metrics_count_it(database, tmp_path):
    settings = replace(Settings(blob_dir=tmp_path / "blobs", smtp_limits_exempt=()), max_message_bytes=50_000)
    handler = IntakeHandler(database, DirectoryBlobStore(tmp_path / "blobs"), settings)
    reader = Database(str(database.engine.url))  # another connection pool: sees only what was committed
    seen_at_answer: list[tuple[str, int]] = []
    accepted_bytes: list[int] = []
    original = handler.handle_DATA

    async def checked_handle_DATA(server, session, envelope):  # noqa: N802
        answer = await original(server, session, envelope)
        if answer.startswith("250"):
            accepted_bytes.append(len(envelope.original_content))
        if answer.startswith("250") and "duplicate" not in answer:
            intake_id = answer.rsplit(" ", 1)[-1]
            with reader.transaction() as s:
                seen_at_answer.append((answer, s.execute(select(func.count()).select_from(Intake)
                                                         .where(Intake.id == intake_id)).scalar_one()))
        return answer

    handler.handle_DATA = checked_handle_DATA
    before = {o: sample("mailroom_smtp_messages_total", outcome=o) for o in ("accepted", "rejected", "duplicate")}
    bytes_before = sample("mailroom_smtp_received_bytes_total")
    refused_before = sample("mailroom_smtp_refused_total", reason="relay_denied")
    durations_before = sample("mailroom_smtp_store_duration_seconds_count")
    listener = Listener(handler)
    try:
        raws = [message(f"parallel {n}") for n in range(24)]
        errors = []

        def send(chunk):
            try:
                with smtplib.SMTP("127.0.0.1", listener.port, timeout=30) as client:
                    for raw in chunk:
                        client.sendmail("ada@example.com", [CHANNEL], raw)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=send, args=(raws[n::6],)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        with smtplib.SMTP("127.0.0.1", listener.port, timeout=30) as client:
            client.sendmail("ada@example.com", [CHANNEL], raws[0])  # a duplicate: 250, counted as one
            code, _ = client.docmd("RSET")
            client.mail("ada@example.com")
            assert client.rcpt("someone@elsewhere.example")[0] == 550
            client.rset()
            with pytest.raises(smtplib.SMTPDataError) as empty:
                client.sendmail("ada@example.com", [CHANNEL], b"\r\n")
            assert empty.value.smtp_code == 554
    finally:
        listener.close()
        reader.dispose()

    assert len(seen_at_answer) == 24 and all(committed == 1 for _answer, committed in seen_at_answer)
    assert count(database) == 24
    assert handler.group_commit.commits <= 24
    assert sample("mailroom_smtp_messages_total", outcome="accepted") - before["accepted"] == 24
    assert sample("mailroom_smtp_messages_total", outcome="duplicate") - before["duplicate"] == 1
    assert sample("mailroom_smtp_messages_total", outcome="rejected") - before["rejected"] == 1
    assert sample("mailroom_smtp_refused_total", reason="relay_denied") - refused_before == 1
    assert len(accepted_bytes) == 25
    assert sample("mailroom_smtp_received_bytes_total") - bytes_before == sum(accepted_bytes)
    assert sample("mailroom_smtp_store_duration_seconds_count") - durations_before == 25


def test_the_listener_process_serves_its_metrics(stack_factory):
    smtp_port, metrics_port = free_port(), free_port()
    stack = stack_factory([INGEST], extra_env={"INGEST_SMTP_PORT": str(smtp_port),
                                               "INGEST_SMTP_METRICS_PORT": str(metrics_port)})
    publish_event(stack.amqp_uri, "inbox_updated", "inbox-1", {
        "inbox_id": "inbox-1", "name": "Support", "channel_addresses": [CHANNEL], "member_emails": []})
    stack.start_process("smtp", [sys.executable, "-m", "ingest.smtp_listener"], port=smtp_port)

    def rcpt_ok():
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
            client.ehlo()
            client.mail("probe@example.com")
            return client.rcpt(CHANNEL)[0] == 250

    try:
        stack.eventually(rcpt_ok, timeout=60)
    except AssertionError:
        raise AssertionError(stack.log("smtp")[-3000:] + stack.log("ingest")[-3000:]) from None
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
        client.sendmail("ada@example.com", [CHANNEL], message("over the wire"))
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:  # noqa: S310
        body = response.read().decode()
    assert 'mailroom_smtp_messages_total{outcome="accepted"} 1.0' in body
    assert "mailroom_smtp_store_duration_seconds_count 1.0" in body
    assert "mailroom_smtp_commit_batch_messages_count 1.0" in body
    # the probes' endpoints on the same port (deploy/k8s/base/ingest/smtp.yaml)
    live = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/health/live", timeout=10).read())
    ready = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/health/ready", timeout=10).read())
    assert live["status"] == "ok"
    assert ready["status"] == "ready" and ready["listening"] and ready["database"] == "up"
    assert ready["schema"] == "current"



def test_sigterm_lets_a_session_in_data_finish_with_its_250_and_closes_idle_ones(stack_factory):
    smtp_port = free_port()
    stack = stack_factory([INGEST], extra_env={"INGEST_SMTP_PORT": str(smtp_port)})
    publish_event(stack.amqp_uri, "inbox_updated", "inbox-1", {
        "inbox_id": "inbox-1", "name": "Support", "channel_addresses": [CHANNEL], "member_emails": []})
    stack.start_process("smtp", [sys.executable, "-m", "ingest.smtp_listener"], port=smtp_port)

    def rcpt_ok():
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
            client.ehlo()
            client.mail("probe@example.com")
            return client.rcpt(CHANNEL)[0] == 250

    stack.eventually(rcpt_ok, timeout=60)
    idle = smtplib.SMTP("127.0.0.1", smtp_port, timeout=10)
    idle.ehlo()
    sending = smtplib.SMTP("127.0.0.1", smtp_port, timeout=10)
    sending.ehlo()
    sending.mail("ada@example.com")
    sending.rcpt(CHANNEL)
    assert sending.docmd("DATA")[0] == 354
    raw = message("sent across the stop").replace(b"\n", b"\r\n")
    sending.send(raw[:len(raw) // 2])
    process = stack.processes.pop("smtp")  # stopped here, on purpose
    try:
        os.killpg(process.pid, signal.SIGTERM)
        assert idle.getreply()[0] == 421  # the stop has begun: the idle session is told and closed
        sending.send(raw[len(raw) // 2:] + b".\r\n")  # raw ends with its CRLF
        code, answer = sending.getreply()
        assert code == 250, answer
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    intake_id = answer.decode().rsplit(" ", 1)[1]
    database = Database(stack.database_urls["ingest"])
    try:
        with database.transaction() as session:
            assert session.get(Intake, intake_id) is not None  # durable before its 250
    finally:
        database.dispose()
    assert "SMTP listener stopped" in stack.log("smtp")

def test_the_listener_is_live_but_not_ready_while_its_database_is_unreachable():
    """A database outage must not restart the listener (live stays 200) but takes it out of the
    Service (ready 503, naming the database); it comes back by itself when the database does."""
    unreachable = Database("postgresql+psycopg2://postgres@127.0.0.1:1/ingest?connect_timeout=2")
    health = ListenerHealth(unreachable)
    health.listening = True
    port = free_port()
    server = serve_http("127.0.0.1", port, health)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=10) as response:
            assert response.status == 200
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=10)
        assert refused.value.code == 503
        answer = json.loads(refused.value.read())
        assert answer["database"] == "down" and answer["database_error"]
        health.last_beat -= 60  # the event loop stopped turning
        with pytest.raises(urllib.error.HTTPError) as stalled:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=10)
        assert stalled.value.code == 503 and json.loads(stalled.value.read())["status"] == "stalled"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            assert b"mailroom_smtp_messages_total" in response.read()
    finally:
        server.shutdown()
        unreachable.dispose()




# ---- DATA read in blocks (IntakeSMTP.smtp_DATA): the same bytes and answers as aiosmtpd's reader ----


class RawClient:
    """A plain socket speaking SMTP, to send DATA in arbitrary pieces."""

    def __init__(self, port: int):
        import socket

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")
        self.reply()  # greeting

    def reply(self) -> str:
        lines = []
        while True:
            line = self.file.readline().decode()
            lines.append(line)
            if line[3:4] != "-":
                return "".join(lines)

    def command(self, text: str) -> str:
        self.sock.sendall(text.encode() + b"\r\n")
        return self.reply()

    def send_pieces(self, data: bytes, piece: int) -> None:
        for start in range(0, len(data), piece):
            self.sock.sendall(data[start:start + piece])
            import time

            time.sleep(0.001)  # separate TCP segments (not a timing assertion)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw_listener(database, tmp_path):
    settings = replace(Settings(blob_dir=tmp_path / "blobs", smtp_limits_exempt=()), max_message_bytes=20_000)
    handler = IntakeHandler(database, DirectoryBlobStore(tmp_path / "blobs"), settings)
    received: list[bytes] = []
    original = handler.handle_DATA

    async def recording(server, session, envelope):  # noqa: N802
        received.append(envelope.original_content)
        return await original(server, session, envelope)

    handler.handle_DATA = recording
    listener = Listener(handler)
    yield listener, received
    listener.close()


def open_transaction(client: RawClient) -> None:
    assert client.command("EHLO client.example").startswith("250")
    assert client.command("MAIL FROM:<ada@example.com>").startswith("250")
    assert client.command(f"RCPT TO:<{CHANNEL}>").startswith("250")
    assert client.command("DATA").startswith("354")


@pytest.mark.parametrize("piece", [1, 3, 7, 1000, 65536])
def test_data_in_any_pieces_is_the_same_message_with_dots_unstuffed(raw_listener, piece):
    listener, received = raw_listener
    body = (b"Subject: dots\r\nMessage-ID: <dots-%d@example.com>\r\n\r\n..leading dot\r\n.\r\nmiddle . line\r\n"
            b"...three\r\n8-bit \xc3\xa9t\xc3\xa9\r\n.." % piece)
    expected = body  # what the client meant; on the wire every line starting with "." gets one more
    client = RawClient(listener.port)
    try:
        open_transaction(client)
        stuffed = b"\r\n".join((b"." + line) if line.startswith(b".") else line for line in body.split(b"\r\n"))
        client.send_pieces(stuffed + b"\r\n.\r\n", piece)
        assert client.reply().startswith("250")
        assert client.command("QUIT").startswith("221")
    finally:
        client.close()
    assert received == [expected + b"\r\n"]


def test_empty_data_and_pipelined_commands_after_the_dot(raw_listener):
    listener, received = raw_listener
    client = RawClient(listener.port)
    try:
        open_transaction(client)
        client.sock.sendall(b".\r\n")  # nothing at all: our handler refuses it
        assert client.reply().startswith("554")
        open_transaction(client)
        # the dot, then the next transaction's first command in the same segment
        client.sock.sendall(b"Subject: a\r\nMessage-ID: <piped@example.com>\r\n\r\nbody\r\n.\r\nRSET\r\n")
        assert client.reply().startswith("250")
        assert client.reply().startswith("250")  # RSET's answer: it was not lost
        assert client.command("NOOP").startswith("250")
    finally:
        client.close()
    assert received[-1] == b"Subject: a\r\nMessage-ID: <piped@example.com>\r\n\r\nbody\r\n"


def test_too_long_line_and_too_much_data_are_refused_after_the_whole_body(raw_listener, database):
    listener, received = raw_listener
    client = RawClient(listener.port)
    try:
        open_transaction(client)
        client.send_pieces(b"Subject: long\r\n\r\n" + b"x" * 1000 + b"\r\n.\r\n", 4096)
        assert client.reply().startswith("500")
        open_transaction(client)
        client.send_pieces(b"Subject: big\r\n\r\n" + (b"y" * 70 + b"\r\n") * 2000 + b"\r\n.\r\n", 65536)
        assert client.reply().startswith("552")
        open_transaction(client)  # the session goes on
        client.sock.sendall(b"Subject: fine\r\nMessage-ID: <fine@example.com>\r\n\r\n" + b"z" * 998 + b"\r\n.\r\n")
        assert client.reply().startswith("250")
        # a line without an end, far over both limits: refused, memory bounded, the session goes on
        open_transaction(client)
        client.send_pieces(b"Subject: endless\r\n\r\n" + b"w" * 200_000 + b"\r\n.\r\n", 65536)
        assert client.reply().startswith("500")
        assert client.command("NOOP").startswith("250")
    finally:
        client.close()
    assert len(received) == 1 and count(database) == 1


def test_a_client_that_disconnects_mid_data_stores_nothing(raw_listener, database):
    listener, received = raw_listener
    client = RawClient(listener.port)
    open_transaction(client)
    client.sock.sendall(b"Subject: cut\r\n\r\npartial")
    client.close()
    with smtplib.SMTP("127.0.0.1", listener.port, timeout=10) as other:  # the listener is still serving
        assert other.noop()[0] == 250
    assert received == [] and count(database) == 0
