"""Runs mailroom services as real processes (`mailroom-service`, the SMTP listener), the way they run
in production, against a test's own vhost and databases."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from kombu import Connection

from mailroom_shared.blocking import BLOCKED_MARKER
from mailroom_shared.config import nameko_config
from mailroom_shared.messaging.topology import SUBSCRIPTIONS, declare_topology
from mailroom_shared.migrations import upgrade
from mailroom_shared.routing import service_for_path
from mailroom_testing import preload


@dataclass(frozen=True)
class ServiceSpec:
    name: str  # service name, e.g. "contacts"
    module: str  # nameko service module, e.g. "contacts.service"
    migrations: Path  # the service's alembic script directory


LOWEST_PORT = 10_000
_next_port: int | None = None
_port_lock = threading.Lock()


def _ephemeral_ports_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A port nothing listens on, for a process about to bind it. Not one bind(0) hands out: those
    lie in the kernel's ephemeral range, where any outgoing connection (to PostgreSQL, RabbitMQ, a
    service) may take it as its local port before the service binds it, and the service fails with
    "Address already in use" (seen in the suite). The ports below that range are never given to
    outgoing connections; each pytest-xdist worker takes its own slice of them, so two workers never
    pick the same one, and a process starts at an offset of its pid in its slice."""
    global _next_port
    top = _ephemeral_ports_start()
    workers = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1), 1)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) % workers if worker.isdigit() else 0
    size = (top - LOWEST_PORT) // workers
    if size < 100:  # a range configured unusually low: ask the kernel
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]
    first = LOWEST_PORT + index * size
    with _port_lock:
        if _next_port is None:
            _next_port = os.getpid() % size
        for _ in range(size):
            port = first + _next_port
            _next_port = (_next_port + 1) % size
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue  # something listens there (or is bound to it)
                return port
    raise RuntimeError(f"no free port in {first}-{first + size - 1}")


