"""Hostile mail never crashes or hangs ingest's parsing path: the bounded CI run of fuzz/ (see fuzz/__init__.py).

Properties (fuzz/target.py): only MessageTooComplex is raised; each input finishes within
BUDGET_SECONDS (2.5 s of CPU), well under the service's 10 s deadline (past the deadline = a hang, stopped
by a SIGALRM watchdog); message_id is never empty and fits String(998); addresses are None or hold
one '@' and fit String(320); sanitised HTML has no <script, on*= or javascript:/vbscript:/data: URL.

Bugs found and not fixed yet are listed in fuzz/regressions/known_bugs.json: their reproducers are
strict xfails here, and the property tests and the harness run recognise them by signature instead
of failing, so every test fails on a new bug, and on a known one once it is fixed (XPASS) until its
entry is removed.

Reproducible: hypothesis runs derandomized without an example database (the same examples on every
run; FUZZ_HYPOTHESIS_SCALE=N runs N times more), the harness run uses a fixed libFuzzer seed
(FUZZ_CI_SECONDS sets its length, 15 s). The CPython seed corpus lives outside the repository
(../shared/corpora/email-seeds/); tests that need it skip with the reason when it is missing.
Runs in about 40 s.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `fuzz` is a top-level folder of the repository, not an installed package
    sys.path.insert(0, str(REPO_ROOT))

from fuzz import corpus, fuzz_parse  # noqa: E402
from fuzz.known import is_known_bug, known_bug_for, known_bugs  # noqa: E402
from fuzz.target import (  # noqa: E402
    BUDGET_SECONDS,
    DEADLINE_SECONDS,
    Hang,
    check_sanitised,
    deadline,
    run_one,
    signature_of,
)

SCALE = max(1, int(os.environ.get("FUZZ_HYPOTHESIS_SCALE", "1")))
HARNESS_SECONDS = float(os.environ.get("FUZZ_CI_SECONDS", "15"))
# giant_parameters stays at a size that takes milliseconds here; the 50,000-parameter case is a
# known bug kept as a regression (fuzz/regressions/known_bugs.json)
MAX_PARAMS = 3000
KNOWN_BUGS = known_bugs()


def ci_settings(examples: int):
    return settings(
        max_examples=examples * SCALE, derandomize=True, database=None, deadline=None, print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example,
                               HealthCheck.filter_too_much],
    )


def check(raw: bytes, budget: float = BUDGET_SECONDS) -> None:
    """The properties, plus the per-input budget (the watchdog fires at the service deadline).

    A bug already listed in fuzz/regressions/known_bugs.json (replayed there as a strict xfail) is
    noted, not failed: these tests fail on new bugs only, and on the known ones once they are fixed
    and their entries removed."""
    try:
        outcome = run_one(raw, deadline_seconds=DEADLINE_SECONDS)
    except (Hang, Exception) as exc:
        known = known_bug_for(signature_of(exc))
        if known is None:
            raise
        event(f"known bug: {known}")
        return
    assert outcome.cpu_seconds < budget, f"{outcome.cpu_seconds:.2f} CPU s for {len(raw)} bytes (budget {budget}s)"


def _cpython_seeds() -> list[bytes]:
    reason = corpus.seeds_missing_reason()
    if reason:
        pytest.skip(reason)
    return corpus.read_all(corpus.seed_files())


FIXTURES = corpus.read_all(corpus.fixture_files())
SEEDS = corpus.read_all(corpus.seed_files())  # may be empty: the tests that need it skip
MUTATION_NAMES = [*corpus.MUTATORS, "splice_messages"]


# --------------------------------------------------------------------------------------------
# the corpora as they are


def test_the_cpython_seed_corpus_keeps_the_properties():
    seeds = _cpython_seeds()
    for raw in seeds:
        check(raw)
    assert len(seeds) > 100


def test_the_project_fixtures_keep_the_properties():
    assert len(FIXTURES) > 50, "no .eml fixtures found under services/ingest/tests/"
    for raw in FIXTURES:
        check(raw)


# --------------------------------------------------------------------------------------------
# hypothesis


@ci_settings(300)
@given(st.binary(max_size=4096))
def test_hypothesis_arbitrary_bytes(raw):
    check(raw)


@st.composite
def mutated(draw, pool: list[bytes]):
    raw = draw(st.sampled_from(pool))
    names = draw(st.lists(st.sampled_from(MUTATION_NAMES), min_size=1, max_size=4))
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    return corpus.mutate(raw, rng, names=names, others=pool, max_size=65_536, max_params=MAX_PARAMS)


@ci_settings(250)
@given(st.data())
def test_hypothesis_mutated_cpython_seeds(data):
    if not SEEDS:
        pytest.skip(corpus.seeds_missing_reason() or "no CPython seeds")
    check(data.draw(mutated(SEEDS)))


@ci_settings(250)
@given(mutated(FIXTURES))
def test_hypothesis_mutated_project_fixtures(raw):
    check(raw)


# Messages built from parts: hostile headers and addresses, odd charsets, parameter lists, nesting,
# transfer encodings, hostile HTML, and a cut anywhere.
_ADDRESS = st.sampled_from([
    "a@b.example", "\"a@b\" <c@d.example>", "<@relay:user@host.example>", "\"x\"@y.example", "a@@b", "@", "<>",
    "undisclosed-recipients:;", "Team: a@b.example, c@d.example;", "=?utf-8?b?w6k=?= <e@f.example>",
    "=?utf-7?q?+AGEAQA-?= <x@y.example>", "a@b.example (comment (nested)", "\"unterminated <u@v.example>",
    "a@[127.0.0.1]", "a@xn--bcher-kva.example", "a@xn--.example", "A <a@b.example>, B", "\udcff@b.example",
    "mailto:a@b.example", "a@b.example>", "<a@b.example", "a@b@c.example",
])
_HEADER_NAMES = st.sampled_from([
    "From", "To", "Cc", "Reply-To", "Subject", "Message-ID", "In-Reply-To", "References", "Date", "Resent-From",
    "Auto-Submitted", "Precedence", "X-Autoreply", "List-Id", "X-Spam-Flag", "X-Spam-Score", "Content-Type",
    "Content-Disposition", "Content-Transfer-Encoding", "Content-ID", "MIME-Version", "Return-Path", "X-Loop",
])
_VALUES = st.one_of(
    _ADDRESS,
    st.sampled_from(corpus.ODD_CHARSETS).map(lambda label: f"=?{label}?B?w6nDqQ==?= x"),
    st.sampled_from(["<>", "<a@b>", "<a@b> <c@d>", "a@b", "<\x00@b>", " ", "", "<" + "x" * 500 + "@y>", "(c) <a@b>"]),
    st.sampled_from(["text/plain; charset=", "multipart/mixed; boundary=", "message/rfc822", "text/html",
                     "multipart/alternative; boundary=\"",
                     "application/octet-stream; name*0*=utf-8''%E2%80%AE; name*1=x"]),
    st.text(max_size=80),
)


@st.composite
def built_message(draw) -> bytes:
    newline = draw(st.sampled_from(["\r\n", "\n"]))
    headers = [f"{draw(_HEADER_NAMES)}: {draw(_VALUES)}" for _ in range(draw(st.integers(0, 12)))]
    if draw(st.booleans()):
        headers.append("From: " + draw(_ADDRESS))
    charset = draw(st.sampled_from(corpus.ODD_CHARSETS))
    encoding = draw(st.sampled_from(["7bit", "8bit", "base64", "quoted-printable", "x-uuencode", "binary", "bogus"]))
    html = "".join(draw(st.lists(st.one_of(st.sampled_from(corpus.HOSTILE_HTML), st.text(max_size=40)), max_size=8)))
    text = draw(st.text(max_size=200))
    body_type = draw(st.sampled_from(["text/plain", "text/html", "alternative", "mixed-rfc822", "nested"]))
    if body_type == "text/plain":
        body = f"Content-Type: text/plain; charset=\"{charset}\"{newline}Content-Transfer-Encoding: {encoding}" \
               f"{newline}{newline}{text}"
    elif body_type == "text/html":
        body = f"Content-Type: text/html; charset=utf-8{newline}{newline}{html}"
    elif body_type == "alternative":
        body = (f"Content-Type: multipart/alternative; boundary=\"b\"{newline}{newline}--b{newline}"
                f"Content-Type: text/plain{newline}{newline}{text}{newline}--b{newline}"
                f"Content-Type: text/html{newline}{newline}{html}{newline}--b--{newline}")
    elif body_type == "mixed-rfc822":
        inner = newline.join(headers[:4])
        body = (f"Content-Type: multipart/mixed; boundary=o{newline}{newline}--o{newline}"
                f"Content-Type: message/rfc822{newline}Content-Transfer-Encoding: {encoding}{newline}{newline}"
                f"{inner}{newline}{newline}{html}{newline}--o--{newline}")
    else:
        depth = draw(st.integers(1, 30))
        body = f"Content-Type: text/html{newline}{newline}{html}"
        for level in range(depth):
            body = f"Content-Type: multipart/mixed; boundary=n{level}{newline}{newline}--n{level}{newline}{body}"
    raw = (newline.join(headers) + newline + body).encode("utf-8", "surrogateescape")
    if draw(st.booleans()):
        raw = raw[: draw(st.integers(0, len(raw)))]
    return raw


@ci_settings(300)
@given(built_message())
def test_hypothesis_built_hostile_messages(raw):
    check(raw)


@ci_settings(200)
@given(st.lists(st.one_of(st.sampled_from(corpus.HOSTILE_HTML), st.text(max_size=30)), min_size=1, max_size=12))
def test_hypothesis_sanitised_html_has_no_active_content(pieces):
    html = "".join(pieces).encode("utf-8", "surrogateescape")
    check(b"From: a@b.example\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html)


def test_the_html_property_checker_catches_what_it_must():
    for bad in ("<script>x</script>", "<img src=x onerror=alert(1)>", "<a href=\"java&#x09;script:x\">x</a>",
                "<a href=' JAVASCRIPT:x'>x</a>", "<iframe></iframe>", "<div style=\"background:url(x)\">x</div>"):
        with pytest.raises(AssertionError):
            check_sanitised(bad)
    check_sanitised("<p title=\"a onclick=b\">javascript: is only text here &lt;script&gt;</p>")


# --------------------------------------------------------------------------------------------
# the watchdog, the regressions and the harness


def test_the_watchdog_stops_a_hang_and_gives_back_the_outer_timer():
    outer = []
    previous = signal.signal(signal.SIGALRM, lambda *_: outer.append("outer"))
    signal.setitimer(signal.ITIMER_REAL, 5.0)
    try:
        started = time.monotonic()
        with pytest.raises(Hang), deadline(0.2):
            while True:
                pass
        assert time.monotonic() - started < 1.0
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 3.5 < remaining <= 5.0  # pytest-timeout's timer (also SIGALRM) survives ours
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class FakeTarget:
    """Hangs on b"hang", raises KeyError on anything else."""

    Hang = Hang
    PropertyViolation = AssertionError
    signature_of = staticmethod(signature_of)

    @staticmethod
    def run_one(raw, deadline_seconds):
        with deadline(deadline_seconds):
            if raw == b"hang":
                while True:
                    pass
            raise KeyError("boom")


def test_the_harness_saves_a_hang_and_a_crash_under_its_output_folder(tmp_path):
    run = fuzz_parse.Run(FakeTarget, tmp_path, seconds=5, deadline=0.2, engine="test", seeds={})
    run.one(b"hang")
    run.one(b"crash")
    summary = run.write_summary()
    assert (summary["hangs"], summary["crashes"]) == (1, 1)
    assert [path.read_bytes() for path in (tmp_path / "hangs").glob("*.eml")] == [b"hang"]
    assert [path.read_bytes() for path in (tmp_path / "crashes").glob("*.eml")] == [b"crash"]


NATIVE_HANG = """
import sys
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from fuzz import fuzz_parse
from fuzz.target import Hang, deadline, signature_of

