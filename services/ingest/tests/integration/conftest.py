"""Test fixtures for the ingest service.

=== Dovecot fixtures (IMAP poller tests) =========================================================
`dovecot` starts a throwaway Dovecot IMAP server as a subprocess for one test: its own config,
passwd-file, maildir and self-signed certificate in a fresh temporary directory, listening on free
127.0.0.1 ports (plain IMAP with STARTTLS, and IMAPS). It needs the Dovecot binaries
(`bash .ci/install-dovecot.sh`); when they are missing the fixture FAILS rather than skips, so CI
can never go green without having exercised a real IMAP server.

Keep only Dovecot fixtures in this section; other fixtures belong in their own clearly marked section.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from imapclient import IMAPClient

DOVECOT_INSTALL_HINT = "install it with `bash .ci/install-dovecot.sh` (Debian package dovecot-imapd)"
# Folders created in every test mailbox, with their RFC 6154 SPECIAL-USE flags. "Pourriel" (French
# for spam) carries \Junk under a name no English name list knows, to prove the flag is honoured.
SPECIAL_FOLDERS = {"Junk": r"\Junk", "Trash": r"\Trash", "Pourriel": r"\Junk", "Sent": r"\Sent"}
STARTUP_TIMEOUT = 15.0


def _find_binary(name: str) -> str | None:
    # /usr/sbin is not on every non-root PATH, and dovecot lives there on Debian.
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/usr/local/sbin")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class DovecotServer:
    """A running throwaway Dovecot; `deliver` puts mail into a folder through IMAP APPEND."""

    host: str
    port: int  # plain IMAP, STARTTLS offered
    ssl_port: int  # IMAPS
    user: str
    password: str
    ca_file: str  # the self-signed certificate, for clients that verify the server
    root: Path
    config_path: Path
    run_as_uid: int | None
    run_as_gid: int | None
    _process: subprocess.Popen | None = field(default=None, repr=False)

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        dovecot = _find_binary("dovecot")
        self._process = subprocess.Popen(
            [dovecot, "-F", "-c", str(self.config_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            user=self.run_as_uid,
            group=self.run_as_gid,
            extra_groups=[] if self.run_as_uid is not None else None,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                output = self._process.stdout.read().decode(errors="replace")
                pytest.fail(f"dovecot exited with {self._process.returncode}:\n{output}\n{self.log()}")
            if self._answers():
                return
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"dovecot did not answer on {self.host}:{self.port} in {STARTUP_TIMEOUT}s\n{self.log()}")

    def _answers(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as sock:
                return sock.recv(64).startswith(b"* OK")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server (the master process ends its children on SIGTERM)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        # Children may linger briefly after the master exits; wait until the port is free.
        deadline = time.monotonic() + 5
        while self._answers() and time.monotonic() < deadline:
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log(self) -> str:
        log_path = self.root / "dovecot.log"
        return log_path.read_text(errors="replace") if log_path.exists() else "(no dovecot log)"

    # ---- helpers for tests -----------------------------------------------------------------
    def client(self) -> IMAPClient:
        """A logged-in plain-IMAP client for arranging and inspecting mail in tests."""
        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=10)
        client.login(self.user, self.password)
        return client

    def deliver(self, raw: bytes, folder: str = "INBOX") -> int:
        """APPEND a message (no flags, so unread) and return its UID."""
        with self.client() as client:
            response = client.append(folder, raw)
        # Dovecot supports UIDPLUS: b"[APPENDUID <uidvalidity> <uid>] Append completed."
        text = response.decode() if isinstance(response, bytes) else str(response)
        return int(text.split("APPENDUID", 1)[1].split("]", 1)[0].split()[1])

    def flags(self, folder: str = "INBOX") -> dict[int, tuple[bytes, ...]]:
        with self.client() as client:
            client.select_folder(folder, readonly=True)
            return {uid: tuple(flags) for uid, flags in client.get_flags(client.search("ALL")).items()}

    def uids(self, folder: str = "INBOX") -> list[int]:
        with self.client() as client:
            client.select_folder(folder, readonly=True)
            return sorted(client.search("ALL"))

    def uidvalidity(self, folder: str = "INBOX") -> int:
        with self.client() as client:
            return client.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"]

    def set_uidvalidity(self, value: int, folder: str = "INBOX") -> None:
        """Change a folder's UIDVALIDITY, as a server does after a rebuild or a migration."""
        self.doveadm("mailbox", "update", "-u", self.user, "--uid-validity", str(value), folder)

    def doveadm(self, *args: str) -> str:
        result = subprocess.run(
            [_find_binary("doveadm"), "-c", str(self.config_path), *args],
            check=False,
            capture_output=True,
            text=True,
            user=self.run_as_uid,
            group=self.run_as_gid,
            extra_groups=[] if self.run_as_uid is not None else None,
            timeout=30,
        )
        if result.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(args)} failed: {result.stdout}{result.stderr}")
        return result.stdout

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)