def wait_for_port(port: int, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@dataclass
class Stack:
    services: list[ServiceSpec]
    amqp_uri: str
    database_urls: dict[str, str]
    workdir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)  # service -> its HTTP port
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    # sent with every request unless the call gives the same header (an empty value drops it)
    default_headers: dict[str, str] = field(default_factory=dict)
    commands: dict[str, tuple[list[str], int | None]] = field(default_factory=dict)  # name -> (argv, port)
    migrate_on_start: bool = True  # False: the databases are at head already (copies of migrated ones)
    # service -> processes of it (default 1): the extras, named `<service>-2`, … with HTTP ports of
    # their own, compete for the service's queues and database as a Deployment's replicas do
    replicas: dict[str, int] = field(default_factory=dict)
    # True: service processes are forked from a process that imported the services once
    # (mailroom_testing.preload; the pytest plugin's stacks), not started from scratch
    preloaded: bool = False

    def url(self, path: str) -> str:
        service = service_for_path(path.split("?", 1)[0])
        if service not in self.ports:
            raise KeyError(f"no running service serves {path}")
        return f"http://127.0.0.1:{self.ports[service]}{path}"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "AMQP_URI": self.amqp_uri,
            "MAILROOM_VAR_DIR": str(self.workdir / "var"),
            "OUTBOX_POLL_SECONDS": "0.1",
            # a service that keeps its event loop to itself for over 1 s fails the test (stop())
            "MAILROOM_BLOCKING_DETECTION_SECONDS": "1",
            # one parser process per ingest (production: 2): each costs ~1.7 s of CPU to start and
            # the suite starts hundreds of stacks; the pool's behaviour with several workers and
            # its deadlines are tested directly (ingest's test_intake_batches)
            "INGEST_PARSE_WORKERS": "1",
            "PYTHONUNBUFFERED": "1",
        })
        for service, url in self.database_urls.items():
            env[f"{service.upper()}_DATABASE_URL"] = url
        env.update(self.extra_env)
        return env

    def migrate(self) -> None:
        for spec in self.services:
            upgrade(spec.name, spec.migrations, self.database_urls[spec.name])

    def start(self) -> Stack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.migrate_on_start:
            self.migrate()
        with Connection(self.amqp_uri) as connection:
            declare_topology(connection)
        # One process per service, as in production (nameko binds one HTTP server per service).
        for spec in self.services:
            self.ports[spec.name] = free_port()
            config_path = self.workdir / f"nameko-{spec.name}.yaml"
            config_path.write_text(yaml.safe_dump(nameko_config(self.amqp_uri, f"127.0.0.1:{self.ports[spec.name]}")))
            self.start_process(spec.name, [sys.executable, "-m", "mailroom_shared.service_process",
                                           "--config", str(config_path), spec.module])
        for spec in self.services:
            self.wait_for_http(spec.name)
        # the extra replicas once the first ones are up (the first has seeded what starting seeds)
        for spec in self.services:
            for name in self.replica_names(spec.name)[1:]:
                self.start_replica(spec, name)
        self.wait_for_consumers()
        return self

    def replica_names(self, service: str) -> list[str]:
        """The process names of a service: `ingest`, then `ingest-2`, … (Stack.replicas)."""
        return [service] + [f"{service}-{i}" for i in range(2, self.replicas.get(service, 1) + 1)]

    def start_replica(self, spec: ServiceSpec, name: str) -> None:
        """Another process of `spec`'s service, named `name`, on an HTTP port of its own."""
        self.ports[name] = free_port()
        config_path = self.workdir / f"nameko-{name}.yaml"
        config_path.write_text(yaml.safe_dump(nameko_config(self.amqp_uri, f"127.0.0.1:{self.ports[name]}")))
        self.start_process(name, [sys.executable, "-m", "mailroom_shared.service_process",
                                  "--config", str(config_path), spec.module])
        self.wait_for_http(name)

    def wait_for_http(self, service: str, timeout: float = 60) -> None:
        try:
            wait_for_port(self.ports[service], timeout, self.processes[service])
        except Exception as exc:
            raise RuntimeError(f"{service} did not start: {exc}\n{self.log(service)[-4000:]}") from exc

    def start_process(self, name: str, argv: list[str], port: int | None = None, timeout: float = 60) -> None:
        self.commands[name] = (argv, port)
        if self.preloaded and argv[1:3] == ["-m", "mailroom_shared.service_process"]:
            process = preload.preloader().spawn(argv[3:], self.env, self.workdir, self.workdir / f"{name}.log")
        else:
            log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - the child process owns it
            process = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                       cwd=self.workdir, start_new_session=True, preexec_fn=preload.child_guard())
        self.processes[name] = process
        if port is not None:
            try:
                wait_for_port(port, timeout, process)
            except Exception as exc:
                raise RuntimeError(f"{name} did not start: {exc}\n{self.log(name)[-4000:]}") from exc

    def wait_for_consumers(self, timeout: float = 30) -> None:
        """Every subscription queue of the started services has a consumer (so events flow)."""
        names = {spec.name for spec in self.services}
        # a queue is shared by the replicas of its service: each of them consumes from it
        queues = {sub.queue_name: self.replicas.get(sub.service, 1) for sub in SUBSCRIPTIONS if sub.service in names}
        deadline = time.monotonic() + timeout
        with Connection(self.amqp_uri) as connection:
            channel = connection.default_channel
            while time.monotonic() < deadline:
                waiting = [q for q, wanted in queues.items()
                           if channel.queue_declare(q, passive=True).consumer_count < wanted]
                if not waiting:
                    return
                time.sleep(0.1)
        logs = "\n".join(self.log(spec.name)[-2000:] for spec in self.services)
        raise TimeoutError(f"no consumer on {waiting}:\n{logs}")

    def restart_process(self, name: str) -> None:
        """Start a process again exactly as before (after stop_process or kill_process)."""
        argv, port = self.commands[name]
        self.start_process(name, argv, port=port if port is not None else self.ports.get(name))
        if name in self.ports:
            self.wait_for_http(name)

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_process(self, name: str, timeout: float = 20) -> int | None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return None if process is None else process.returncode
        os.killpg(process.pid, signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            return process.wait()

    def kill_process(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def stop(self) -> None:
        # a process that ended before the teardown died during the test (the ones a test stopped or
        # killed on purpose went through stop_process/kill_process, which forget them)
        died = {name: process.returncode for name, process in self.processes.items() if process.poll() is not None}
        # SIGTERM everything first, then wait (a service process stops in about half a second)
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for name, process in list(self.processes.items()):
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            self.processes.pop(name, None)
        self.assert_event_loops_never_blocked()
        if died:
            name, code = next(iter(died.items()))
            raise AssertionError(f"{', '.join(f'{n} (exit {c})' for n, c in died.items())} ended during the test; "
                                 f"the log of {name}:\n{self.log(name)[-3000:]}")

    def assert_event_loops_never_blocked(self) -> None:
        """No service kept its event loop busy for over a second (see service_process)."""
        blocked = {name: log for name in self.commands if BLOCKED_MARKER in (log := self.log(name))}
        if blocked:
            name, log = next(iter(blocked.items()))
            at = log.index(BLOCKED_MARKER)
            raise AssertionError(f"the event loop of {', '.join(blocked)} was blocked:\n{log[at - 200:at + 3000]}")

    # --- HTTP helpers for tests -------------------------------------------------------------

    def request(self, method: str, path: str, body=None, headers: dict | None = None,
                raw: bytes | None = None) -> tuple[int, object]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.url(path), data=data, method=method)
        request.add_header("Content-Type", "application/json" if raw is None else "message/rfc822")
        for key, value in {**self.default_headers, **(headers or {})}.items():
            if value:
                request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                payload = response.read()
                status = response.status
                content_type = response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as error:
            payload, status, content_type = error.read(), error.code, error.headers.get("Content-Type", "")
        if "json" in content_type:
            return status, json.loads(payload)
        return status, payload

    def get(self, path: str, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body=None, **kwargs):
        return self.request("POST", path, body, **kwargs)

    def eventually(self, probe, timeout: float = 15.0, interval: float = 0.1):
        """Poll `probe()` until it returns something truthy (events are asynchronous)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = probe()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")
