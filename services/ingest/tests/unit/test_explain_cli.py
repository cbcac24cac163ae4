"""`mailroom explain`: the installed console script, on real .eml files, with no broker and no
database reachable."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

CORPUS = Path(__file__).parents[1] / "forward_corpus"
MAILROOM = shutil.which("mailroom") or str(Path(sys.executable).parent / "mailroom")
OFFLINE = {"AMQP_URI": "amqp://nobody:nothing@127.0.0.1:1/", "INGEST_DATABASE_URL": "postgresql://x@127.0.0.1:1/x",
           "PATH": "/usr/bin:/bin"}


def explain(*args, stdin=None):
    return subprocess.run([MAILROOM, "explain", *args], input=stdin, capture_output=True, env=OFFLINE, timeout=60)


def test_json_report_of_a_forward_from_an_untrusted_sender_keeps_it_with_the_sender():
    result = explain("--json", str(CORPUS / "apple_bare_address.eml"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) >= {"message_id", "sender", "forward", "attributed_to", "auto_submitted", "spam"}
    assert report["forward"]["original_sender"]["email"] == "john.doe@acme.com"
    assert report["forward"]["detected_by"].startswith("text_block")
    assert report["attributed_to"] == report["sender"]


def test_trusted_forwarder_moves_attribution_to_the_original_sender_and_stdin_works():
    raw = (CORPUS / "apple_bare_address.eml").read_bytes()
    result = explain("--json", "--trusted", "--authenticated", "-", stdin=raw)
    report = json.loads(result.stdout)
    assert report["attributed_to"]["email"] == "john.doe@acme.com" and report["forward"]["trusted"] is True
    assert report["forward"]["authentication"]["by"] == "asserted"


def test_a_trusted_forwarder_without_authentication_keeps_the_mail_and_says_why():
    raw = (CORPUS / "apple_bare_address.eml").read_bytes()
    report = json.loads(explain("--json", "--trusted", "-", stdin=raw).stdout)
    assert report["forwarder_trusted"] is True and report["forward"]["trusted"] is False
    assert report["attributed_to"] == report["sender"]
    assert report["forward"]["authentication"] == {
        "authenticated": False, "reason": "no trusted authserv-id configured (INGEST_TRUSTED_AUTHSERV_IDS)"}
    readable = explain("--trusted", "-", stdin=raw).stdout.decode()
    assert "authenticated:     no: no trusted authserv-id configured" in readable


def test_authentication_results_of_a_trusted_authserv_id_decide_and_explain_says_so():
    raw = (CORPUS / "apple_bare_address.eml").read_bytes()
    domain = json.loads(explain("--json", "-", stdin=raw).stdout)["sender"]["email"].rpartition("@")[2]
    stamped = f"Authentication-Results: mx.example.com; dmarc=pass header.from={domain}\r\n".encode() + raw
    env = {**OFFLINE, "INGEST_TRUSTED_AUTHSERV_IDS": "mx.example.com"}
    result = subprocess.run([MAILROOM, "explain", "--json", "--trusted", "-"], input=stamped, capture_output=True,
                            env=env, timeout=60)
    report = json.loads(result.stdout)
    assert report["attributed_to"]["email"] == "john.doe@acme.com"
    assert report["forward"]["authentication"] == {"authenticated": True, "by": "authentication-results",
                                                   "authserv_id": "mx.example.com",
                                                   "detail": f"dmarc=pass header.from={domain}"}


def test_readable_report_and_clear_errors():
    result = explain(str(CORPUS / "apple_bare_address.eml"))
    assert result.returncode == 0 and b"Forward:      yes" in result.stdout
    missing = explain("/no/such/file.eml")
    assert missing.returncode == 2 and b"cannot read /no/such/file.eml" in missing.stderr
    garbage = explain("--json", "-", stdin=b"\x00\xff not mail")
    assert garbage.returncode == 0 and json.loads(garbage.stdout)["forward"] is None


CLASSES = Path(__file__).parents[1] / "forward_classes"


def test_explain_names_the_deciding_rule_and_each_nesting_step():
    path = CLASSES / "tuned" / "nested_three_levels_signature_only.eml"
    report = json.loads(explain("--json", str(path)).stdout)
    steps = report["forward_steps"]
    assert [step["rule"] for step in steps] == [
        "table: outermost block",
        "step down: the block above is signature-only and itself a forward",
        "step down: the block above is empty and itself a forward",
    ]
    assert [step["sender"]["email"] for step in steps] == [
        "bob@team.example", "carla.middle@gmail.com", "dieter.kunde@kunden-mail.de"]
    assert report["forward"]["original_sender"]["email"] == "dieter.kunde@kunden-mail.de"
    readable = explain(str(path)).stdout.decode()
    assert "decided by rule:  step down: the block above is empty and itself a forward" in readable
    assert "2. step down: the block above is signature-only and itself a forward (line 13, forward:gmail)" in readable


def test_explain_shows_header_rules_and_the_structural_path():
    relay = json.loads(explain("--json", str(CLASSES / "tuned" / "server_google_groups_via.eml")).stdout)
    assert relay["forward"]["detected_by"] == "server_relay:x_original_sender"
    assert relay["forward_steps"][0]["rule"].startswith("header: list relay")
    hausa = json.loads(explain("--json", str(CLASSES / "tuned" / "outlook_ha_structure.eml")).stdout)
    assert hausa["forward_steps"][0]["rule"] == "structure: outermost block"
    assert hausa["forward"]["original_sender"]["email"] == "aminu.bello@misali-kamfani.ng"
    plain = json.loads(explain("--json", str(CORPUS / "newsletter_plain.eml")).stdout)
    assert plain["forward"] is None and plain["forward_steps"] == []
