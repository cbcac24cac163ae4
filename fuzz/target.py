"""The one thing every fuzzer here runs: ingest's pure path on one input, and the properties it must keep.

`run_one(raw)` = `analyse()` (parse → classify → forward detection → attribution) with settings that
switch every branch on (own addresses, trusted forwarder, internal domain, spam headers), then
`render_html()` three times (the full preview, a tiny one so the cut-and-reclean path runs too, and one
with remote images allowed), `Analysis.explain()` as JSON (the `mailroom explain` path), and, where
this version of ingest has them, `dedupe_key()` (read at SMTP time, before any parse) and
`bounced_message_ids()` (for bounces) and `summarise()` (what a quarantined message shows, for every
input: it must hold up exactly where the full analysis does not). The properties:

- nothing is raised but `ingest.domain.parsing.MessageTooComplex` (the documented refusal);
- it finishes before the deadline (the service's parse deadline, 10 s): a run past it is a hang;
- `message_id` (and `dedupe_key`) is a non-empty string without control characters, at most 998
  characters (every service stores it in a String(998) column);
- every address (sender, reply-to, to, cc, forward's original sender, attributed_to) is None or holds
  exactly one `@`, and has at most 320 characters (the String(320) address columns downstream);
- the sanitised HTML has no `<script`, no `on*=` event-handler attribute and no URL whose scheme is
  javascript:, vbscript: or data:, and the short preview keeps to its byte limit.

A violation raises `PropertyViolation` (an AssertionError); a run past the deadline raises `Hang`
(a BaseException, so the code under test cannot swallow it with `except Exception`).
"""

from __future__ import annotations

import contextlib
import html as html_lib
import json
import re
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from ingest.domain.analysis import Analysis, AnalysisSettings, analyse, render_html
from ingest.domain.model import ParseLimits
from ingest.domain.parsing import MessageTooComplex

try:  # newer ingest: the dedupe key read at SMTP time, before any parsing
    from ingest.domain.analysis import dedupe_key
except ImportError:  # pragma: no cover - older ingest
    dedupe_key = None
try:
    from ingest.domain.bounces import bounced_message_ids
except ImportError:  # pragma: no cover - older ingest
    bounced_message_ids = None
try:  # newer ingest: what a quarantined message still shows, read from its headers alone
    from ingest.domain.summary import summarise
except ImportError:  # pragma: no cover - older ingest
    summarise = None

# The service kills a parse at ParseLimits.max_seconds (10 s): anything longer is a hang.
DEADLINE_SECONDS = float(ParseLimits().max_seconds)
# What a single input may cost in the CI property tests, in CPU seconds (wall-clock time on a shared
# machine varies several-fold): well under the deadline. The slowest seed or fixture takes about
# 0.03 s, the slowest example of the property tests about 0.5 s.
BUDGET_SECONDS = 2.5
SMALL_PREVIEW_BYTES = 300
MAX_MESSAGE_ID_CHARS = 998  # String(998): ingest's dedupe_key, contacts/conversations/outbound rfc_message_id
MAX_ADDRESS_CHARS = 320  # String(320): contacts' and conversations' email columns

OWN = "support@mailroom.test"
SETTINGS = AnalysisSettings(
    own_addresses=frozenset({OWN, "sales@mailroom.test"}),
    own_message_id_domain="mailroom.test",
    internal_domains=frozenset({"mailroom.test", "example.com"}),
    spam_score_headers={"x-spam-score": 5.0, "x-rspamd-score": 10.0},
)
TRUSTED = frozenset({OWN, "forwarder@example.org"})


class PropertyViolation(AssertionError):
    def __init__(self, prop: str, detail: str) -> None:
        super().__init__(f"{prop}: {detail}")
        self.prop = prop


class Hang(BaseException):  # noqa: N818 - named for what it reports
    """The input ran past the deadline."""


@dataclass
class Outcome:
    seconds: float  # wall clock
    cpu_seconds: float  # what the input cost, whatever else the machine was doing (the budget's measure)
    refused: str | None  # MessageTooComplex reason, if the message was refused
    analysis: Analysis | None


_NOT_UNDER_TEST = re.compile(r"[/\\](hypothesis|_pytest|pluggy)[/\\]")


