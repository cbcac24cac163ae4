"""The tests' service processes are forked from a preloading process (mailroom_testing.preload):
they must behave as the fresh processes production starts — children of the test, each in its own
session, stopping on SIGTERM with exit 0, failing at start with the same exit code and message."""

import os
import subprocess
import sys

import pytest

from mailroom_testing.preload import preloader
from mailroom_testing.specs import CONTACTS, INGEST

pytestmark = pytest.mark.integration


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()


def test_a_preloaded_service_is_the_tests_child_in_a_session_of_its_own_and_stops_on_sigterm(stack_factory):
    stack = stack_factory([INGEST, CONTACTS])
    for name in ("ingest", "contacts"):
        process = stack.processes[name]
        fields = _stat(process.pid)
        assert int(fields[1]) == os.getpid(), "re-parented to the test process (it can wait for it)"
        assert int(fields[3]) == process.pid, "a session (and process group) of its own, as Popen's"
    assert stack.processes["ingest"].pid != stack.processes["contacts"].pid
    status, health = stack.get("/health/contacts")
    assert status == 200, health
    assert stack.stop_process("contacts") == 0
    assert "SIGTERM received" in stack.log("contacts")


def test_a_preloaded_service_that_cannot_start_fails_as_a_fresh_process_does(tmp_path):
    args = ["--config", str(tmp_path / "missing.yaml"), "contacts.service"]
    fresh = subprocess.run([sys.executable, "-m", "mailroom_shared.service_process", *args],
                           capture_output=True, text=True, cwd=tmp_path, timeout=60)
    log = tmp_path / "preloaded.log"
    forked = preloader().spawn(args, dict(os.environ), str(tmp_path), str(log))
    assert forked.wait(60) == fresh.returncode == 1
    assert "No such file or directory" in fresh.stderr
    assert "No such file or directory" in log.read_text()
    with pytest.raises(ProcessLookupError):
        os.kill(forked.pid, 0)  # reaped by our wait: gone
