"""The SMTP listener's intake limits and STARTTLS, with a real SMTP client (smtplib) against the
real aiosmtpd server: per-client-IP connections (421 before the greeting) and messages a minute
(421 at MAIL, connection closed), the recipient cap (452), STARTTLS with a self-signed
certificate generated here (530 before it when required). The listener runs in this process on
an SQLite database for the details, and as the real `mailroom-smtp` process of a full ingest
stack (RabbitMQ, PostgreSQL) for the settings and a message that goes all the way through."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import smtplib
import socket
import ssl
import sys
import threading
import time
import uuid
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from ingest import handlers
from ingest.blobstore import DirectoryBlobStore
from ingest.models import Base, Intake
from ingest.settings import Settings
from ingest.smtp_listener import ClientLimits, IntakeHandler, build_server, tls_context
from mailroom_shared.db import Database
from mailroom_testing.publishing import publish_event
from mailroom_testing.specs import INGEST
from mailroom_testing.stack import free_port
from mailroom_testing.subscriber import EventSubscriber

pytestmark = pytest.mark.integration

CHANNEL = "support@mailroom.test"


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "smtp.crt", directory / "smtp.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def client_tls(cert_path: Path) -> ssl.SSLContext:
    """A client that verifies the server against the self-signed certificate (and its name)."""
    return ssl.create_default_context(cafile=str(cert_path))


def message(subject="Order #42 missing") -> bytes:
    mail = EmailMessage()
    mail["From"] = "Ada <ada@example.com>"
    mail["To"] = CHANNEL
    mail["Subject"] = subject
    mail["Message-ID"] = f"<{uuid.uuid4()}@example.com>"
    mail.set_content("Hello\n")
    return mail.as_bytes()


class Listener:
    """The listener's server (build_server) on an event loop of its own thread, on 127.0.0.1."""

    def __init__(self, settings: Settings, tmp_path: Path):
        self.database = Database(f"sqlite:///{tmp_path / 'ingest.db'}")
        Base.metadata.create_all(self.database.engine)
        with self.database.transaction() as session:
            handlers.replace_inbox(session, "inbox-1", [CHANNEL], [])
        self.handler = IntakeHandler(self.database, DirectoryBlobStore(tmp_path / "blobs"), settings)
        self.loop = asyncio.new_event_loop()
        tls = tls_context(settings)
        self.server = self.loop.run_until_complete(
            self.loop.create_server(lambda: build_server(self.handler, tls), "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def client(self) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.port, timeout=10)

    def stored(self) -> int:
        with self.database.transaction() as session:
            return session.execute(select(func.count()).select_from(Intake)).scalar_one()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.database.dispose()


@pytest.fixture
def listener(tmp_path):
    started = []

    def start(**overrides) -> Listener:
        settings = replace(Settings(blob_dir=tmp_path / "blobs", smtp_limits_exempt=()), **overrides)
        started.append(Listener(settings, tmp_path))
        return started[-1]

    yield start
    for one in started:
        one.close()


def test_a_client_over_its_connection_limit_gets_421_and_a_freed_slot_is_usable_again(listener):
    server = listener(smtp_max_connections_per_ip=2)
    first, second = server.client(), server.client()
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        server.client()
    assert refused.value.smtp_code == 421 and b"Too many connections" in refused.value.smtp_error
    assert first.noop()[0] == 250 and second.noop()[0] == 250  # the others are not disturbed
    first.quit()
    third = _eventually(server.client)  # the slot is released when the connection closes
    assert third.sendmail("ada@example.com", [CHANNEL], message()) == {}
    second.quit()
    third.quit()


def test_a_client_over_its_message_rate_gets_421_at_mail_and_is_disconnected(listener):
    server = listener(smtp_max_messages_per_minute_per_ip=3)
    with server.client() as client:
        for n in range(3):
            assert client.sendmail("ada@example.com", [CHANNEL], message(f"n{n}")) == {}
        code, text = client.mail("ada@example.com")
        assert code == 421 and b"Too many messages" in text
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
    with server.client() as again, pytest.raises(smtplib.SMTPSenderRefused) as refused:
        again.sendmail("ada@example.com", [CHANNEL], message("later"))  # still within the minute
    assert refused.value.smtp_code == 421
    assert server.stored() == 3


def test_exempt_clients_are_not_limited(listener):
    server = listener(smtp_max_connections_per_ip=1, smtp_max_messages_per_minute_per_ip=1,
                      smtp_limits_exempt=("127.0.0.0/8",))
    clients = [server.client() for _ in range(3)]
    for n, client in enumerate(clients):
        assert client.sendmail("ada@example.com", [CHANNEL], message(f"n{n}")) == {}
        assert client.sendmail("ada@example.com", [CHANNEL], message(f"m{n}")) == {}
        client.quit()
    assert server.stored() == 6


def test_recipients_past_the_cap_get_452(listener):
    server = listener(smtp_max_recipients=2)
    with server.client() as client:
        client.ehlo()
        assert client.mail("ada@example.com")[0] == 250
        assert [client.rcpt(CHANNEL)[0] for _ in range(3)] == [250, 250, 452]
        assert client.data(message())[0] == 250  # delivered to the accepted recipients


def test_starttls_with_the_configured_certificate_and_required_before_mail(listener, tmp_path):
    cert, key = self_signed(tmp_path)
    server = listener(smtp_tls_cert=cert, smtp_tls_key=key, smtp_require_tls=True)
    with server.client() as client:
        client.ehlo()
        assert client.has_extn("starttls")
        assert client.mail("ada@example.com")[0] == 530  # not before STARTTLS
        assert client.starttls(context=client_tls(cert))[0] == 220
        client.ehlo()
        assert client.sock.version() in ("TLSv1.2", "TLSv1.3")
        assert client.sendmail("ada@example.com", [CHANNEL], message()) == {}
    assert server.stored() == 1


def test_without_a_certificate_no_starttls_is_offered(listener):
    server = listener()
    with server.client() as client:
        client.ehlo()
        assert not client.has_extn("starttls")


def test_the_message_rate_window_slides():
    now = [1000.0]
    limits = ClientLimits(0, 2, clock=lambda: now[0])
    assert limits.message("192.0.2.1") and limits.message("192.0.2.1")
    assert not limits.message("192.0.2.1")
    assert limits.message("192.0.2.2")  # per client
    now[0] += 61
    assert limits.message("192.0.2.1")
    assert ClientLimits(1, 1, exempt=("::1", "10.0.0.0/8")).is_exempt("::ffff:10.1.2.3")


def _eventually(make, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return make()
        except smtplib.SMTPConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# --- the real listener process ---------------------------------------------------------------------

def test_the_smtp_listener_process_offers_starttls_and_limits_connections(stack_factory, tmp_path):
    cert, key = self_signed(tmp_path)
    smtp_port = free_port()
    stack = stack_factory([INGEST], extra_env={"INGEST_SMTP_PORT": str(smtp_port), "INGEST_SMTP_TLS_CERT": str(cert),
                                     "INGEST_SMTP_TLS_KEY": str(key), "INGEST_SMTP_LIMITS_EXEMPT": "",
                                     "INGEST_SMTP_MAX_CONNECTIONS_PER_IP": "2"})
    publish_event(stack.amqp_uri, "inbox_updated", "inbox-1", {
        "inbox_id": "inbox-1", "name": "Support", "channel_addresses": [CHANNEL], "member_emails": []})
    stack.start_process("smtp", [sys.executable, "-m", "ingest.smtp_listener"], port=smtp_port)

    def deliverable() -> bool:
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as probe:
            probe.ehlo()
            probe.mail("probe@example.com")
            return probe.rcpt(CHANNEL)[0] == 250

    stack.eventually(deliverable)
    with EventSubscriber(stack.amqp_uri, [("ingest.events", "message_received")]) as events:
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
            client.starttls(context=client_tls(cert))
            assert client.sendmail("ada@example.com", [CHANNEL], message("over TLS")) == {}
        [event] = events.wait_for("message_received")
    assert event["data"]["subject"] == "over TLS" and event["data"]["via"] == "smtp"

    held = [socket.create_connection(("127.0.0.1", smtp_port), timeout=10) for _ in range(2)]
    try:
        for connection in held:
            assert connection.recv(512).startswith(b"220 ")
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            smtplib.SMTP("127.0.0.1", smtp_port, timeout=10)
        assert refused.value.smtp_code == 421
    finally:
        for connection in held:
            connection.close()
