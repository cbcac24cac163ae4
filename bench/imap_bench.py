"""IMAP path: a local Dovecot mailbox filled with the bench corpus, polled by the ingest service,
timed until every message is stored in its conversation (`message_added` seen by the
subscriber), with the CPU each process used per email.

A throwaway Dovecot (its own config, passwd-file and maildir in a temporary directory, plain
IMAP on a free loopback port, run as the unprivileged `dovecot` account when we are root, as the
ingest tests start it) holds the corpus in a staging folder while the stack starts; once ingest
knows the inbox address and a warm-up went through, the whole staging folder is MOVEd into INBOX
in one command, so the poller finds the full backlog at its next tick (INGEST_IMAP_POLL_SECONDS
1 s here) and drains it (imap_poller.drain_mailboxes). Rate = emails stored / (the MOVE → the
last `message_added`). Needs the Dovecot binaries (`bash .ci/install-dovecot.sh`); without them
the IMAP run is reported as skipped.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import e2e  # bench/ is on sys.path
import yaml
from corpus import INBOX_ADDRESS, CorpusMessage
from imapclient import IMAPClient

USER, PASSWORD = "team@example.test", "bench-imap-password"
STAGING = "Staging"


def _binary(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/usr/local/sbin")


def available() -> bool:
    return bool(_binary("dovecot") and _binary("doveadm"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Dovecot:
    """A throwaway Dovecot on a loopback port: plain IMAP, one user, a maildir."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="mailroom-bench-dovecot-"))
        self.port = _free_port()
        self.process: subprocess.Popen | None = None
        if os.geteuid() == 0:  # Dovecot gives no mail access to UID 0
            account = next(pwd.getpwnam(n) for n in ("dovecot", "nobody") if _has_account(n))
            self.uid, self.gid, self.account = account.pw_uid, account.pw_gid, account.pw_name
        else:
            self.uid, self.gid, self.account = os.geteuid(), os.getegid(), pwd.getpwuid(os.geteuid()).pw_name

    def start(self) -> None:
        for sub in ("run", "state", "mail", "home"):
            (self.root / sub).mkdir()
        (self.root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
        config = self.root / "dovecot.conf"
        config.write_text(f"""\
instance_name = mailroom-bench-{self.port}
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.root}/dovecot.log
protocols = imap
listen = 127.0.0.1
default_login_user = {self.account}
default_internal_user = {self.account}
default_internal_group = {grp.getgrgid(self.gid).gr_name}
first_valid_uid = {self.uid}
first_valid_gid = {self.gid}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.root}/passwd
}}
userdb {{
  driver = static
  args = uid={self.uid} gid={self.gid} home={self.root}/home/%u
}}
mail_location = maildir:{self.root}/mail/%u
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  chroot =
}}
""")
        if os.geteuid() == 0:
            self.root.chmod(0o755)
            for path in [self.root, *self.root.rglob("*")]:
                os.chown(path, self.uid, self.gid)
        as_other = os.geteuid() == 0
        self.process = subprocess.Popen([_binary("dovecot"), "-F", "-c", str(config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT, user=self.uid if as_other else None,
                                        group=self.gid if as_other else None,
                                        extra_groups=[] if as_other else None)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"dovecot did not answer: {(self.root / 'dovecot.log').read_text(errors='replace')[-2000:]}")

    def client(self) -> IMAPClient:
        client = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=60)
        client.login(USER, PASSWORD)
        return client

    def pids(self) -> list[int]:
        """Every process of this instance (master, imap-login, imap …): their CPU counts too."""
        if self.process is None:
            return []
        found, frontier = {self.process.pid}, [self.process.pid]
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(parent, []).append(int(entry.name))
        while frontier:
            for child in children.get(frontier.pop(), []):
                if child not in found:
                    found.add(child)
                    frontier.append(child)
        return sorted(found)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _has_account(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def fill(dovecot: Dovecot, mail: list[CorpusMessage], folder: str = STAGING) -> None:
    with dovecot.client() as client:
        if not client.folder_exists(folder):
            client.create_folder(folder)
        for message in mail:
            client.append(folder, message.raw)


def release(dovecot: Dovecot, folder: str = STAGING) -> int:
    """Everything in the staging folder into INBOX at once (one MOVE): the backlog appears whole."""
    with dovecot.client() as client:
        client.select_folder(folder)
        uids = client.search("ALL")
        if uids:
            client.move(uids, "INBOX")
        return len(uids)


def _dovecot_cpu(dovecot: Dovecot) -> float:
    return sum(e2e._process_cpu(pid) for pid in dovecot.pids())


def measure(resources, workdir: Path, mail: list[CorpusMessage], seed_value: int, extra_env: dict | None = None,
            log=print) -> dict:
    """The IMAP run: Dovecot + the stack polling it; `mail` moved into INBOX at once; until stored."""
    import corpus as corpus_module

    if not available():
        log("  (IMAP: the Dovecot binaries are missing, `bash .ci/install-dovecot.sh`; skipped)")
        return {"skipped": "dovecot not installed"}
    workdir.mkdir(parents=True, exist_ok=True)
    dovecot = Dovecot()
    dovecot.start()
    try:
        warm = corpus_module.generate(40, seed=seed_value + 2000, run_tag="imapwarm")
        fill(dovecot, warm, "Warm")
        started = time.monotonic()
        fill(dovecot, mail)
        fill_s = round(time.monotonic() - started, 1)
        log(f"  Dovecot filled with {len(mail)} emails in {fill_s} s (staging folder)")
        mailboxes = workdir / "mailboxes.yaml"
        mailboxes.write_text(yaml.safe_dump([{"id": "bench", "host": "127.0.0.1", "port": dovecot.port,
                                              "username": USER, "password_env": "BENCH_IMAP_PASSWORD",
                                              "ssl": False, "channel_address": INBOX_ADDRESS}]))
        env = dict(extra_env or {})
        env.update({"INGEST_MAILBOXES_FILE": str(mailboxes), "INGEST_IMAP_POLL_SECONDS": "1",
                    "BENCH_IMAP_PASSWORD": PASSWORD})
        amqp = resources.vhost()
        urls = {spec.name: resources.database(spec.name) for spec in e2e.SERVICES}
        bench = e2e.start_stack(amqp, urls, workdir, extra_env=env)
        bench.amqp = amqp
        try:
            with e2e.AddedSubscriber(amqp) as subscriber:
                release(dovecot, "Warm")
                subscriber.wait_for({m.message_id for m in warm})
                e2e.wait_idle(amqp)
                ids = {m.message_id for m in mail}
                pids = dict(bench.pids)
                cpu_before = e2e.cpu_snapshot(pids)
                cpu_before["dovecot"] = _dovecot_cpu(dovecot)
                moved_at = time.monotonic()
                moved = release(dovecot)
                log(f"  {moved} emails moved into INBOX; ingest polls every 1 s and drains the backlog …")
                reported = {"at": time.monotonic()}

                def progress(done: int, total: int) -> None:
                    if time.monotonic() - reported["at"] >= 15:
                        reported["at"] = time.monotonic()
                        log(f"    … {done}/{total} stored")

                complete = subscriber.wait_for(ids, progress=progress)
                cpu_after = e2e.cpu_snapshot(pids)
                cpu_after["dovecot"] = _dovecot_cpu(dovecot)
                with subscriber.lock:
                    stored = [subscriber.seen[i] for i in ids if i in subscriber.seen]
                elapsed = (max(stored) - moved_at) if stored else None
                e2e.wait_idle(amqp)
                result = {
                    "messages": len(mail), "stored": len(stored), "complete": complete, "fill_seconds": fill_s,
                    "seconds": round(elapsed, 2) if elapsed else None,
                    "emails_per_s": round(len(stored) / elapsed, 1) if elapsed else None,
                    "cpu_ms_per_email": e2e.cpu_per_email_ms(cpu_before, cpu_after, len(stored)),
                    "peak_rss_mb": e2e.peak_rss_mb(bench.pids),
                    "duplicates_delivered": subscriber.deliveries - len(subscriber.seen),
                }
        finally:
            bench.stack.stop()
            lingering = [name for name, pid in bench.pids.items() if _running(pid)]
            for name in lingering:  # seen once: a service still running after the stack's stop
                log(f"  ({name} still running after the stack stopped: killed)")
                os.kill(bench.pids[name], signal.SIGKILL)
        return result
    finally:
        dovecot.stop()