def _run_as_account() -> tuple[str, int | None, int | None]:
    """The account Dovecot runs as: ourselves, or the unprivileged `dovecot` account when root.

    Dovecot refuses to give mail access to UID 0, and running the whole instance unprivileged
    (its documented non-root mode) needs no chroot, no system users and no privileged ports.
    """
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name, None, None
    for name in ("dovecot", "nobody"):
        try:
            account = pwd.getpwnam(name)
        except KeyError:
            continue
        return name, account.pw_uid, account.pw_gid
    pytest.fail("running as root but found no unprivileged `dovecot` or `nobody` account to run Dovecot as")


@pytest.fixture(scope="session")
def dovecot_certificate():
    """A self-signed certificate for 127.0.0.1/localhost, made once per test session."""
    openssl = _find_binary("openssl")
    if openssl is None:
        pytest.fail("openssl is needed to make the test certificate; install the Debian package openssl")
    directory = Path(tempfile.mkdtemp(prefix="mailroom-dovecot-cert-"))
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    yield cert, key
    shutil.rmtree(directory, ignore_errors=True)


def _config(root: Path, *, account: str, group: str, uid: int, gid: int, port: int, ssl_port: int, cert: Path,
            key: Path, introspection_url: str | None = None) -> str:
    oauth2 = ""
    if introspection_url:  # XOAUTH2/OAUTHBEARER checked against the test's token endpoint
        (root / "dovecot-oauth2.conf.ext").write_text(
            f"introspection_mode = post\nintrospection_url = {introspection_url}\n"
            "username_attribute = username\nactive_attribute = active\nactive_value = true\n")
        oauth2 = f"""
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {root}/dovecot-oauth2.conf.ext
}}"""
    special_folders = "\n".join(
        f"  mailbox {name} {{\n    special_use = {flag}\n    auto = create\n  }}"
        for name, flag in SPECIAL_FOLDERS.items()
    )
    return f"""\
# Throwaway Dovecot for mailroom's IMAP poller tests: unprivileged, loopback only.
instance_name = mailroom-test-{port}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
default_login_user = {account}
default_internal_user = {account}
default_internal_group = {group}
first_valid_uid = {uid}
first_valid_gid = {gid}

ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
# Plaintext passwords are fine here: loopback only, throwaway credentials.
disable_plaintext_auth = no
auth_mechanisms = plain login{" xoauth2 oauthbearer" if introspection_url else ""}
# Fail wrong passwords at once instead of after the default 2 s anti-brute-force delay.
auth_failure_delay = 0

passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}{oauth2}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
mail_location = maildir:{root}/mail/%u

namespace inbox {{
  inbox = yes
  separator = /
{special_folders}
}}

service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {ssl_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  chroot =
}}
"""


@pytest.fixture
def dovecot(dovecot_certificate):
    """A running Dovecot with one user and an empty INBOX (plus Junk, Trash, Pourriel, Sent)."""
    yield from _dovecot(dovecot_certificate)


@pytest.fixture
def dovecot_oauth2(dovecot_certificate, oauth_endpoint):
    """The same Dovecot that also takes XOAUTH2/OAUTHBEARER logins, checking each bearer token
    against `oauth_endpoint`'s introspection URL (Dovecot's oauth2 passdb)."""
    yield from _dovecot(dovecot_certificate, introspection_url=oauth_endpoint.url("/introspect"))


