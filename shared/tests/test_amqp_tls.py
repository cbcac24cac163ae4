"""AMQP over TLS (mailroom_shared.messaging.connection): the settings, the options reaching every
kind of connection, and real connections through TLS to the real RabbitMQ.

The local RabbitMQ is shared by every test and listens in the clear, so TLS is terminated by a
small proxy started here (a self-signed certificate, optionally requiring a client certificate)
that forwards the decrypted stream to it: the clients do a real TLS handshake, verify the
certificate and its name, and then speak AMQP to the real broker."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kombu import Connection, Exchange, Queue

from mailroom_shared.config import ConfigError, nameko_config
from mailroom_shared.messaging.connection import amqp_connection, amqp_ssl
from mailroom_shared.messaging.dead_letters import DeadLetters
from mailroom_shared.messaging.publishing import ConfirmedBatchPublisher, OutgoingMessage
from mailroom_shared.messaging.topology import declare_topology
from mailroom_testing.publishing import publish_event
from mailroom_testing.specs import INGEST
from mailroom_testing.stack import Stack, free_port
from mailroom_testing.subscriber import EventSubscriber
from mailroom_testing.tokens import TEST_ENV, admin_headers

TLS_VARIABLES = ("MAILROOM_AMQP_CA_FILE", "MAILROOM_AMQP_CERT_FILE", "MAILROOM_AMQP_KEY_FILE")


@pytest.fixture(autouse=True)
def no_tls_settings(monkeypatch):
    for name in TLS_VARIABLES:
        monkeypatch.delenv(name, raising=False)


# --- certificates -------------------------------------------------------------------------------

def issue(directory: Path, name: str, hosts: tuple[str, ...], issuer=None) -> tuple[Path, Path]:
    """A certificate for `hosts` (self-signed, or signed by `issuer`: (cert, key)) and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0] if hosts else name)])
    now = dt.datetime.now(dt.UTC)
    sans = [x509.IPAddress(ipaddress.ip_address(h)) if h[0].isdigit() else x509.DNSName(h) for h in hosts]
    issuer_cert, issuer_key = issuer if issuer else (None, key)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer_cert.subject if issuer_cert else subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    certificate = builder.sign(issuer_key, hashes.SHA256())
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def load_pair(cert_path: Path, key_path: Path):
    return (x509.load_pem_x509_certificate(cert_path.read_bytes()),
            serialization.load_pem_private_key(key_path.read_bytes(), None))


# --- a TLS front for the real broker --------------------------------------------------------------

class TlsFront:
    """Accepts TLS on a free port and forwards the plaintext to RabbitMQ's 5672."""

    def __init__(self, cert: Path, key: Path, backend: tuple[str, int], client_ca: Path | None = None):
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(cert), str(key))
        if client_ca is not None:
            self.context.verify_mode = ssl.CERT_REQUIRED
            self.context.load_verify_locations(str(client_ca))
        self.backend = backend
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.handshakes = 0
        self.refused: list[str] = []
        self.client_names: list[str] = []
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closing:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            client = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.refused.append(str(exc))
            raw.close()
            return
        self.handshakes += 1
        peer = client.getpeercert()
        if peer:
            self.client_names.append(dict(x[0] for x in peer["subject"])["commonName"])
        upstream = socket.create_connection(self.backend)
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
        self._pump(client, upstream)

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closing = True
        self.listener.close()


def tls_uri(amqp_uri: str, port: int, host: str = "localhost") -> str:
    parts = urlsplit(amqp_uri)
    return urlunsplit(("amqps", f"{parts.username}:{parts.password}@{host}:{port}", parts.path, "", ""))


@pytest.fixture
def certificates(tmp_path):
    ca = issue(tmp_path, "test-ca", ())
    broker = issue(tmp_path, "broker", ("localhost", "127.0.0.1"), issuer=load_pair(*ca))
    client = issue(tmp_path, "mailroom-client", ("mailroom-client",), issuer=load_pair(*ca))
    elsewhere = issue(tmp_path, "elsewhere", ("broker.elsewhere.test",), issuer=load_pair(*ca))
    return {"ca": ca[0], "broker": broker, "client": client, "elsewhere": elsewhere}


@pytest.fixture
def tls_broker(amqp_uri, certificates):
    parts = urlsplit(amqp_uri)
    front = TlsFront(*certificates["broker"], (parts.hostname, parts.port or 5672))
    yield front
    front.close()


def round_trip(uri: str) -> bytes:
    """Declare a queue, publish to it and read the message back, over one connection to `uri`."""
    name = f"tls-test-{uuid.uuid4().hex[:8]}"
    with amqp_connection(uri, connect_timeout=10) as connection:
        connection.ensure_connection(max_retries=1)
        with connection.SimpleQueue(name, queue_opts={"auto_delete": True},
                                    exchange_opts={"auto_delete": True}) as simple:
            simple.put({"hello": "over tls"})
            message = simple.get(timeout=10)
            message.ack()
            return message.payload


