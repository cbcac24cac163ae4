"""Connector signatures, sealed secrets, target checks (signed_webhooks) and chat identities."""

import datetime as dt
import time

import pytest
from cryptography.fernet import Fernet

from mailroom_shared import identities, safe_http, signed_webhooks
from mailroom_shared.safe_http import TargetRefused
from mailroom_shared.signed_webhooks import BadSignature, SecretBox, SecretBoxUnavailable

OUTSIDE = signed_webhooks.TOLERANCE_SECONDS + 60


def test_a_signature_verifies_only_for_the_same_secret_body_and_a_recent_time():
    secret = signed_webhooks.new_secret()
    assert secret.startswith("whsec_")
    now = int(time.time())
    headers = signed_webhooks.sign(secret, "msg_1", now, '{"a":1}')
    assert signed_webhooks.verify(secret, b'{"a":1}', headers) == "msg_1"
    for secret_, body, headers_ in (
            (signed_webhooks.new_secret(), b'{"a":1}', headers), (secret, b'{"a":2}', headers),
            # a minute outside the tolerance: one second past its edge failed on a loaded CI machine,
            # where a second went by between `now` (truncated) and the verification
            (secret, b'{"a":1}', signed_webhooks.sign(secret, "msg_1", now - OUTSIDE, '{"a":1}')),
            (secret, b'{"a":1}', signed_webhooks.sign(secret, "msg_1", now + OUTSIDE, '{"a":1}')),
            (secret, b'{"a":1}', {**headers, "webhook-signature": "garbage"}),
            (secret, b'{"a":1}', {**headers, "webhook-timestamp": "soon"}),
            (secret, b'{"a":1}', {k: v for k, v in headers.items() if k != "webhook-id"})):
        with pytest.raises(BadSignature):
            signed_webhooks.verify(secret_, body, headers_)
    # a body that is not JSON still verifies: parsing it is the caller's job (400, not 401)
    raw = signed_webhooks.sign(secret, "msg_2", now, "{not json")
    assert signed_webhooks.verify(secret, b"{not json", raw) == "msg_2"
    assert dt.datetime.fromtimestamp(int(headers["webhook-timestamp"]), dt.UTC)


def test_sealed_secrets_open_only_with_their_key():
    key = Fernet.generate_key().decode()
    sealed = SecretBox(key, "K").seal("whsec_x")
    assert "whsec_x" not in sealed and SecretBox(key, "K").open(sealed) == "whsec_x"
    with pytest.raises(SecretBoxUnavailable):
        SecretBox(Fernet.generate_key().decode(), "K").open(sealed)
    with pytest.raises(SecretBoxUnavailable):
        SecretBox(None, "K").seal("x")
    with pytest.raises(SecretBoxUnavailable):
        SecretBox("not a key", "K")
    assert key not in repr(SecretBox(key, "K"))


@pytest.mark.parametrize("url", ["http://127.0.0.1/x", "http://10.0.0.5/x", "http://192.168.1.1/x",
                                 "http://169.254.169.254/latest", "http://[::1]/x", "http://[fe80::1]/x",
                                 "http://0.0.0.0/x", "http://[::ffff:127.0.0.1]/x", "http://localhost/x"])
def test_private_loopback_and_link_local_targets_are_refused_unless_allowed(url):
    with pytest.raises(TargetRefused):
        safe_http.checked_target(url, allow_private=False)


def test_urls_that_are_no_http_targets_are_refused_even_when_private_is_allowed():
    for url in ("ftp://example.com/x", "http://user:pw@127.0.0.1/x", "/relative", "", "http://" + "a" * 2000):
        with pytest.raises(TargetRefused):
            safe_http.checked_target(url, allow_private=True)
    assert safe_http.checked_target("http://127.0.0.1:8080/x?y=1", allow_private=True)[0].path == "/x?y=1"


def test_a_refused_target_is_never_connected_to():
    answer = safe_http.post("http://127.0.0.1:9/x", "{}", {}, allow_private=False)
    assert answer.status is None and answer.error.startswith("refused:")


def test_identities_are_normalised():
    assert identities.normalise_identity("phone", "+1 (415) 555-2671") == "+14155552671"
    assert identities.try_normalise_identity("phone", "555-2671") is None
    assert identities.try_normalise_identity("fax", "1") is None
    assert identities.label("phone", "+14155552671") == "phone:+14155552671"
