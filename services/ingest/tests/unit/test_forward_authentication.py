"""Only an authenticated forwarder moves mail: a trusted forwarder's forward is attributed to its
original sender when a trusted Authentication-Results says dmarc=pass (or aligned dkim=pass),
when ingest verifies an aligned DKIM signature itself (a key generated here, an injected DNS
look-up), or when it was fetched over IMAP from the team's own mailbox. Otherwise it stays with
whoever sent it, and the forward is metadata (`trusted: false`) saying why."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP

import dkim
import pytest

from ingest.analyser import AnalysisJob, analyse_stored
from ingest.blobstore import DirectoryBlobStore
from ingest.domain.analysis import AnalysisSettings, analyse
from ingest.domain.authentication import (
    Authentication,
    AuthenticationPolicy,
    aligned,
    authentication_results,
    verify_dkim,
)
from mailroom_shared.events.envelope import parse_envelope

MEMBER = "agent@acme.test"
MX = "mx.acme.test"
BODY = ("Can you take this one?\n\n---------- Forwarded message ---------\n"
        "From: Dana Customer <dana@customer.example>\nDate: Mon, 3 Nov 2026 at 09:12\n"
        "Subject: Broken widget\nTo: <agent@acme.test>\n\nThe widget broke after one day.\n")
TRUSTING_MX = AnalysisSettings(authentication=AuthenticationPolicy(trusted_authserv_ids=frozenset({MX})))


def forward(sender=f"Agent <{MEMBER}>", results=()) -> bytes:
    """A member's forward; `results` are Authentication-Results values, topmost first."""
    message = EmailMessage()
    for value in results:
        message["Authentication-Results"] = value
    message["From"] = sender
    message["To"] = "support@acme.test"
    message["Subject"] = "Fwd: Broken widget"
    message["Message-ID"] = "<fwd-1@acme.test>"
    message.set_content(BODY)
    return message.as_bytes(policy=SMTP.clone(max_line_length=998))


def attributed(raw: bytes, settings: AnalysisSettings = TRUSTING_MX, **kwargs):
    analysis = analyse(raw, settings, trusted_senders=frozenset({MEMBER}), **kwargs)
    assert analysis.forward is not None and analysis.forward.original_sender.email == "dana@customer.example"
    return analysis


# --- (a) Authentication-Results ------------------------------------------------------------------

def test_a_trusted_authserv_id_saying_dmarc_pass_attributes_the_forward():
    analysis = attributed(forward(results=[f"{MX}; spf=pass smtp.mailfrom=acme.test; dkim=pass header.d=acme.test; "
                                           "dmarc=pass (p=reject) header.from=acme.test"]))
    assert analysis.attributed_to.email == "dana@customer.example" and analysis.forward_trusted
    assert analysis.explain()["forward"]["authentication"] == {
        "authenticated": True, "by": "authentication-results", "authserv_id": MX,
        "detail": "dmarc=pass header.from=acme.test"}
    assert analysis.explain()["forward"]["authenticated"] is True


def test_a_spoofed_member_from_without_any_header_stays_with_its_sender():
    analysis = attributed(forward())
    assert analysis.attributed_to.email == MEMBER and not analysis.forward_trusted
    assert analysis.forwarder_trusted  # a member's address, but nothing proves it is the member
    document = analysis.explain()["forward"]
    assert document["trusted"] is False and document["authenticated"] is False
    assert document["authentication"] == {"authenticated": False,
                                          "reason": "no Authentication-Results from a trusted authserv-id"}
    # the original sender is kept as metadata
    assert document["original_sender"]["email"] == "dana@customer.example"


def test_no_trusted_authserv_id_configured_is_said_so():
    analysis = attributed(forward(results=[f"{MX}; dmarc=pass header.from=acme.test"]), AnalysisSettings())
    assert analysis.attributed_to.email == MEMBER
    assert "INGEST_TRUSTED_AUTHSERV_IDS" in analysis.authentication.reason


def test_an_untrusted_authserv_id_proves_nothing():
    analysis = attributed(forward(results=["mx.elsewhere.example; dmarc=pass header.from=acme.test"]))
    assert analysis.attributed_to.email == MEMBER
    assert analysis.authentication.reason == "no Authentication-Results from a trusted authserv-id"


def test_a_header_above_the_trusted_one_from_another_id_cannot_claim_pass():
    # a later hop (or anything added after our MX) says pass: only our MX's verdict counts, and it failed
    raw = forward(results=["relay.partner.example; dmarc=pass header.from=acme.test",
                           f"{MX}; spf=fail smtp.mailfrom=acme.test; dmarc=fail header.from=acme.test"])
    analysis = attributed(raw)
    assert analysis.attributed_to.email == MEMBER
    assert analysis.authentication.authserv_id == MX and "dmarc=fail" in analysis.authentication.reason


def test_a_forged_trusted_header_below_the_genuine_one_is_ignored():
    # the sender wrote "mx.acme.test; dmarc=pass" into the message; our MX added its own on top
    raw = forward(results=[f"{MX}; dmarc=fail header.from=acme.test",
                           f"{MX}; dmarc=pass header.from=acme.test"])
    assert attributed(raw).attributed_to.email == MEMBER


