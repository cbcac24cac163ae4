"""The webhook rules without servers: Standard Webhooks signing (the reference test vector),
SSRF rules, the retry schedule, which events a subscription gets, the secret vault, settings."""

import base64
import hashlib
import hmac
import random

import pytest
from cryptography.fernet import Fernet
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from mailroom_shared import config, safe_http
from notifier import settings
from notifier.domain import retries, signing, subscriptions
from notifier.domain.vault import Vault, VaultUnavailable

# the Standard Webhooks reference libraries' test vector
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID, VECTOR_TS, VECTOR_BODY = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signature_matches_the_standard_webhooks_test_vector():
    headers = signing.headers(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY)
    assert headers == {"webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TS),
                       "webhook-signature": VECTOR_SIGNATURE}


def test_signature_is_hmac_sha256_of_id_timestamp_body_with_the_secret_bytes():
    secret = signing.new_secret()
    key = base64.b64decode(secret.removeprefix("whsec_"))
    headers = signing.headers(secret, "evt-1", 1700000000, '{"a":1}')
    expected = base64.b64encode(hmac.new(key, b'evt-1.1700000000.{"a":1}', hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"


def test_new_secrets_are_whsec_32_random_bytes_a_receiver_library_verifies_with():
    import time
    one, two = signing.new_secret(), signing.new_secret()
    assert one != two and one.startswith("whsec_") and len(base64.b64decode(one[6:])) == 32
    now = int(time.time())
    headers = signing.headers(one, "evt-2", now, '{"b":2}')
    assert Webhook(one).verify('{"b":2}', headers) == {"b": 2}
    with pytest.raises(WebhookVerificationError):
        Webhook(two).verify('{"b":2}', headers)
    with pytest.raises(WebhookVerificationError):  # stale
        Webhook(one).verify('{"b":2}', signing.headers(one, "evt-2", now - 600, '{"b":2}'))


def test_during_a_rotation_either_secret_verifies():
    import time
    old, new = signing.new_secret(), signing.new_secret()
    headers = signing.headers((new, old), "evt-3", int(time.time()), "{}")
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(old).verify("{}", headers) == {} and Webhook(new).verify("{}", headers) == {}


@pytest.mark.parametrize("address,why", [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.1.2.3", "private"), ("192.168.0.10", "private"),
    ("172.16.5.4", "private"), ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"), ("0.0.0.0", "unspecified"), ("240.0.0.1", "reserved"),
    ("::ffff:127.0.0.1", "loopback"), ("fd00::1", "private"), ("100.64.0.1", "not global"),
])
def test_non_public_addresses_are_refused(address, why):
    assert safe_http.address_refusal(address) == why
    with pytest.raises(safe_http.TargetRefused, match=why):
        safe_http.check_addresses("example.test", [address], allow_private=False)


def test_public_addresses_pass_and_private_ones_when_allowed():
    assert safe_http.address_refusal("93.184.216.34") is None
    assert safe_http.address_refusal("2606:2800:220:1:248:1893:25c8:1946") is None
    assert safe_http.check_addresses("h", ["93.184.216.34"], allow_private=False) == "93.184.216.34"
    assert safe_http.check_addresses("h", ["127.0.0.1"], allow_private=True) == "127.0.0.1"


def test_one_private_address_among_public_ones_refuses_the_name():
    with pytest.raises(safe_http.TargetRefused):
        safe_http.check_addresses("h", ["93.184.216.34", "10.0.0.1"], allow_private=False)
    with pytest.raises(safe_http.TargetRefused, match="does not resolve"):
        safe_http.check_addresses("h", [], allow_private=True)


def test_urls_must_be_https_without_credentials_unless_http_is_allowed():
    assert safe_http.parse_url("https://hooks.example.com/in?x=1", allow_http=False) == safe_http.Target(
        "https", "hooks.example.com", 443, "/in?x=1")
    assert safe_http.parse_url("http://127.0.0.1:8080", allow_http=True).path == "/"
    for bad in ("http://hooks.example.com/", "ftp://x/", "https://user:pw@x.example/", "https:///nohost", "nonsense",
                "https://x.example:99999/"):
        with pytest.raises(safe_http.TargetRefused):
            safe_http.parse_url(bad, allow_http=False)


def test_retry_schedule_grows_with_jitter_and_ends():
    schedule = retries.parse_schedule(["5s", "5m", "30m", "2h", "5h", "10h", "10h"])
    assert schedule == retries.DEFAULT_SCHEDULE
    rng = random.Random(7)
    delays = [retries.retry_delay(n, schedule, rng) for n in range(1, 8)]
    for delay, base in zip(delays, schedule, strict=True):
        assert base * 0.8 <= delay <= base * 1.2
    assert retries.retry_delay(8, schedule) is None and retries.retry_delay(0, schedule) is None
    assert sum(schedule) / 3600 == pytest.approx(27.6, abs=0.1)  # about a day
    assert retries.parse_schedule(["250ms", "2", "1d"]) == (0.25, 2.0, 86400.0)
    for bad in (["5x"], [], ["-1s"]):
        with pytest.raises(ValueError):
            retries.parse_schedule(bad)


@pytest.mark.parametrize("status,retry", [(None, True), (429, True), (500, True), (503, True), (400, False),
                                          (404, False), (410, False), (301, False)])
def test_which_answers_are_retried(status, retry):
    assert retries.is_retryable(status) is retry
    assert not retries.is_success(status)


def test_success_is_any_2xx():
    assert retries.is_success(200) and retries.is_success(204) and not retries.is_success(300)


def test_subscriptions_get_the_events_they_name_of_the_inboxes_they_name():
    assert subscriptions.normalise_events(["message_added", "conversation_created", "message_added"]) == [
        "conversation_created", "message_added"]
    assert subscriptions.normalise_events(["*", "message_added"]) == ["*"]
    with pytest.raises(ValueError, match="no_such_event"):
        subscriptions.normalise_events(["no_such_event"])
    with pytest.raises(ValueError):
        subscriptions.normalise_events([])
    assert subscriptions.wants(["*"], None, "email_sent", None)
    assert subscriptions.wants(["message_added"], None, "message_added", "i1")
    assert not subscriptions.wants(["message_added"], None, "conversation_created", "i1")
    assert subscriptions.wants(["*"], ["i1"], "message_added", "i1")
    assert not subscriptions.wants(["*"], ["i1"], "message_added", "i2")
    assert not subscriptions.wants(["*"], ["i1"], "contact_created", None)


def test_forwarded_events_are_in_the_catalogue_with_their_producer():
    from mailroom_shared.events.catalogue import spec_for
    for source, name in subscriptions.FORWARDED:
        assert spec_for(name).producer == source


def test_the_vault_seals_and_opens_and_refuses_without_a_key():
    key = Fernet.generate_key().decode()
    sealed = Vault(key).seal("whsec_abc")
    assert "whsec_abc" not in sealed and Vault(key).open(sealed) == "whsec_abc"
    with pytest.raises(VaultUnavailable):
        Vault(Fernet.generate_key().decode()).open(sealed)
    with pytest.raises(VaultUnavailable):
        Vault(None).seal("x")
    with pytest.raises(VaultUnavailable):
        Vault("not-a-key")
    assert key not in repr(Vault(key))


def test_settings_read_the_environment(monkeypatch):
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("NOTIFIER_SECRET_KEY", key)
    monkeypatch.setenv("NOTIFIER_ALLOW_HTTP_WEBHOOKS", "true")
    monkeypatch.setenv("NOTIFIER_WEBHOOK_RETRY_SCHEDULE", "1s,2s")
    loaded = settings.load()
    assert loaded.secret_key == key and loaded.allow_http and not loaded.allow_private_targets
    assert loaded.retry_schedule == (1.0, 2.0) and loaded.max_attempts == 3
    assert key not in repr(loaded)
    monkeypatch.setenv("NOTIFIER_WEBHOOK_RETRY_SCHEDULE", "soon")
    with pytest.raises(config.ConfigError, match="NOTIFIER_WEBHOOK_RETRY_SCHEDULE"):
        settings.load()
    monkeypatch.delenv("NOTIFIER_WEBHOOK_RETRY_SCHEDULE")
    monkeypatch.setenv("NOTIFIER_SECRET_KEY", "short")
    with pytest.raises(config.ConfigError, match="NOTIFIER_SECRET_KEY"):
        settings.load()