class NativeHang:
    Hang, PropertyViolation, signature_of = Hang, AssertionError, staticmethod(signature_of)

    @staticmethod
    def run_one(raw, deadline_seconds):
        with deadline(deadline_seconds):
            return sum(range(10**13))  # one C call: SIGALRM's Python handler never gets to run

fuzz_parse.Run(NativeHang, Path(sys.argv[1]), 30, 0.2, "test", {}, backstop=1.0).one(b"native hang")
"""


def test_a_hang_in_native_code_is_ended_by_the_backstop_and_reported_by_the_next_run(tmp_path):
    started = time.monotonic()
    ended = subprocess.run([sys.executable, "-c", NATIVE_HANG, str(tmp_path), str(REPO_ROOT)],
                           capture_output=True, text=True, timeout=60)
    assert ended.returncode != 0 and time.monotonic() - started < 30
    run = fuzz_parse.Run(FakeTarget, tmp_path, seconds=5, deadline=0.2, engine="test", seeds={})
    assert run.hangs == 1
    [saved] = (tmp_path / "hangs").glob("native-*.eml")
    assert saved.read_bytes() == b"native hang"
    assert "Timeout" in saved.with_suffix(".txt").read_text()


def test_the_harness_deadline_is_the_services():
    from ingest.domain.model import ParseLimits

    assert fuzz_parse.SERVICE_DEADLINE_SECONDS == DEADLINE_SECONDS == ParseLimits().max_seconds


REGRESSIONS = corpus.regression_files()


# After the fixes these inputs take 0.1-0.2 s here; the watchdog fires at 1 s (a known hang costs 1 s).
REGRESSION_BUDGET_SECONDS = 1.0


class KnownBugStillThere(Exception):
    pass


@pytest.mark.parametrize("path", [
    pytest.param(path, id=path.name, marks=[pytest.mark.xfail(strict=True, raises=KnownBugStillThere,
                                                              reason=KNOWN_BUGS[path.name]["bug"])]
                 if path.name in KNOWN_BUGS else [])
    for path in REGRESSIONS
])
def test_regressions_found_by_fuzzing(path):
    """Every input fuzzing ever broke ingest with, replayed. A known bug xfails only when it fails the
    way known_bugs.json records (its signature); failing any other way fails the test."""
    try:
        outcome = run_one(path.read_bytes(), deadline_seconds=REGRESSION_BUDGET_SECONDS)
    except (Hang, Exception) as exc:
        if is_known_bug(path.name, signature_of(exc)):
            raise KnownBugStillThere(f"{signature_of(exc)}: {exc}") from exc
        raise
    assert outcome.cpu_seconds < REGRESSION_BUDGET_SECONDS


def test_known_bugs_name_existing_reproducers():
    assert set(KNOWN_BUGS) <= {path.name for path in REGRESSIONS}


def test_a_bounded_harness_run_finds_no_crash_and_no_hang(tmp_path):
    """The harness itself (atheris when installed, else the mutational loop) for a few seconds,
    inputs capped at 16 KiB (the known 50,000-parameter hang needs more), per-input deadline 10 s.
    Known bugs (fuzz/regressions/known_bugs.json) it meets are reported in the summary, not failed."""
    command = [sys.executable, str(REPO_ROOT / "fuzz" / "fuzz_parse.py"), "--seconds", str(HARNESS_SECONDS),
               "--out", str(tmp_path), "--max-len", "16384", "--max-params", str(MAX_PARAMS), "--seed", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=HARNESS_SECONDS + 120, cwd=REPO_ROOT)
    summary_file = tmp_path / "summary.json"
    assert summary_file.exists(), f"no summary (exit {result.returncode}):\n{result.stderr[-3000:]}"
    summary = json.loads(summary_file.read_text())
    found = {**summary["distinct_crashes"], **summary["distinct_hangs"]}
    details = "\n".join(Path(entry["file"]).with_suffix(".txt").read_text()[:2000] for entry in found.values())
    assert (summary["crashes"], summary["hangs"]) == (0, 0), f"{json.dumps(summary, indent=1)}\n{details}"
    assert summary["execs"] > 200 and result.returncode == 0