@contextlib.contextmanager
def deadline(seconds: float | None):
    """Raise `Hang` in this (main) thread once `seconds` pass: SIGALRM via setitimer.

    Saves and restores whatever timer and handler were there, so deadlines nest: pytest-timeout uses
    SIGALRM, and atheris runs a periodic SIGALRM for its own -timeout (which gets its timer back after
    each input). A no-op off the main thread or without SIGALRM."""
    if not seconds or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    if signal.getsignal(signal.SIGALRM) is None:  # a handler installed from C: it could not be restored
        yield
        return
    started = time.monotonic()

    def on_alarm(signum, frame):
        if frame is not None and _NOT_UNDER_TEST.search(frame.f_code.co_filename):
            return  # e.g. hypothesis' gc callback: an exception there is swallowed; the next tick retries
        raise Hang(f"still running after {seconds:g}s")

    # Repeating: a Hang raised while a gc callback or a __del__ runs is swallowed ("unraisable"),
    # so the alarm fires again every `repeat` seconds until it lands in the code under test.
    repeat = min(0.25, seconds)
    previous_handler = signal.signal(signal.SIGALRM, on_alarm)
    previous_delay, previous_interval = signal.setitimer(signal.ITIMER_REAL, seconds, repeat)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_delay:
            remaining = previous_delay - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(remaining, 0.001), previous_interval)


def run_one(raw: bytes, *, deadline_seconds: float | None = DEADLINE_SECONDS) -> Outcome:
    """Run the pure ingest path on `raw` and check every property; see the module docstring."""
    started, cpu_started = time.perf_counter(), time.process_time()
    with deadline(deadline_seconds):
        key = dedupe_key(raw) if dedupe_key is not None else None
        summary = summarise(raw, SETTINGS.spam_score_headers) if summarise is not None else None
        check_summary(summary)
        try:
            analysis = analyse(raw, SETTINGS, trusted_senders=TRUSTED)
        except MessageTooComplex as exc:
            check_message_id("dedupe_key", key)
            return Outcome(time.perf_counter() - started, time.process_time() - cpu_started,
                           str(exc) or "MessageTooComplex", None)
        parsed = analysis.parsed
        cid_urls = {attachment.content_id: f"/api/ingest/intake/1/attachments/{index}"
                    for index, attachment in enumerate(parsed.attachments) if attachment.content_id}
        full = render_html(parsed, cid_urls, SETTINGS.html_preview_bytes)
        small = render_html(parsed, cid_urls, SMALL_PREVIEW_BYTES)
        try:
            remote = render_html(parsed, cid_urls, SETTINGS.html_preview_bytes, allow_remote_images=True)
        except TypeError:  # pragma: no cover - older ingest without the keyword
            remote = (None, False, 0)
        explained = json.dumps(analysis.explain(), default=str)
        bounced = (bounced_message_ids(parsed.message)
                   if bounced_message_ids is not None and analysis.classification.bounce else [])
    seconds = time.perf_counter() - started
    if deadline_seconds and seconds > deadline_seconds:  # a C call that the alarm could not interrupt
        raise Hang(f"took {seconds:.1f}s (deadline {deadline_seconds:g}s)")
    check_message_id("dedupe_key", key)
    for index, bounced_id in enumerate(bounced):
        check_message_id(f"bounced_message_ids[{index}]", bounced_id)
    check_properties(analysis, full, small, remote, explained)
    return Outcome(seconds, time.process_time() - cpu_started, None, analysis)


def check_message_id(label: str, value: str | None) -> None:
    if value is None and label != "message_id":
        return
    if not isinstance(value, str) or not value.strip():
        raise PropertyViolation("message_id", f"empty {label} {value!r}")
    if _CONTROL.search(value):
        raise PropertyViolation("message_id", f"control character in {label} {value[:200]!r}")
    if len(value) > MAX_MESSAGE_ID_CHARS:
        raise PropertyViolation("message_id_length", f"{label} of {len(value)} characters > {MAX_MESSAGE_ID_CHARS}")


def check_summary(summary: dict | None) -> None:
    """The quarantine summary: every key there, a usable message_id, a sane sender, JSON-able."""
    if summary is None:
        return
    missing = {"message_id", "subject", "sender", "date", "in_reply_to", "references", "spam"} - set(summary)
    if missing:
        raise PropertyViolation("summary", f"summary without {sorted(missing)}")
    check_message_id("summary.message_id", summary["message_id"])
    email = (summary.get("sender") or {}).get("email")
    if email is not None and email.count("@") != 1:
        raise PropertyViolation("address_several_at" if email.count("@") > 1 else "address_no_at",
                                f"summary.sender.email is {email!r}: not exactly one '@'")
    if email is not None and len(email) > MAX_ADDRESS_CHARS:
        raise PropertyViolation("address_length", f"summary.sender.email of {len(email)} characters")
    json.dumps(summary, default=str)