def test_a_forged_header_from_an_untrusted_id_on_top_does_not_hide_the_genuine_pass():
    raw = forward(results=["forged.example; dmarc=fail header.from=acme.test",
                           f"{MX}; dmarc=pass header.from=acme.test"])
    assert attributed(raw).attributed_to.email == "dana@customer.example"


def test_dmarc_pass_for_another_from_domain_does_not_count():
    raw = forward(results=[f"{MX}; dmarc=pass header.from=other.example"])
    assert attributed(raw).attributed_to.email == MEMBER


@pytest.mark.parametrize(("result", "attributed_to"), [
    ("dkim=pass header.d=acme.test header.s=s1", "dana@customer.example"),
    ("dkim=pass header.d=mail.acme.test", "dana@customer.example"),  # a subdomain of the From domain
    ("dkim=pass header.i=@acme.test header.s=s1", "dana@customer.example"),  # Gmail names only i=
    ("dkim=pass header.d=acme.test.evil.example", MEMBER),  # misaligned
    ("dkim=pass header.d=evil.example", MEMBER),
    ("dkim=pass header.d=test", MEMBER),  # a top-level domain never aligns
    ("dkim=fail header.d=acme.test", MEMBER),
    ("dkim=pass header.d=acme.test header.d=evil.example", MEMBER),  # ambiguous
    ("dmarc=pass", MEMBER),  # for which domain?
])
def test_dkim_pass_counts_only_when_aligned_with_the_from_domain(result, attributed_to):
    assert attributed(forward(results=[f"{MX}; {result}"])).attributed_to.email == attributed_to


def test_authserv_ids_compare_without_case_and_with_a_version_and_comments():
    assert attributed(forward(results=["(our MX) MX.Acme.Test 1; dmarc=pass header.from=ACME.test"])
                      ).attributed_to.email == "dana@customer.example"


def test_an_unparseable_header_of_a_trusted_id_fails_closed():
    verdict = authentication_results([f"{MX}; dmarc=pass header.from=acme.test; ;;;=="], frozenset({MX}), "acme.test")
    assert verdict == Authentication(False, authserv_id=MX,
                                     reason=f"the Authentication-Results of {MX} cannot be parsed")
    # an unparseable one of another id is skipped like any other
    assert authentication_results(["garbage ;;; ==", f"{MX}; dmarc=pass header.from=acme.test"],
                                  frozenset({MX}), "acme.test").authenticated


def test_a_second_from_header_is_never_authenticated():
    raw = forward(results=[f"{MX}; dmarc=pass header.from=acme.test"])
    raw = raw.replace(b"From: Agent <agent@acme.test>\r\n",
                      b"From: Agent <agent@acme.test>\r\nFrom: Someone <someone@acme.test>\r\n", 1)
    analysis = attributed(raw)
    assert analysis.attributed_to.email == MEMBER
    assert analysis.authentication == Authentication(False, reason="the message has 2 From headers")


def test_an_untrusted_forwarder_is_not_attributed_whatever_its_authentication():
    raw = forward(sender="Mallory <mallory@elsewhere.example>",
                  results=[f"{MX}; dmarc=pass header.from=elsewhere.example"])
    analysis = analyse(raw, TRUSTING_MX, trusted_senders=frozenset({MEMBER}))
    assert analysis.attributed_to.email == "mallory@elsewhere.example"
    assert analysis.explain()["forward"]["authentication"]["reason"].startswith("not checked: the forwarder is not")


@pytest.mark.parametrize(("domain", "from_domain", "expected"), [
    ("acme.test", "acme.test", True), ("ACME.test.", "acme.TEST", True),
    ("mail.acme.test", "acme.test", True), ("acme.test", "eu.acme.test", True),
    ("eu.acme.test", "us.acme.test", False),  # siblings: would need the public-suffix list
    ("notacme.test", "acme.test", False), ("test", "acme.test", False), (None, "acme.test", False),
    ("bücher.test", "xn--bcher-kva.test", True),
])
def test_relaxed_alignment_without_a_public_suffix_list(domain, from_domain, expected):
    assert aligned(domain, from_domain) is expected


# --- (b) DKIM verified by ingest -------------------------------------------------------------------

class FakeDns:
    """An injected TXT look-up: the zone is a dict, every question is recorded."""

    def __init__(self, records: dict[bytes, bytes]):
        self.records = records
        self.asked: list[bytes] = []

    def __call__(self, name: bytes, timeout: float = 5.0) -> bytes | None:
        self.asked.append(name)
        return self.records.get(name)


def signed(raw: bytes, pem: bytes, domain: bytes = b"acme.test", **kwargs) -> bytes:
    signature = dkim.sign(raw, b"s2026", domain, pem, include_headers=[b"from", b"to", b"subject", b"message-id"],
                          **kwargs)
    return signature + raw


DKIM_ON = AnalysisSettings(authentication=AuthenticationPolicy(verify_dkim=True))


