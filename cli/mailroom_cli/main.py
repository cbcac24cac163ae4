"""`mailroom run | migrate | explain | docs`: the composition root for a local run and for
operators. The services never import this package."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SERVICES = ("ingest", "contacts", "conversations", "outbound", "notifier")


def available_services() -> list[str]:
    """Services that have a nameko module (outbound/notifier may still be empty packages)."""
    return [name for name in SERVICES if importlib.util.find_spec(f"{name}.service") is not None]


def migrations_dir(service: str) -> Path:
    return Path(importlib.import_module(service).__file__).parent / "migrations"


def cmd_migrate(args) -> int:
    from mailroom_shared import config
    from mailroom_shared.migrations import upgrade

    for service in [args.service] if args.service else available_services():
        url = config.database_url(service)
        print(f"migrating {service}: {config.redact_url(url)}")
        upgrade(service, migrations_dir(service), url)
    return 0


def broker_answers(amqp_uri: str) -> str | None:
    from kombu import Connection

    try:
        with Connection(amqp_uri, connect_timeout=3) as connection:
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


def cmd_run(args) -> int:
    import yaml

    from mailroom_shared import config

    amqp_uri = config.amqp_uri()
    error = broker_answers(amqp_uri)
    if error:
        print(BROKER_HELP.format(uri=config.redact_url(amqp_uri), error=error), file=sys.stderr)
        return 1
    services = available_services()
    os.environ.setdefault("CONVERSATIONS_INBOXES_FILE", str(Path("config/inboxes.yaml").resolve()))
    for service in services:
        from mailroom_shared.migrations import upgrade

        upgrade(service, migrations_dir(service), config.database_url(service))
    var = config.var_dir()
    http = os.environ.get("MAILROOM_HTTP_ADDRESS", "127.0.0.1:8000")
    nameko_config = var / "nameko.yaml"
    nameko_config.write_text(yaml.safe_dump({
        "AMQP_URI": amqp_uri, "WEB_SERVER_ADDRESS": http, "max_workers": 10,
        "LOGGING": {"version": 1, "disable_existing_loggers": False,
                    "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
                    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
                    "root": {"level": os.environ.get("LOG_LEVEL", "INFO"), "handlers": ["console"]}},
    }))
    children = {
        "services": subprocess.Popen([sys.executable, "-m", "nameko", "run", "--config", str(nameko_config),
                                      *[f"{s}.service" for s in services]]),
        "smtp": subprocess.Popen([sys.executable, "-m", "ingest.smtp_listener"]),
    }
    from ingest import config as ingest_config

    smtp_host, smtp_port = ingest_config.smtp_address()
    print(f"""
mailroom is starting: {', '.join(services)}
  HTTP API      http://{http}/api/   (e.g. curl http://{http}/api/inboxes)
  SMTP intake   {smtp_host}:{smtp_port}   demo inbox: support@mailroom.test
  try:          swaks --server {smtp_host}:{smtp_port} --to support@mailroom.test
  databases     {', '.join(config.redact_url(config.database_url(s)) for s in services)}
  broker        {config.redact_url(amqp_uri)}
Ctrl-C stops everything gracefully.
""", flush=True)

    def stop(*_):
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while all(child.poll() is None for child in children.values()):
            time.sleep(0.5)
    finally:
        stop()
        for child in children.values():
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
    return max(child.returncode or 0 for child in children.values())


def cmd_explain(args) -> int:
    from ingest.cli import explain

    return explain(args)


def cmd_docs(args) -> int:
    from mailroom_cli.docs import generate

    for path in generate(Path(args.output)):
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailroom", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run every service and the SMTP listener locally").set_defaults(func=cmd_run)
    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("--service", choices=SERVICES)
    migrate.set_defaults(func=cmd_migrate)
    explain = commands.add_parser("explain", help="what ingest concludes about a raw message")
    from ingest.cli import add_arguments

    add_arguments(explain)
    explain.set_defaults(func=cmd_explain)
    docs = commands.add_parser("docs", help="generate docs/events.asyncapi.yaml and docs/openapi.yaml")
    docs.add_argument("--output", default="docs")
    docs.set_defaults(func=cmd_docs)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
