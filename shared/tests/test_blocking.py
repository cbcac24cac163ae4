"""The event-loop blocking detector that every integration test runs with: a green thread that
keeps the loop busy past the limit is reported with where it was; cooperative waiting is not."""

import subprocess
import sys
import textwrap

from mailroom_shared.blocking import BLOCKED_MARKER


def run(body: str) -> str:
    script = textwrap.dedent("""
        import eventlet; eventlet.monkey_patch()
        import logging, time
        logging.basicConfig(level=logging.INFO)
        from mailroom_shared.blocking import detect_blocking
        detect_blocking(0.5)
    """) + textwrap.dedent(body)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_cpu_bound_work_on_the_event_loop_is_reported_with_its_place():
    log = run("""
        def crunch():
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                sum(range(1000))
        eventlet.spawn(crunch).wait()
    """)
    assert BLOCKED_MARKER in log and "crunch" in log


def test_waiting_cooperatively_is_not_reported():
    log = run("""
        def patient():
            for _ in range(15):
                eventlet.sleep(0.1)
        eventlet.spawn(patient).wait()
    """)
    assert BLOCKED_MARKER not in log


def test_a_service_is_watched_once_it_has_started_not_while_it_starts():
    """A service's start may keep the loop once (werkzeug compiles every route), before anything
    is served: service_process arms the detector when every container has started."""
    script = textwrap.dedent("""
        import eventlet; eventlet.monkey_patch()
        import logging, time
        logging.basicConfig(level=logging.INFO)
        from mailroom_shared.blocking import detect_blocking
        from mailroom_shared.service_process import GracefulRunner

        def crunch(seconds):
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                sum(range(1000))

        class Runner:
            def start(self):
                crunch(1.2)  # slow_start

            def wait(self):
                def handler_after_start():
                    crunch(1.2)
                eventlet.spawn(handler_after_start).wait()

        exit(GracefulRunner(Runner(), 5, on_started=lambda: detect_blocking(0.5)).run())
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(BLOCKED_MARKER) == 1, result.stderr
    assert "handler_after_start" in result.stderr and "slow_start" not in result.stderr
