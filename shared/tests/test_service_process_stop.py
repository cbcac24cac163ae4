"""mailroom-service's graceful stop against a real broker: a message whose handler is still running
when SIGTERM arrives is finished and acknowledged before the consumer's connection closes, however
long past the cancel it takes (within the grace period). nameko alone closed the connection about
a second after the last cancel (kombu's idle drain), so a longer handler lost its ack and the
message was delivered again (messaging.consumer_stop)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import yaml
from kombu import Connection

from mailroom_shared.config import nameko_config
from mailroom_testing.stack import free_port

pytestmark = pytest.mark.integration

QUEUE = "service-stop-test"
HANDLER_SECONDS = 3.0  # well past the second nameko used to wait after the cancel

SERVICE = textwrap.dedent(f"""
    import os

    import eventlet
    from kombu import Queue
    from nameko.messaging import consume


    class SlowService:
        name = "slow"

        @consume(Queue({QUEUE!r}, durable=True))
        def handle(self, body):
            marker = os.environ["MARKER_DIR"]
            open(os.path.join(marker, "started"), "w").close()
            eventlet.sleep({HANDLER_SECONDS})
            open(os.path.join(marker, "done"), "w").close()
""")


def queue_counts(amqp_uri: str) -> tuple[int, int]:
    """(messages ready, consumers) of the test queue."""
    with Connection(amqp_uri) as connection:
        declared = connection.default_channel.queue_declare(QUEUE, passive=True)
        return declared.message_count, declared.consumer_count


def wait_for(probe, timeout: float, what: str, log) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout}s:\n{log()[-3000:]}")
        time.sleep(0.05)


def start_service(amqp_uri: str, tmp_path, module: str, source: str, env: dict):
    """mailroom-service running `module` (written from `source`) in its own session; returns
    (the process, a function that reads its log)."""
    (tmp_path / f"{module}.py").write_text(source)
    config = tmp_path / "nameko.yaml"
    config.write_text(yaml.safe_dump(nameko_config(amqp_uri, f"127.0.0.1:{free_port()}")))
    log_path = tmp_path / "service.log"
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    with open(log_path, "ab") as output:
        process = subprocess.Popen([sys.executable, "-m", "mailroom_shared.service_process", "--config", str(config),
                                    module], env={**os.environ, "PYTHONPATH": path, **env}, stdout=output,
                                   stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True)
    return process, lambda: log_path.read_text(errors="replace")


def test_sigterm_waits_for_a_running_handler_and_acks_its_message(amqp_uri, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    process, log = start_service(amqp_uri, tmp_path, "slow_service", SERVICE, {
        "MARKER_DIR": str(markers), "MAILROOM_BLOCKING_DETECTION_SECONDS": "1"})
    try:
        def consuming() -> bool:
            try:
                return queue_counts(amqp_uri)[1] == 1
            except Exception:  # not declared yet
                return False

        wait_for(consuming, 60, "no consumer on the queue", log)
        with Connection(amqp_uri) as connection:
            connection.Producer().publish({}, exchange="", routing_key=QUEUE, serializer="json")
        wait_for((markers / "started").exists, 30, "the handler did not start", log)

        os.killpg(process.pid, signal.SIGTERM)
        exit_code = process.wait(30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    assert (markers / "done").exists(), log()[-3000:]
    assert exit_code == 0, log()[-3000:]
    ready, consumers = queue_counts(amqp_uri)
    assert (ready, consumers) == (0, 0), f"the message is back in the queue: its ack was lost\n{log()[-3000:]}"


BLOCKING_SERVICE = textwrap.dedent(f"""
    import time

    from kombu import Queue
    from nameko.messaging import consume


    class BlockingService:
        name = "blocking"

        @consume(Queue({QUEUE + "-blocking"!r}, durable=True, auto_delete=True))
        def handle_by_crunching(self, body):
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                sum(range(1000))
""")


def test_a_handler_that_keeps_the_event_loop_is_reported_in_the_services_log(amqp_uri, tmp_path):
    """MAILROOM_BLOCKING_DETECTION_SECONDS (the tests' detector) watches a started service: a
    handler doing CPU-bound work for longer is in the log with its place."""
    from mailroom_shared.blocking import BLOCKED_MARKER

    process, log = start_service(amqp_uri, tmp_path, "blocking_service", BLOCKING_SERVICE,
                                 {"MAILROOM_BLOCKING_DETECTION_SECONDS": "0.5"})
    try:
        def consuming() -> bool:
            try:
                with Connection(amqp_uri) as connection:
                    return connection.default_channel.queue_declare(
                        QUEUE + "-blocking", passive=True).consumer_count == 1
            except Exception:  # not declared yet
                return False

        wait_for(consuming, 60, "no consumer on the queue", log)
        with Connection(amqp_uri) as connection:
            connection.Producer().publish({}, exchange="", routing_key=QUEUE + "-blocking", serializer="json")
        wait_for(lambda: BLOCKED_MARKER in log(), 30, "the blocked loop was not reported", log)
        assert "handle_by_crunching" in log()[log().index(BLOCKED_MARKER):]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