def test_a_dkim_signature_ingest_verifies_attributes_the_forward(dkim_key):
    pem, record = dkim_key
    dns = FakeDns({b"s2026._domainkey.acme.test.": record})
    analysis = attributed(signed(forward(), pem), DKIM_ON, dkim_lookup=dns)
    assert analysis.attributed_to.email == "dana@customer.example"
    assert analysis.authentication == Authentication(
        True, "dkim", detail="dkim=pass header.d=acme.test header.s=s2026 (verified by ingest)")
    assert dns.asked == [b"s2026._domainkey.acme.test."]


def test_a_dkim_signature_of_another_domain_is_not_even_looked_up(dkim_key):
    pem, record = dkim_key
    dns = FakeDns({b"s2026._domainkey.evil.example.": record})
    analysis = attributed(signed(forward(), pem, domain=b"evil.example"), DKIM_ON, dkim_lookup=dns)
    assert analysis.attributed_to.email == MEMBER and dns.asked == []
    assert "d=evil.example not aligned with acme.test" in analysis.authentication.reason


def test_a_message_changed_after_signing_does_not_verify(dkim_key):
    pem, record = dkim_key
    raw = signed(forward(), pem).replace(b"The widget broke after one day.", b"The widget broke after ten days.")
    analysis = attributed(raw, DKIM_ON, dkim_lookup=FakeDns({b"s2026._domainkey.acme.test.": record}))
    assert analysis.attributed_to.email == MEMBER and "body hash mismatch" in analysis.authentication.reason


def test_a_signature_over_part_of_the_body_is_refused(dkim_key):
    pem, record = dkim_key
    raw = signed(forward(), pem, length=True)
    analysis = attributed(raw, DKIM_ON, dkim_lookup=FakeDns({b"s2026._domainkey.acme.test.": record}))
    assert analysis.attributed_to.email == MEMBER and "(l=)" in analysis.authentication.reason


def test_no_key_in_dns_and_a_dns_failure_are_not_authenticated(dkim_key):
    pem, _ = dkim_key
    raw = signed(forward(), pem)
    assert not verify_dkim(raw, "acme.test", FakeDns({})).authenticated

    def timing_out(name, timeout=5.0):
        raise dkim.DnsTimeoutError("no answer")

    verdict = verify_dkim(raw, "acme.test", timing_out)
    assert not verdict.authenticated and "DNS look-up failed" in verdict.reason


def test_dkim_is_not_verified_unless_configured(dkim_key):
    pem, record = dkim_key
    dns = FakeDns({b"s2026._domainkey.acme.test.": record})
    analysis = attributed(signed(forward(), pem), TRUSTING_MX, dkim_lookup=dns)
    assert analysis.attributed_to.email == MEMBER and dns.asked == []


# --- (c) the team's own mailbox, and the worker's job ----------------------------------------------

def test_a_forward_fetched_from_the_teams_own_mailbox_is_authenticated():
    analysis = attributed(forward(), AnalysisSettings(), team_mailbox=True)
    assert analysis.attributed_to.email == "dana@customer.example"
    assert analysis.authentication.as_dict() == {
        "authenticated": True, "by": "imap", "detail": "fetched over IMAP from a mailbox configured as the team's own"}


def job(tmp_path, raw: bytes, via: str, team_mailbox: bool, settings: AnalysisSettings = AnalysisSettings()):
    blobs = DirectoryBlobStore(tmp_path)
    return AnalysisJob(intake_id="intake-1", channel_address="support@acme.test", via=via, reply_token=None,
                       size=len(raw), received_at="2026-11-03T09:15:00+00:00", blob_dir=str(tmp_path),
                       blob_key=blobs.put(raw), analysis=settings, trusted_senders=frozenset({MEMBER}),
                       team_mailbox=team_mailbox)


@pytest.mark.parametrize(("via", "team_mailbox", "attributed_to"), [
    ("imap", True, "dana@customer.example"),
    ("imap", False, MEMBER),  # a mailbox configured with team_mailbox: false
    ("smtp", True, MEMBER),  # only mail fetched over IMAP
])
def test_the_worker_job_carries_how_the_mail_came_in(tmp_path, via, team_mailbox, attributed_to):
    envelope = analyse_stored(job(tmp_path, forward(), via, team_mailbox))["envelope"]
    data = parse_envelope(envelope, "message_received")  # the event as consumers will read it
    assert data["attributed_to"]["email"] == attributed_to
    assert data["forward"]["trusted"] is (attributed_to != MEMBER)
    assert data["forward"]["authenticated"] is (attributed_to != MEMBER)
    assert data["forward"]["forwarded_by"]["email"] == MEMBER
    assert data["forward"]["original_sender"]["email"] == "dana@customer.example"


def test_the_event_says_which_authentication_results_decided(tmp_path):
    raw = forward(results=[f"{MX}; dmarc=pass header.from=acme.test"])
    envelope = analyse_stored(job(tmp_path, raw, "smtp", False, TRUSTING_MX))["envelope"]
    assert parse_envelope(envelope, "message_received")["forward"]["authentication"] == {
        "authenticated": True, "by": "authentication-results", "authserv_id": MX,
        "detail": "dmarc=pass header.from=acme.test", "reason": None}
