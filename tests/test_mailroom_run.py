"""The `mailroom` command: `make run` on a machine without a broker says exactly how to get one
(and starts nothing), every service in SERVICE_NAMES is migrated, a service that stops while
starting stops the wait at once, and no command prints flanker's parser-table warnings."""

import importlib.util
import shutil
import subprocess
import sys
import time
from pathlib import Path

from mailroom_cli.main import wait_until_ready
from mailroom_shared.config import SERVICE_NAMES

MAILROOM = shutil.which("mailroom") or str(Path(sys.executable).parent / "mailroom")

MESSAGE = b"""\
From: Alice Example <alice@example.com>
To: support@mailroom.test
Cc: "Bob, from sales" <bob@example.org>, carol@example.net
Subject: Where is my order?
Message-ID: <order-1@example.com>
Date: Mon, 01 Jan 2024 10:00:00 +0000
Content-Type: text/plain; charset=utf-8

Hello, my order has not arrived.
"""


def test_without_a_broker_mailroom_run_explains_how_to_start_one(tmp_path):
    result = subprocess.run([MAILROOM, "run"], capture_output=True, text=True, timeout=60,
                            env={"AMQP_URI": "amqp://guest:secret@127.0.0.1:1/", "MAILROOM_VAR_DIR": str(tmp_path),
                                 "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1
    assert "mailroom needs RabbitMQ and none answers at amqp://guest:***@127.0.0.1:1/" in result.stderr
    assert "rabbitmq-server" in result.stderr and "AMQP_URI=" in result.stderr
    assert "secret" not in result.stderr  # the password is never printed
    assert not list(tmp_path.glob("*.db"))  # nothing was migrated or started


def test_mailroom_migrate_migrates_every_service(tmp_path):
    result = subprocess.run([MAILROOM, "migrate"], capture_output=True, text=True, timeout=120,
                            env={"MAILROOM_VAR_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert sorted(path.stem for path in tmp_path.glob("*.db")) == sorted(SERVICE_NAMES)


def test_waiting_for_readiness_ends_when_a_service_process_has_stopped():
    # e.g. a service module that does not import: `mailroom run` says so instead of waiting 60 s
    child = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    child.wait(30)
    started = time.monotonic()
    assert wait_until_ready("127.0.0.1:1", timeout=30, children={"notifier": child}) is False
    assert time.monotonic() - started < 5


def flanker_with_stale_parser_tables(site: Path) -> Path:
    """A copy of the installed flanker without parser tables, first on PYTHONPATH: what a fresh
    install looks like to ply 3.11, which finds flanker's shipped tables stale and rebuilds
    them on every import (where it cannot write them: a read-only image, another user's venv)."""
    package = Path(importlib.util.find_spec("flanker").submodule_search_locations[0])
    shutil.copytree(package, site / "flanker", ignore=shutil.ignore_patterns("__pycache__", "*_parsetab.py"))
    return site


def test_mailroom_explain_prints_no_parser_table_warnings(tmp_path):
    site = flanker_with_stale_parser_tables(tmp_path / "site")
    eml = tmp_path / "order.eml"
    eml.write_bytes(MESSAGE.replace(b"\n", b"\r\n"))
    result = subprocess.run([MAILROOM, "explain", str(eml)], capture_output=True, text=True, timeout=60,
                            env={"PYTHONPATH": str(site), "MAILROOM_VAR_DIR": str(tmp_path / "var"),
                                 "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert "Where is my order?" in result.stdout and "alice@example.com" in result.stdout
    assert "unreachable" not in result.stderr
    assert result.stderr == ""
