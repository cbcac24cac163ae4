"""The web inbox in a real browser: Playwright for Python driving Debian's Chromium
(/usr/bin/chromium, launched by executable_path: nothing is downloaded), against the services as
real processes (ingest + its SMTP listener, contacts, conversations, outbound), the dev proxy that
`make run` uses (the built app and the API on one origin) and an aiosmtpd sink as the customer's
mail server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from mailroom_shared.devproxy import serve_in_thread
from mailroom_testing.specs import CONTACTS, CONVERSATIONS, INGEST, OUTBOUND
from mailroom_testing.stack import free_port
from mailroom_testing.team import MailSink, relay_env, running, start_with_inboxes
from mailroom_testing.tokens import TEST_SECRET

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "web"
CHROMIUM = Path("/usr/bin/chromium")
AXE = WEB / "node_modules" / "axe-core" / "axe.min.js"
SUPPORT, SALES, BILLING = "support@mailroom.test", "sales@mailroom.test", "billing@mailroom.test"
MEMBER = "agent-1"
INBOXES = f"""
inboxes:
  - key: support
    name: Support
    channels:
      - {{address: {SUPPORT}, name: Support Team, primary: true}}
      - {{address: {SALES}, name: Sales}}
    members:
      - {{user_id: {MEMBER}, email: agent@mailroom.test}}
      - {{user_id: agent-2, email: agent2@mailroom.test}}
    access: {{visibility: specific}}
  - key: billing
    name: Billing
    channels:
      - {{address: {BILLING}, name: Billing}}
    members:
      - {{user_id: {MEMBER}, email: agent@mailroom.test}}
    access: {{visibility: specific}}
"""

needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed "
                                    "(apt-get install chromium; .ci/run installs it)")


class Sink(MailSink):
    """The customer's mail server: records every message it accepts."""

    def with_subject(self, subject: str) -> list[dict]:
        with self._lock:
            return [m for m in self.accepted if str(m["message"]["Subject"]) == subject]


@pytest.fixture
def sink():
    with running(Sink()) as handler:
        yield handler


def built_web() -> Path:
    """web/dist, built by `make install`; built here from the lockfile when it is missing."""
    dist = WEB / "dist"
    if not (dist / "index.html").exists() or not AXE.exists():
        npm = shutil.which("npm")
        assert npm, "web/dist is not built and npm is missing: run `make install`"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True)
        subprocess.run([npm, "run", "build"], cwd=WEB, check=True)
    return dist


@pytest.fixture
def web_dist() -> Path:
    return built_web()


@pytest.fixture
def inbox(stack_factory, sink, tmp_path, monkeypatch):
    """The services + the dev proxy serving the app; `inbox.url` is what the browser opens."""
    # the dev sign-in mints tokens in this process (the proxy's), with the stack's secret
    monkeypatch.setenv("MAILROOM_JWT_SECRET", TEST_SECRET)
    monkeypatch.setenv("MAILROOM_DEV_AUTH", "true")
    smtp_port = free_port()
    stack = start_with_inboxes(stack_factory, [INGEST, CONTACTS, CONVERSATIONS, OUTBOUND], INBOXES, tmp_path, relay_env(
        sink, INGEST_SMTP_PORT=str(smtp_port), OUTBOUND_SMTP_TIMEOUT="20", OUTBOUND_RETRY_BASE_SECONDS="0.5",
        # Chromium shares the machine's cores with the services here: a loop starved of CPU for a
        # second is not what these tests look at (a loop kept for 5 s still fails them)
        MAILROOM_BLOCKING_DETECTION_SECONDS="5"), wait_for=None)
    stack.start_process("smtp", [sys.executable, "-m", "ingest.smtp_listener"], port=smtp_port)
    stack.eventually(lambda: stack.get("/health/ingest")[1].get("channels") == 3, timeout=30)
    stack.inbox_ids = {i["key"]: i["id"] for i in stack.get("/api/inboxes")[1]["items"]}
    proxy = serve_in_thread("127.0.0.1", free_port(), {s: ("127.0.0.1", p) for s, p in stack.ports.items()},
                            web_dir=built_web())
    stack.web_url = f"http://127.0.0.1:{proxy.server_address[1]}/"
    stack.sink = sink
    yield stack
    proxy.shutdown()
    proxy.server_close()


