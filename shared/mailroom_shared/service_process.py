"""`mailroom-service --config FILE MODULE`: one service process, a drop-in for `nameko run` that
stops gracefully exactly once.

`nameko run` starts `runner.stop()` for every SIGTERM it gets. A second signal while the first
stop is under way (a terminal's Ctrl-C reaching the process group and the parent's SIGTERM; a
supervisor that signals twice) stops the runner twice: nameko then fails with "Trying to re-send()
an already-triggered event" and `KeyError: <RpcConsumer …>`, and the process hangs until it is
killed (seen in 6 of 9 runs of `mailroom run`). Here:
- the first SIGTERM or SIGINT starts one graceful stop: consumers stop taking messages, in-flight
  workers finish and are acknowledged, then the providers stop (the outbox relay publishes what
  committed); the process exits 0;
- further signals during the stop are logged and ignored;
- a stop still running after the grace period (`MAILROOM_STOP_GRACE_SECONDS`, default 25 s, under
  Kubernetes' default 30 s) kills the workers; unacknowledged messages are redelivered to another
  consumer and the process exits 1;
- the AMQP consumers stop without idle waits and keep their connection until the in-flight
  messages are acknowledged (messaging.consumer_stop); once stopped, the process exits without
  tearing down the interpreter (os._exit after the atexit handlers and a flush of the logs):
  that teardown took 0.5 s of CPU and, under the tests' blocking detector, ended in SIGALRM.

The config file is read as `nameko run` reads it (`${VAR:default}` expands from the environment).
"""

from __future__ import annotations

import eventlet

eventlet.monkey_patch()  # first, before anything imports socket or threading (as `nameko run` does)

import argparse  # noqa: E402
import atexit  # noqa: E402
import contextlib  # noqa: E402
import errno  # noqa: E402
import logging  # noqa: E402
import logging.config  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

import yaml  # noqa: E402
from nameko.cli.main import setup_yaml_parser  # noqa: E402
from nameko.cli.run import import_service  # noqa: E402
from nameko.runners import ServiceRunner  # noqa: E402

from mailroom_shared import config as mailroom_config  # noqa: E402
from mailroom_shared.blocking import detect_blocking, stop_detecting_blocking  # noqa: E402
from mailroom_shared.messaging import consumer_stop  # noqa: E402
from mailroom_shared.messaging.connection import amqp_ssl  # noqa: E402

log = logging.getLogger("mailroom.service_process")


class GracefulRunner:
    def __init__(self, runner: ServiceRunner, grace_seconds: float, on_started=None):
        self.runner = runner
        self.grace_seconds = grace_seconds
        self.on_started = on_started  # called once every container has started
        self.stopping = False
        self.killed = False

    def on_signal(self, signum, frame) -> None:
        # runs in the main loop, not in a green thread: only hand the work to one
        if self.stopping:
            log.info("%s received while stopping; the stop already under way continues",
                     signal.Signals(signum).name)
            return
        self.stopping = True
        log.info("%s received: finishing in-flight work (at most %gs)", signal.Signals(signum).name,
                 self.grace_seconds)
        eventlet.spawn_n(self._stop)

    def _stop(self) -> None:
        deadline = eventlet.spawn_after(self.grace_seconds, self._kill)
        try:
            self.runner.stop()
        finally:
            deadline.cancel()

    def _kill(self) -> None:
        self.killed = True
        log.error("graceful stop took over %gs: killing the workers still running", self.grace_seconds)
        self.runner.kill()

    def run(self) -> int:
        start_failed = False
        try:
            self.runner.start()
            if self.on_started is not None:
                self.on_started()
        except Exception:
            if not self.stopping:
                raise
            # a stop asked for while starting (a test's stack torn down before ingest's parser
            # workers were up: the signal reached them too) is no crash: the stop under way
            # still stops what did start
            log.warning("the start was cut short by the stop", exc_info=True)
            start_failed = True
        waiter = eventlet.spawn(self.runner.wait)
        while True:
            try:
                waiter.wait()
            except OSError as exc:  # a signal interrupted the hub's wait
                if exc.errno == errno.EINTR:
                    continue
                raise
            break
        return 1 if self.killed or start_failed else 0


def exit_process(code: int) -> None:
    """End the stopped service process now. Everything it holds was closed by the stop; what is
    left is the interpreter's teardown of its modules (0.5 s of CPU with five services' imports,
    over a second on a busy node), which does nothing a dead process needs. The atexit handlers
    still run and the logs are flushed."""
    stop_detecting_blocking()  # its alarm would kill the process (SIGALRM) on a slow exit
    try:
        atexit._run_exitfuncs()  # logging.shutdown among them
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # closed, or a pipe whose reader is gone
                stream.flush()
        os._exit(code)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailroom-service", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="nameko config file (YAML)")
    parser.add_argument("services", nargs="+", help="module[:Class] of the service, e.g. contacts.service")
    args = parser.parse_args(argv)

    setup_yaml_parser()  # ${VAR:default} in the config, as `nameko run`
    with open(args.config) as handle:
        service_config = yaml.safe_load(handle) or {}
    if "LOGGING" in service_config:
        logging.config.dictConfig(service_config["LOGGING"])
    else:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    if service_config.get("AMQP_URI") and "AMQP_SSL" not in service_config:
        # AMQP over TLS (amqps:// and MAILROOM_AMQP_*): nameko's consumers and dispatchers read AMQP_SSL
        try:
            tls = amqp_ssl(service_config["AMQP_URI"])
        except mailroom_config.ConfigError as exc:
            print(f"mailroom-service: {exc}", file=sys.stderr)
            return 2
        if tls:
            service_config["AMQP_SSL"] = tls
    consumer_stop.install()
    runner = ServiceRunner(service_config)
    for path in args.services:
        # only the service classes: a module also holds its kit base, whose health and metrics
        # entrypoints would make `nameko run`'s discovery take it for a service of its own
        for service_cls in import_service(path):
            if getattr(service_cls, "name", None):
                runner.add_service(service_cls)
    blocking = mailroom_config.env_float("MAILROOM_BLOCKING_DETECTION_SECONDS", 0.0, minimum=0.0)
    # armed once the service has started: its start (werkzeug compiling every route, declaring the
    # topology) keeps the loop once, before anything is served, and took over a second on a busy
    # CI machine; what the detector is for is a handler that blocks the running service
    graceful = GracefulRunner(runner, mailroom_config.env_float("MAILROOM_STOP_GRACE_SECONDS", 25.0, minimum=1.0),
                              on_started=(lambda: detect_blocking(blocking)) if blocking else None)
    signal.signal(signal.SIGTERM, graceful.on_signal)
    signal.signal(signal.SIGINT, graceful.on_signal)
    exit_process(graceful.run())


if __name__ == "__main__":
    sys.exit(main())