def check_properties(analysis: Analysis, full: tuple, small: tuple, remote: tuple, explained: str) -> None:
    check_message_id("message_id", analysis.message_id)
    parsed = analysis.parsed
    addresses = [("sender", parsed.sender), ("attributed_to", analysis.attributed_to)]
    addresses += [(f"{label}[{index}]", address) for label in ("reply_to", "to", "cc")
                  for index, address in enumerate(getattr(parsed, label))]
    if analysis.forward is not None:
        addresses.append(("forward.original_sender", analysis.forward.original_sender))
    for label, address in addresses:
        email = None if address is None else address.email
        if email is not None and (not isinstance(email, str) or email.count("@") != 1):
            kind = "address_several_at" if isinstance(email, str) and email.count("@") > 1 else "address_no_at"
            raise PropertyViolation(kind, f"{label}.email is {email!r}: not exactly one '@'")
        if email is not None and len(email) > MAX_ADDRESS_CHARS:
            raise PropertyViolation("address_length", f"{label}.email of {len(email)} characters > {MAX_ADDRESS_CHARS}")
    for label, (html, _truncated, _blocked) in (("html", full), ("small preview", small),
                                                 ("html with remote images", remote)):
        if html is not None:
            check_sanitised(html, label)
    if small[0] is not None and len(small[0].encode("utf-8")) > SMALL_PREVIEW_BYTES:
        raise PropertyViolation("preview_size", f"preview of {len(small[0].encode())} bytes > {SMALL_PREVIEW_BYTES}")
    if not explained:
        raise PropertyViolation("explain", "empty explain document")


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_URL_ATTRIBUTES = {"href", "src", "action", "formaction", "background", "cite", "poster", "data", "codebase",
                   "xlink:href", "longdesc", "lowsrc", "dynsrc", "srcset", "ping", "manifest", "icon"}
_BAD_SCHEME = re.compile(r"^(?:javascript|vbscript|data|livescript|mocha):")
_ACTIVE_TAGS = {"script", "iframe", "frame", "object", "embed", "applet", "svg", "math", "form", "base",
                "meta", "link", "style", "template", "noscript"}


class _ActiveContentFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in _ACTIVE_TAGS:
            self.problems.append(f"<{tag}> element")
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"event handler {name}= on <{tag}>")
            if value is None:
                continue
            compact = "".join(ch for ch in html_lib.unescape(value) if ch > " " and ch != "\x7f").lower()
            if name in _URL_ATTRIBUTES and _BAD_SCHEME.match(compact):
                self.problems.append(f"{name}={value!r} on <{tag}>")
            if name == "style" and ("javascript:" in compact or "expression(" in compact or "url(" in compact):
                self.problems.append(f"style={value!r} on <{tag}>")

    handle_startendtag = handle_starttag


def check_sanitised(html: str, label: str = "html") -> None:
    """No `<script`, no on*= handler, no javascript:/vbscript:/data: URL in sanitised HTML."""
    lowered = html.lower()
    if "<script" in lowered:
        raise PropertyViolation("sanitised_html", f"{label} contains '<script': {_excerpt(html, '<script')}")
    if re.search(r"<[a-z][^>]*?[\s\"'/]on[a-z]+\s*=", lowered) and _handler_outside_values(html):
        raise PropertyViolation("sanitised_html", f"{label} has an on*= handler: {html[:300]!r}")
    finder = _ActiveContentFinder()
    finder.feed(html)
    finder.close()
    if finder.problems:
        raise PropertyViolation("sanitised_html", f"{label}: {finder.problems[0]} in {html[:300]!r}")


def signature_of(exc: BaseException) -> str:
    """What identifies a finding across inputs: the property, or the exception type with the innermost
    project frame and the innermost frame (functions, no line numbers: they survive edits)."""
    if isinstance(exc, PropertyViolation):
        return f"property-{exc.prop}"
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if not frame.filename.endswith(_THIS_FILE)]
    project = [frame for frame in frames if _PROJECT_CODE.search(frame.filename)]
    parts = ["hang" if isinstance(exc, Hang) else type(exc).__name__]
    for frame in (project[-1:] + frames[-1:]) if frames else ():
        parts.append(f"{Path(frame.filename).stem}.{frame.name}")
    return "-".join(dict.fromkeys(parts)) if frames else parts[0]


_THIS_FILE = str(Path(__file__).name)
_PROJECT_CODE = re.compile(r"[/\\](ingest|mailroom_shared)[/\\]")


def _handler_outside_values(html: str) -> bool:
    """The regex above also matches `title="a onclick=b"`; only an attribute *name* counts."""
    finder = _ActiveContentFinder()
    finder.feed(html)
    finder.close()
    return any(problem.startswith("event handler") for problem in finder.problems)


def _excerpt(text: str, needle: str) -> str:
    index = text.lower().find(needle)
    return repr(text[max(0, index - 80): index + 120])