@pytest.fixture
def web():
    """The helpers of these tests (test modules do not import one another here)."""
    import types

    return types.SimpleNamespace(customer_mail=customer_mail, deliver=deliver, sign_in=sign_in,
                                 axe_violations=axe_violations, screenshot=screenshot, SUPPORT=SUPPORT,
                                 SALES=SALES, BILLING=BILLING, MEMBER=MEMBER)


@pytest.fixture(scope="session")
def browser(remote_host):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=[
            f"--host-resolver-rules=MAP {RemoteHost.NAME} 127.0.0.1, MAP *.{RemoteHost.NAME} 127.0.0.1"])
        yield browser
        browser.close()


class RemoteHost:
    """Stands in for every host on the internet: Chromium resolves `evil.example` (and its
    subdomains) to this local server, which records each request and answers a 1x1 image. A
    request here from a page is a request that left for a remote host."""

    NAME = "evil.example"
    PIXEL = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                          "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[str] = []
        remote = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the stdlib's name
                remote.requests.append(f"http://{self.headers.get('Host', '')}{self.path}")
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(remote.PIXEL)))
                self.end_headers()
                self.wfile.write(remote.PIXEL)

            do_POST = do_GET

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://{self.NAME}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="session")
def remote_host():
    remote = RemoteHost()
    yield remote
    remote.server.shutdown()


@pytest.fixture
def page(browser, inbox):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=False)
    page = context.new_page()
    page.dialogs = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.errors = []
    page.console = []
    page.on("console", lambda message: page.console.append(message.text))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    yield page
    context.close()


def customer_mail(*, subject: str, sender: str = "Ada Customer <ada@example.com>", to: str = SUPPORT,
                  body: str = "Hello,\nmy order #42 is late.", html: str | None = None, cc: str | None = None,
                  in_reply_to: str | None = None) -> tuple[bytes, str]:
    message_id = f"{uuid.uuid4().hex}@example.com"
    lines = [f"From: {sender}", f"To: {to}"] + ([f"Cc: {cc}"] if cc else []) + [
        f"Subject: {subject}", f"Message-ID: <{message_id}>", "Date: Wed, 25 Nov 2026 10:00:00 +0000",
        "MIME-Version: 1.0"]
    if in_reply_to:
        lines += [f"In-Reply-To: <{in_reply_to}>", f"References: <{in_reply_to}>"]
    if html is None:
        lines += ["Content-Type: text/plain; charset=utf-8", "", body, ""]
    else:
        lines += ['Content-Type: multipart/alternative; boundary="b1"', "", "--b1",
                  "Content-Type: text/plain; charset=utf-8", "", body, "--b1",
                  "Content-Type: text/html; charset=utf-8", "", html, "--b1--", ""]
    return "\r\n".join(lines).encode(), message_id


def deliver(stack, raw: bytes, channel: str = SUPPORT):
    def post():
        status, body = stack.post(f"/api/ingest/channels/{channel}/messages", raw=raw)
        return (status, body) if status < 300 else None
    return stack.eventually(post, timeout=30)


def sign_in(page, url: str, user_id: str = MEMBER, role: str = ""):
    page.goto(url)
    page.get_by_label("User id").fill(user_id)
    if role:
        page.get_by_label("Role").select_option(role)
    page.get_by_role("button", name="Sign in").click()
    try:
        page.get_by_role("navigation", name="Inboxes").get_by_role("heading").first.wait_for()
    except Exception as exc:
        raise AssertionError(f"not signed in: {page.locator('#sign-in-error').text_content()!r} "
                             f"{page.locator('#status').text_content()!r} {page.errors}") from exc


def axe_violations(page) -> list[dict]:
    """axe-core (from web/node_modules, the pinned npm package) on the page as it is: the serious
    and critical violations. Evaluated through the DevTools protocol, which the page's CSP does
    not govern (the app itself runs no inline or injected script)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text() + "\n;true")
    violations = page.evaluate("""async () => {
        const result = await axe.run(document, {resultTypes: ["violations"], iframes: false});
        return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                            targets: v.nodes.map(n => n.target.join(" "))}));
    }""")
    return [v for v in violations if v["impact"] in ("serious", "critical")]


def screenshot(page, name: str):
    """Screenshots of the main screens for docs/web-inbox.md, when MAILROOM_WEB_SCREENSHOTS is set."""
    if os.environ.get("MAILROOM_WEB_SCREENSHOTS"):
        target = REPO / "docs" / "web-inbox"
        target.mkdir(exist_ok=True)
        page.screenshot(path=str(target / f"{name}.png"))
