"""`make run` on a machine without a broker says exactly how to get one (and starts nothing)."""

import shutil
import subprocess
import sys
from pathlib import Path

MAILROOM = shutil.which("mailroom") or str(Path(sys.executable).parent / "mailroom")


def test_without_a_broker_mailroom_run_explains_how_to_start_one(tmp_path):
    result = subprocess.run([MAILROOM, "run"], capture_output=True, text=True, timeout=60,
                            env={"AMQP_URI": "amqp://guest:secret@127.0.0.1:1/", "MAILROOM_VAR_DIR": str(tmp_path),
                                 "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1
    assert "mailroom needs RabbitMQ and none answers at amqp://guest:***@127.0.0.1:1/" in result.stderr
    assert "rabbitmq-server" in result.stderr and "AMQP_URI=" in result.stderr
    assert "secret" not in result.stderr  # the password is never printed
    assert not list(tmp_path.glob("*.db"))  # nothing was migrated or started
