"""The SSRF-checked HTTP client (safe_http) against a local receiver: private targets are refused before any connection
(at delivery time too: a name that now resolves to a private address), the request goes to the
checked address with the URL's Host, and no answer within the deadline is a timeout."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mailroom_shared import safe_http


@pytest.fixture
def receiver():
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.path, self.headers["Host"], self.headers["webhook-id"], body))
            if self.path == "/slow":
                time.sleep(2)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], seen
    server.shutdown()
    server.server_close()


def post(url, **kwargs):
    options = {"allow_http": True, "allow_private": False, "connect_timeout": 1.0, "total_timeout": 1.0, **kwargs}
    return safe_http.post(url, '{"x":1}', {"webhook-id": "evt-1"}, **options)


def test_loopback_and_localhost_are_refused_without_connecting(receiver):
    port, seen = receiver
    for url in (f"http://127.0.0.1:{port}/", f"http://localhost:{port}/", f"http://[::1]:{port}/"):
        answer = post(url)
        assert answer.status is None and answer.error.startswith("refused:")
        with pytest.raises(safe_http.TargetRefused):
            safe_http.checked_target(url, allow_http=True, allow_private=False)
    assert seen == []


def test_a_name_that_resolves_to_a_private_address_at_delivery_time_is_refused(receiver, monkeypatch):
    port, seen = receiver
    monkeypatch.setattr(safe_http, "resolve", lambda host, p: ["10.0.0.7"])  # DNS rebinding
    assert post(f"http://hooks.example.com:{port}/").error == (
        "refused: hooks.example.com resolves to a private address (10.0.0.7)")
    assert seen == []


def test_the_request_goes_to_the_checked_address_with_the_urls_host(receiver, monkeypatch):
    port, seen = receiver
    monkeypatch.setattr(safe_http, "resolve", lambda host, p: ["127.0.0.1"])
    answer = post(f"http://hooks.example.com:{port}/in?x=1", allow_private=True)
    assert answer.status == 204 and answer.error is None
    assert seen == [("/in?x=1", f"hooks.example.com:{port}", "evt-1", b'{"x":1}')]


def test_no_connection_is_an_error_to_retry():
    answer = post("http://127.0.0.1:9/", allow_private=True)
    assert answer.status is None and "ConnectionRefused" in answer.error


def test_a_slow_answer_is_a_timeout(receiver):
    port, _seen = receiver
    answer = post(f"http://127.0.0.1:{port}/slow", allow_private=True, connect_timeout=0.5)
    assert answer.status is None and answer.error


def _certificate(tmp_path, host):
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_https_goes_to_the_checked_address_and_verifies_the_urls_host_name(receiver, tmp_path, monkeypatch):
    import ssl
    cert_file, key_file = _certificate(tmp_path, "hooks.example.com")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file, key_file)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        monkeypatch.setattr(safe_http, "resolve", lambda host, p: ["127.0.0.1"])
        client_context = ssl.create_default_context(cafile=str(cert_file))
        ok = post(f"https://hooks.example.com:{port}/in", allow_http=False, allow_private=True,
                  ssl_context=client_context)
        assert ok.status == 200, ok.error
        wrong = post(f"https://other.example.com:{port}/in", allow_http=False, allow_private=True,
                     ssl_context=client_context)
        assert wrong.status is None and "Hostname mismatch" in wrong.error
    finally:
        server.shutdown()
        server.server_close()
