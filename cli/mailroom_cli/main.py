"""`mailroom run | migrate | explain | docs`: the composition root for a local run and for
operators. The services never import this package."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# First, before any command imports a service: flanker's address parser, built quietly (see
# mailroom_shared.addresses; ingest imports flanker too, and whoever imports it first decides).
import mailroom_shared.addresses  # noqa: F401
from mailroom_cli import blobs, dead_letters, quarantine
from mailroom_shared.config import SERVICE_NAMES


def migrations_dir(service: str) -> Path:
    return Path(importlib.import_module(service).__file__).parent / "migrations"


def cmd_migrate(args) -> int:
    from mailroom_shared import config
    from mailroom_shared.migrations import upgrade

    for service in [args.service] if args.service else SERVICE_NAMES:
        url = config.database_url(service)
        print(f"migrating {service}: {config.redact_url(url)}")
        upgrade(service, migrations_dir(service), url)
    return 0


def _die_with_parent() -> None:
    """Children get SIGTERM when `mailroom run` dies, however it dies (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def broker_answers(amqp_uri: str) -> str | None:
    from mailroom_shared.messaging.connection import amqp_connection

    try:
        with amqp_connection(amqp_uri, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as exc:
        return str(exc) or type(exc).__name__
    return None


BROKER_HELP = """\
mailroom needs RabbitMQ and none answers at {uri} ({error}).
Start one, then run `make run` again:
  - Debian/Ubuntu:  sudo apt-get install -y rabbitmq-server && sudo rabbitmq-server -detached
  - macOS:          brew install rabbitmq && brew services start rabbitmq
  - Docker:         docker run -d --name rabbitmq -p 5672:5672 -p 15672:15672 rabbitmq:3-management
or point AMQP_URI at an existing broker, e.g. AMQP_URI=amqp://user:pass@host:5672/vhost make run"""


def _dev_notifier_key(var: Path) -> str:
    from cryptography.fernet import Fernet

    path = var / "dev-notifier-secret-key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(Fernet.generate_key().decode())
    return path.read_text().strip()


def _connector_settings_for_development(var: Path) -> None:
    """Chat and form channels (docs/channels.md) work under `make run`: a Fernet key kept in var/
    (so channels created in one run still open in the next) and connectors on this machine allowed."""
    os.environ.setdefault("MAILROOM_CONNECTOR_ALLOW_PRIVATE_TARGETS", "true")
    if os.environ.get("MAILROOM_CONNECTOR_SECRET_KEY"):
        return
    key_file = var / "connector-secret.key"
    if not key_file.exists():
        from cryptography.fernet import Fernet

        key_file.write_bytes(Fernet.generate_key())
        key_file.chmod(0o600)
    os.environ["MAILROOM_CONNECTOR_SECRET_KEY"] = key_file.read_text().strip()


def _mailbox_settings_for_development(var: Path) -> None:
    """Mailboxes added through the API (docs/mailboxes.md) work under `make run`: a Fernet key kept
    in var/ for their secrets, and IMAP servers and token endpoints on this machine without TLS."""
    os.environ.setdefault("INGEST_IMAP_ALLOW_PLAINTEXT", "true")
    if os.environ.get("INGEST_MAILBOX_SECRET_KEY"):
        return
    key_file = var / "ingest-mailbox-secret.key"
    if not key_file.exists():
        from cryptography.fernet import Fernet

        key_file.write_bytes(Fernet.generate_key())
        key_file.chmod(0o600)
    os.environ["INGEST_MAILBOX_SECRET_KEY"] = key_file.read_text().strip()


def cmd_run(args) -> int:
    import yaml

    from mailroom_shared import config
    from mailroom_shared.config import nameko_config

    amqp_uri = config.amqp_uri()
    error = broker_answers(amqp_uri)
    if error:
        print(BROKER_HELP.format(uri=config.redact_url(amqp_uri), error=error), file=sys.stderr)
        return 1
    services = SERVICE_NAMES
    os.environ.setdefault("CONVERSATIONS_INBOXES_FILE", str(Path("config/inboxes.yaml").resolve()))
    # webhooks to local receivers, and a development key for the notifier's stored secrets
    # (var/dev-notifier-secret-key, like the dev JWT secret); deployments set none of these
    os.environ.setdefault("NOTIFIER_WEBHOOK_ALLOW_PRIVATE", "true")
    os.environ.setdefault("NOTIFIER_ALLOW_HTTP_WEBHOOKS", "true")
    if not os.environ.get("NOTIFIER_SECRET_KEY"):
        os.environ["NOTIFIER_SECRET_KEY"] = _dev_notifier_key(config.var_dir())
    for service in services:
        from mailroom_shared.migrations import upgrade

        upgrade(service, migrations_dir(service), config.database_url(service))
    var = config.var_dir()
    _connector_settings_for_development(var)
    _mailbox_settings_for_development(var)
    http_host, _, http_port = os.environ.get("MAILROOM_HTTP_ADDRESS", "127.0.0.1:8000").rpartition(":")
    base_port = int(os.environ.get("MAILROOM_SERVICE_BASE_PORT", "8100"))
    backends = {service: ("127.0.0.1", base_port + i) for i, service in enumerate(services)}
    children: dict[str, subprocess.Popen] = {}
    for service, (host, port) in backends.items():
        config_path = var / f"nameko-{service}.yaml"
        config_path.write_text(yaml.safe_dump(nameko_config(amqp_uri, f"{host}:{port}",
                                                            os.environ.get("LOG_LEVEL", "INFO"))))
        children[service] = _start_child([sys.executable, "-m", "mailroom_shared.service_process",
                                          "--config", str(config_path), f"{service}.service"])
    children["smtp"] = _start_child([sys.executable, "-m", "ingest.smtp_listener"])
    from ingest.settings import load as load_ingest_settings
    from mailroom_shared.devproxy import serve_in_thread

    proxy = serve_in_thread(http_host, int(http_port), backends)
    http = f"{http_host}:{http_port}"
    ingest_settings = load_ingest_settings(mailboxes=False)
    smtp_host, smtp_port = ingest_settings.smtp_host, ingest_settings.smtp_port
    ready = wait_until_ready(http, timeout=60, children=children)
    exited = [name for name, child in children.items() if child.poll() is not None]
    if exited:  # e.g. a service that does not import: its traceback is above
        print(f"mailroom run: {', '.join(exited)} stopped while starting (see its error above); stopping the rest",
              file=sys.stderr, flush=True)
    else:
        print(f"""
mailroom is {'ready' if ready else 'starting (not ready after 60 s: see the log above)'}: {', '.join(services)}
  web inbox     http://{http}/   sign in as agent-1 (the demo inbox's member; docs/web-inbox.md)
  HTTP API      http://{http}/api/   every request needs a bearer token; one for the demo inbox's member:
                export TOKEN=$(.venv/bin/mailroom dev-token --user agent-1 --email agent@mailroom.test)
                curl -H "Authorization: Bearer $TOKEN" http://{http}/api/inboxes
  SMTP intake   {smtp_host}:{smtp_port}   demo inbox: support@mailroom.test
  try:          swaks --server {smtp_host}:{smtp_port} --to support@mailroom.test
  databases     {', '.join(config.redact_url(config.database_url(s)) for s in services)}
  broker        {config.redact_url(amqp_uri)}
Ctrl-C stops everything gracefully.
""", flush=True)

    # Each child gets exactly one SIGTERM, from here: the children run in their own sessions, so a
    # terminal's Ctrl-C reaches only this process, and a second signal is not passed on (a service
    # told twice to stop used to stop twice and hang).
    signalled: set[str] = set()
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True
        for name, child in children.items():
            if name not in signalled and child.poll() is None:
                signalled.add(name)
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopping and all(child.poll() is None for child in children.values()):
            time.sleep(0.5)
    finally:
        stop()
        proxy.shutdown()
        for child in children.values():
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    return max(child.returncode or 0 for child in children.values())


def _start_child(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(argv, preexec_fn=_die_with_parent, start_new_session=True)


def wait_until_ready(http: str, timeout: float, children: dict[str, subprocess.Popen] | None = None) -> bool:
    """Ready = ingest answers its health check and knows the inbox addresses.
    Not ready as soon as one of `children` has exited."""
    import json
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if children and any(child.poll() is not None for child in children.values()):
            return False
        try:
            with urllib.request.urlopen(f"http://{http}/health/ingest", timeout=2) as response:  # noqa: S310
                if json.load(response).get("channels", 0) > 0:
                    return True
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    return False


def cmd_explain(args) -> int:
    from ingest.cli import explain

    return explain(args)


def cmd_docs(args) -> int:
    from mailroom_cli.docs import generate

    for path in generate(Path(args.output)):
        print(f"wrote {path}")
    return 0


def cmd_dev_token(args) -> int:
    """A development bearer token, signed with MAILROOM_JWT_SECRET (or the local dev secret under
    MAILROOM_VAR_DIR that `mailroom run` uses when none is set). docs/access.md lists the claims."""
    from mailroom_shared.auth import AuthConfigError, mint_token

    try:
        token = mint_token(args.user, email=args.email, teams=args.team, roles=args.role,
                           seconds=int(args.hours * 3600))
    except AuthConfigError as exc:
        print(f"mailroom dev-token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailroom", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run every service and the SMTP listener locally").set_defaults(func=cmd_run)
    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("--service", choices=SERVICE_NAMES)
    migrate.set_defaults(func=cmd_migrate)
    explain = commands.add_parser("explain", help="what ingest concludes about a raw message")
    explain.add_argument("path", help="a raw RFC 5322 message (.eml), or - for standard input")
    explain.add_argument("--json", action="store_true", help="print the conclusion as JSON")
    explain.add_argument("--trusted", action="store_true",
                         help="treat the sender as a trusted forwarder (an inbox member); its forward is "
                              "attributed only if it is also authenticated")
    explain.add_argument("--authenticated", action="store_true",
                         help="treat the sender as authenticated (as by a trusted Authentication-Results, "
                              "DKIM or the team's own IMAP mailbox)")
    explain.set_defaults(func=cmd_explain)
    docs = commands.add_parser("docs", help="generate docs/events.asyncapi.yaml and docs/openapi.yaml")
    docs.add_argument("--output", default="docs")
    docs.set_defaults(func=cmd_docs)
    dev_token = commands.add_parser(
        "dev-token", help="print a development bearer token, e.g. for the demo inbox: dev-token --user agent-1")
    dev_token.add_argument("--user", required=True, help="user id (the token's sub)")
    dev_token.add_argument("--email", help="the user's email")
    dev_token.add_argument("--team", action="append", default=[], help="a team id (repeatable)")
    dev_token.add_argument("--role", action="append", default=[], choices=["account_access", "super_admin", "intake"],
                           help="a role (repeatable)")
    dev_token.add_argument("--hours", type=float, default=12.0, help="validity (default 12)")
    dev_token.set_defaults(func=cmd_dev_token)
    dead_letters.add_commands(commands)
    quarantine.add_commands(commands)
    blobs.add_commands(commands)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