# --- settings -----------------------------------------------------------------------------------

def test_a_plain_url_has_no_tls_options():
    assert amqp_ssl("amqp://guest:guest@localhost:5672/") is None
    connection = amqp_connection("amqp://guest:guest@localhost:5672/")
    assert connection.ssl is False and connection.transport_cls in ("amqp", "pyamqp")


def test_amqps_verifies_the_broker_and_its_name(monkeypatch, certificates):
    options = amqp_ssl("amqps://svc:pw@rabbit.mailroom-rabbitmq.svc:5671/mailroom")
    assert options == {"cert_reqs": ssl.CERT_REQUIRED, "server_hostname": "rabbit.mailroom-rabbitmq.svc",
                       "tls_minimum_version": ssl.TLSVersion.TLSv1_2}
    monkeypatch.setenv("MAILROOM_AMQP_CA_FILE", str(certificates["ca"]))
    monkeypatch.setenv("MAILROOM_AMQP_CERT_FILE", str(certificates["client"][0]))
    monkeypatch.setenv("MAILROOM_AMQP_KEY_FILE", str(certificates["client"][1]))
    options = amqp_ssl("amqps://svc:pw@rabbit:5671/mailroom")
    assert options["ca_certs"] == str(certificates["ca"])
    assert (options["certfile"], options["keyfile"]) == tuple(map(str, certificates["client"]))
    # the options reach the connection kombu opens (and through it py-amqp's TLS transport)
    connection = amqp_connection("amqps://svc:pw@rabbit:5671/mailroom")
    assert connection.ssl == options and connection.port == 5671
    assert ConfirmedBatchPublisher("amqps://svc:pw@rabbit:5671/m", ssl_options=options).ssl_options == options


@pytest.mark.parametrize(("uri", "environment", "message"), [
    ("amqp://g:g@rabbit:5672/", {"MAILROOM_AMQP_CA_FILE": "ca"}, "MAILROOM_AMQP_CA_FILE set but AMQP_URI is not amqps"),
    ("amqps://g:g@rabbit/", {"MAILROOM_AMQP_CERT_FILE": "client"}, "are set together"),
    ("amqps://g:g@rabbit/", {"MAILROOM_AMQP_CA_FILE": "/nonexistent/ca.crt"}, "MAILROOM_AMQP_CA_FILE: no file at"),
    ("amqps:///mailroom", {}, "names the broker's host"),
])
def test_a_tls_setting_that_cannot_work_is_refused_by_name(monkeypatch, tmp_path, uri, environment, message):
    for name, value in environment.items():
        if not value.startswith("/"):
            (tmp_path / value).write_text("x")
            value = str(tmp_path / value)
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        amqp_ssl(uri)


def test_mailroom_service_refuses_to_start_with_tls_settings_that_cannot_work(tmp_path):
    config_path = tmp_path / "nameko.yaml"
    config_path.write_text(yaml.safe_dump({"AMQP_URI": "amqp://g:g@127.0.0.1:1/"}))
    result = subprocess.run([sys.executable, "-m", "mailroom_shared.service_process", "--config", str(config_path),
                             "contacts.service"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "MAILROOM_AMQP_CA_FILE": str(tmp_path / "ca.crt")})
    assert result.returncode == 2
    assert "MAILROOM_AMQP_CA_FILE set but AMQP_URI is not amqps://" in result.stderr


# --- real connections through TLS -------------------------------------------------------------

@pytest.mark.integration
def test_a_connection_with_the_ca_talks_to_the_broker_over_tls(monkeypatch, amqp_uri, tls_broker, certificates):
    monkeypatch.setenv("MAILROOM_AMQP_CA_FILE", str(certificates["ca"]))
    assert round_trip(tls_uri(amqp_uri, tls_broker.port)) == {"hello": "over tls"}
    assert tls_broker.handshakes == 1
    # the outbox relay's publisher: confirmed and routed over TLS
    with Connection(amqp_uri) as plain:  # the test's own, in the clear
        declare_topology(plain)
        watcher = Queue("tls-watch", Exchange("contacts.events", type="topic", durable=True),
                        routing_key="tls.test", auto_delete=True)
        with plain.SimpleQueue(watcher) as watched:
            publisher = ConfirmedBatchPublisher(tls_uri(amqp_uri, tls_broker.port), confirm_timeout=10)
            message_id = str(uuid.uuid4())
            assert publisher.publish_batch([OutgoingMessage(b'{"n": 1}', "contacts.events", "tls.test",
                                                            message_id, "mailroom.test.v1", "test")]) == (1, None)
            publisher.close()
            received = watched.get(timeout=10)
            assert received.properties["message_id"] == message_id
            received.ack()
    assert tls_broker.handshakes == 2
    # the dead-letter tools too
    assert isinstance(DeadLetters(tls_uri(amqp_uri, tls_broker.port)).counts(), dict)
    assert tls_broker.handshakes == 3


