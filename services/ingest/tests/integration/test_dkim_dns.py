"""ingest's own DKIM verification through a real DNS resolver: a small authoritative DNS server
(dnspython, UDP on 127.0.0.1) serves the DKIM key generated here, INGEST_DNS_RESOLVER points the
parser worker's look-ups at it (no network beyond this machine), and a member's signed forward is
attributed while a tampered one is not."""

from __future__ import annotations

import socket
import threading
from email.message import EmailMessage
from email.policy import SMTP

import dkim
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from ingest.analyser import AnalysisJob, analyse_stored
from ingest.blobstore import DirectoryBlobStore
from ingest.dkim_dns import parse_nameserver, txt_lookup
from ingest.domain.analysis import AnalysisSettings
from ingest.domain.authentication import AuthenticationPolicy

pytestmark = pytest.mark.integration

MEMBER = "agent@acme.test"


class TinyDns:
    """Answers TXT questions from `zone` (NXDOMAIN otherwise) over UDP; counts the questions."""

    def __init__(self, zone: dict[str, bytes]):
        self.zone = {name.lower().rstrip(".") + ".": value for name, value in zone.items()}
        self.questions: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                wire, client = self.sock.recvfrom(4096)
            except OSError:
                return
            query = dns.message.from_wire(wire)
            response = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text().lower()
            self.questions.append(name)
            value = self.zone.get(name)
            if value is None or question.rdtype != dns.rdatatype.TXT:
                response.set_rcode(dns.rcode.NXDOMAIN)
            else:
                chunks = " ".join(f'"{value[i:i + 255].decode()}"' for i in range(0, len(value), 255))
                response.answer.append(dns.rrset.from_text(name, 60, "IN", "TXT", chunks))
            self.sock.sendto(response.to_wire(), client)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def nameserver(dkim_key):
    server = TinyDns({"mx2026._domainkey.acme.test": dkim_key[1]})
    yield server
    server.close()


def signed_forward(pem: bytes) -> bytes:
    message = EmailMessage()
    message["From"] = f"Agent <{MEMBER}>"
    message["To"] = "support@acme.test"
    message["Subject"] = "Fwd: Broken widget"
    message["Message-ID"] = "<fwd-dkim@acme.test>"
    message.set_content("See below.\n\n---------- Forwarded message ---------\n"
                        "From: Dana Customer <dana@customer.example>\nDate: Mon, 3 Nov 2026 at 09:12\n"
                        "Subject: Broken widget\nTo: <agent@acme.test>\n\nThe widget broke.\n")
    raw = message.as_bytes(policy=SMTP)
    return dkim.sign(raw, b"mx2026", b"acme.test", pem, include_headers=[b"from", b"to", b"subject"]) + raw


def analysed(tmp_path, raw: bytes, resolver: tuple[str, ...]) -> dict:
    blobs = DirectoryBlobStore(tmp_path)
    policy = AuthenticationPolicy(verify_dkim=True, dns_timeout=2.0)
    job = AnalysisJob(intake_id="intake-1", channel_address="support@acme.test", via="smtp", reply_token=None,
                      size=len(raw), received_at="2026-11-03T09:15:00+00:00", blob_dir=str(tmp_path),
                      blob_key=blobs.put(raw), analysis=AnalysisSettings(authentication=policy),
                      trusted_senders=frozenset({MEMBER}), dns_resolver=resolver)
    return analyse_stored(job)["envelope"]["data"]


def test_a_signed_forward_is_verified_through_the_configured_resolver(tmp_path, dkim_key, nameserver):
    data = analysed(tmp_path, signed_forward(dkim_key[0]), (f"127.0.0.1:{nameserver.port}",))
    assert data["attributed_to"]["email"] == "dana@customer.example"
    assert data["forward"]["authentication"] == {
        "authenticated": True, "by": "dkim", "authserv_id": None, "reason": None,
        "detail": "dkim=pass header.d=acme.test header.s=mx2026 (verified by ingest)"}
    assert nameserver.questions == ["mx2026._domainkey.acme.test."]


def test_a_tampered_forward_stays_with_its_sender(tmp_path, dkim_key, nameserver):
    raw = signed_forward(dkim_key[0]).replace(b"Dana Customer <dana@", b"Dana Customer <dona@")
    data = analysed(tmp_path, raw, (f"127.0.0.1:{nameserver.port}",))
    assert data["attributed_to"]["email"] == MEMBER and data["forward"]["trusted"] is False
    assert "body hash mismatch" in data["forward"]["authentication"]["reason"]


def test_a_resolver_that_does_not_answer_is_a_dns_failure_not_a_pass(tmp_path, dkim_key):
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))  # receives, never answers
    try:
        data = analysed(tmp_path, signed_forward(dkim_key[0]), (f"127.0.0.1:{silent.getsockname()[1]}",))
    finally:
        silent.close()
    assert data["attributed_to"]["email"] == MEMBER
    assert "DNS look-up failed" in data["forward"]["authentication"]["reason"]


def test_the_lookup_answers_none_for_a_name_without_a_record(nameserver):
    lookup = txt_lookup((f"127.0.0.1:{nameserver.port}",))
    assert lookup(b"nothing._domainkey.acme.test.", timeout=2) is None


@pytest.mark.parametrize(("value", "expected"), [
    ("192.0.2.53", ("192.0.2.53", 53)), ("192.0.2.53:5353", ("192.0.2.53", 5353)),
    ("2001:db8::53", ("2001:db8::53", 53)), ("[2001:db8::53]:5353", ("2001:db8::53", 5353)),
])
def test_nameserver_addresses(value, expected):
    assert parse_nameserver(value) == expected


@pytest.mark.parametrize("value", ["dns.example", "192.0.2.53:0", "[2001:db8::53]x", "192.0.2.53:port"])
def test_a_nameserver_must_be_an_address(value):
    with pytest.raises(ValueError):
        parse_nameserver(value)