def _dovecot(dovecot_certificate, introspection_url: str | None = None):
    for binary in ("dovecot", "doveadm"):
        if _find_binary(binary) is None:
            pytest.fail(f"Dovecot binary `{binary}` not found: {DOVECOT_INSTALL_HINT}")

    account, uid, gid = _run_as_account()
    run_uid = os.geteuid() if uid is None else uid
    run_gid = os.getegid() if gid is None else gid

    root = Path(tempfile.mkdtemp(prefix="mailroom-dovecot-"))
    user, password = "team@example.test", "s3cret-for-tests"
    try:
        cert, key = root / "cert.pem", root / "key.pem"
        shutil.copyfile(dovecot_certificate[0], cert)
        shutil.copyfile(dovecot_certificate[1], key)
        key.chmod(0o600)
        for sub in ("run", "state", "mail", "home"):
            (root / sub).mkdir()
        (root / "passwd").write_text(f"{user}:{{PLAIN}}{password}::::::\n")
        port, ssl_port = _free_port(), _free_port()
        config_path = root / "dovecot.conf"
        group = grp.getgrgid(run_gid).gr_name
        config_path.write_text(
            _config(root, account=account, group=group, uid=run_uid, gid=run_gid, port=port,
                    ssl_port=ssl_port, cert=cert, key=key, introspection_url=introspection_url)
        )
        if uid is not None:  # root: hand the whole tree to the unprivileged account
            root.chmod(0o755)
            for path in [root, *root.rglob("*")]:
                os.chown(path, uid, gid)

        server = DovecotServer(
            host="127.0.0.1", port=port, ssl_port=ssl_port, user=user, password=password,
            ca_file=str(cert), root=root, config_path=config_path, run_as_uid=uid, run_as_gid=gid,
        )
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


# === OAuth 2.0 token endpoint fixture (XOAUTH2 tests) ==============================================
# Not a Dovecot fixture, but Dovecot's oauth2 passdb asks it whether a bearer token is valid.


class OAuthEndpoint:
    """A local OAuth 2.0 authorisation server: `/token` answers the refresh grant (a new access
    token each time, and a rotated refresh token when `rotate` is on) and `/introspect` (RFC 7662,
    what Dovecot posts `token=` to) says whether an access token is active and whose it is."""

    def __init__(self, username: str) -> None:
        self.username = username
        self.client_id, self.client_secret = "mailroom-client", "client-s3cret-value"
        self.refresh_token = "refresh-token-0"
        self.rotate = True
        self.active: set[str] = set()
        self.token_requests: list[dict] = []
        self.introspections: list[str] = []
        self.lifetime = 3600
        self._count = 0
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802 - the stdlib's name
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers.get("Content-Length") or 0))
                                                      .decode()).items()}
                status, answer = endpoint._answer(self.path, form)
                body = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def _answer(self, path: str, form: dict) -> tuple[int, dict]:
        with self._lock:
            if path == "/introspect":
                token = form.get("token", "")
                self.introspections.append(token)
                if token in self.active:
                    return 200, {"active": True, "username": self.username, "scope": "imap"}
                return 200, {"active": False}
            if path != "/token":
                return 404, {"error": "not_found"}
            self.token_requests.append(dict(form))
            if form.get("grant_type") != "refresh_token":
                return 400, {"error": "unsupported_grant_type"}
            if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
                return 401, {"error": "invalid_client", "error_description": "client authentication failed"}
            if form.get("refresh_token") != self.refresh_token:
                return 400, {"error": "invalid_grant", "error_description": "refresh token expired or revoked"}
            self._count += 1
            access = f"access-token-{self._count}-{uuid.uuid4().hex}"
            self.active.add(access)
            answer = {"access_token": access, "token_type": "Bearer", "expires_in": self.lifetime}
            if self.rotate:
                self.refresh_token = f"refresh-token-{self._count}"
                answer["refresh_token"] = self.refresh_token
            return 200, answer

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def oauth_endpoint():
    endpoint = OAuthEndpoint("team@example.test")
    yield endpoint
    endpoint.stop()
