"""The test stacks themselves (mailroom_testing). Their service processes are forked from a
preloading process (mailroom_testing.preload): they must behave as the fresh processes production
starts — children of the test, each in its own session, stopping on SIGTERM with exit 0, failing at
start with the same exit code and message. The ports they bind are never ones the kernel may give
an outgoing connection meanwhile."""

import os
import socket
import subprocess
import sys

import pytest

from mailroom_testing import stack as stack_module
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


def test_free_ports_lie_below_the_ephemeral_range_in_a_slice_of_their_own_per_worker(monkeypatch):
    top = stack_module._ephemeral_ports_start()
    picked = {}
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
        monkeypatch.setattr(stack_module, "_next_port", None)
        picked[worker] = {stack_module.free_port() for _ in range(20)}
    assert all(stack_module.LOWEST_PORT <= port < top for ports in picked.values() for port in ports)
    assert len(picked["gw0"]) == len(picked["gw1"]) == 20
    middle = stack_module.LOWEST_PORT + (top - stack_module.LOWEST_PORT) // 2
    assert max(picked["gw0"]) < middle <= min(picked["gw1"])
    with socket.socket() as taken:  # a port something listens on is skipped
        monkeypatch.setattr(stack_module, "_next_port", None)
        port = stack_module.free_port()
        monkeypatch.setattr(stack_module, "_next_port", None)
        taken.bind(("127.0.0.1", port))
        taken.listen()
        assert stack_module.free_port() == port + 1