@pytest.mark.integration
def test_an_unknown_certificate_or_a_wrong_name_is_refused(monkeypatch, amqp_uri, tls_broker, certificates, tmp_path):
    # the system's CAs do not know the test CA
    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        round_trip(tls_uri(amqp_uri, tls_broker.port))
    # the right CA, but the broker is reached under a name its certificate does not carry
    parts = urlsplit(amqp_uri)
    elsewhere = TlsFront(*certificates["elsewhere"], (parts.hostname, parts.port or 5672))
    monkeypatch.setenv("MAILROOM_AMQP_CA_FILE", str(certificates["ca"]))
    try:
        with pytest.raises(Exception, match="Hostname mismatch|doesn't match|CERTIFICATE_VERIFY_FAILED"):
            round_trip(tls_uri(amqp_uri, elsewhere.port))
    finally:
        elsewhere.close()
    assert tls_broker.handshakes == 0 and elsewhere.handshakes == 0


@pytest.mark.integration
def test_a_broker_requiring_a_client_certificate_gets_the_configured_one(monkeypatch, amqp_uri, certificates):
    parts = urlsplit(amqp_uri)
    front = TlsFront(*certificates["broker"], (parts.hostname, parts.port or 5672), client_ca=certificates["ca"])
    monkeypatch.setenv("MAILROOM_AMQP_CA_FILE", str(certificates["ca"]))
    try:
        with pytest.raises(Exception):  # noqa: B017 - the handshake fails on the server's side first
            round_trip(tls_uri(amqp_uri, front.port))
        assert front.handshakes == 0 and front.refused
        monkeypatch.setenv("MAILROOM_AMQP_CERT_FILE", str(certificates["client"][0]))
        monkeypatch.setenv("MAILROOM_AMQP_KEY_FILE", str(certificates["client"][1]))
        assert round_trip(tls_uri(amqp_uri, front.port)) == {"hello": "over tls"}
        assert front.client_names == ["mailroom-client"]
    finally:
        front.close()


@pytest.mark.integration
def test_a_service_consumes_and_publishes_over_tls(amqp_uri, make_database, tmp_path, tls_broker, certificates):
    """ingest started by mailroom-service with an amqps:// URL and the CA: it learns its inbox
    from an event (its consumer, over TLS) and publishes what it accepts (its outbox relay, over
    TLS) — every connection it opens goes through the TLS front."""
    secure = tls_uri(amqp_uri, tls_broker.port)
    stack = Stack(services=[INGEST], amqp_uri=amqp_uri, database_urls={"ingest": make_database("ingest")},
                  workdir=tmp_path / "stack", default_headers=admin_headers(),
                  extra_env={**TEST_ENV, "AMQP_URI": secure, "MAILROOM_AMQP_CA_FILE": str(certificates["ca"])})
    stack.workdir.mkdir(parents=True)
    stack.migrate()
    with Connection(amqp_uri) as plain:  # the test's own, in the clear
        declare_topology(plain)
    port = stack.ports["ingest"] = free_port()
    config_path = stack.workdir / "nameko-ingest.yaml"
    config_path.write_text(yaml.safe_dump(nameko_config(secure, f"127.0.0.1:{port}")))
    try:
        stack.start_process("ingest", [sys.executable, "-m", "mailroom_shared.service_process", "--config",
                                       str(config_path), INGEST.module], port=port)
        stack.wait_for_consumers()
        channel = "support@tls.test"
        publish_event(amqp_uri, "inbox_updated", "inbox-tls", {
            "inbox_id": "inbox-tls", "name": "Support", "channel_addresses": [channel], "member_emails": []})
        raw = (b"From: Ada <ada@example.com>\r\nTo: support@tls.test\r\nSubject: over TLS\r\n"
               b"Message-ID: <" + uuid.uuid4().hex.encode() + b"@example.com>\r\n\r\nHello\r\n")
        with EventSubscriber(amqp_uri, [("ingest.events", "message_received")]) as events:
            stack.eventually(lambda: stack.request("POST", f"/api/ingest/channels/{channel}/messages",
                                                   raw=raw)[0] in (200, 202), timeout=30)
            [event] = events.wait_for("message_received", timeout=30)
        assert event["data"]["subject"] == "over TLS"
        assert tls_broker.handshakes >= 2  # its consumers and its relay at least
        assert "certificate" not in stack.log("ingest").lower() or tls_broker.refused == []
    finally:
        stack.stop()
