"""The faults of a chaos run: planned from the seed, carried out one after another by a thread
while the mail is being sent, each with its timestamps.

- `kill`: SIGKILL to a service process's whole process group (nothing runs its shutdown code),
  a pause of `down_s`, then the same command started again (retried if it fails to come up);
- `rabbitmq_restart`: the private broker stopped (`rabbitmqctl stop`, or SIGKILL of the VM with
  `--rabbit-mode kill`), `down_s`, started again on the same ports and data;
- `rabbitmq_close_connections`: `rabbitmqctl close_all_connections` (the broker stays up and
  closes every client connection from its side: each client must notice and reconnect);
- `postgres_restart`: `pg_ctl stop -m fast` (every session terminated, open transactions rolled
  back), `down_s`, `pg_ctl start`;
- `relay_restart`: the SMTP relay (the outbound half's sink) stopped and started on its port.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field


@dataclass
class Fault:
    kind: str  # kill | rabbitmq_restart | rabbitmq_close_connections | postgres_restart | relay_restart
    target: str  # process name, "rabbitmq", "postgres", "relay"
    at_s: float  # planned, seconds after the send started
    down_s: float
    started_s: float | None = None  # seconds after the send started
    down_at_s: float | None = None  # the target was gone
    back_at_s: float | None = None  # the target was up again
    started_at: str | None = None  # wall clock (UTC)
    back_at: str | None = None
    attempts: int = 0
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    # GET /health/ready of each service while the broker was away and once it was back
    readiness: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def plan(rng: random.Random, processes: list[str], window_s: float, *, rabbit: bool = True,
         postgres: bool = True, close_connections: bool = True, start: float = 0.08,
         end: float = 0.85) -> list[Fault]:
    """One kill per process, one broker restart, one closing of every connection by the broker
    and one database restart, each at a random moment of [start, end] × window_s; sorted by time."""
    faults = [Fault("kill", name, rng.uniform(start, end) * window_s, rng.uniform(0.2, 3.0)) for name in processes]
    if rabbit:
        # down long enough (with the stop and the start, ~12–16 s) for the services' readiness
        # checks to notice (a consumer is stale after 10 s without its loop turning)
        faults.append(Fault("rabbitmq_restart", "rabbitmq", rng.uniform(start + 0.07, end - 0.05) * window_s,
                            rng.uniform(8.0, 10.0)))
    if postgres:
        faults.append(Fault("postgres_restart", "postgres", rng.uniform(start + 0.07, end - 0.05) * window_s,
                            rng.uniform(0.5, 3.0)))
    if close_connections:
        faults.append(Fault("rabbitmq_close_connections", "rabbitmq", rng.uniform(start, end) * window_s, 0.0))
    return sorted(faults, key=lambda f: f.at_s)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class FaultInjector:
    """Runs `faults` against `actions` (kind → callable(fault, since) doing the fault and the
    recovery) in a thread, relative to `t0` (monotonic)."""

    def __init__(self, faults: list[Fault], actions: dict, t0: float, log):
        self.faults = faults
        self.actions = actions
        self.t0 = t0
        self.log = log
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="chaos-faults")

    def since(self) -> float:
        return time.monotonic() - self.t0

    def start(self) -> FaultInjector:
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        for fault in self.faults:
            delay = fault.at_s - self.since()
            if delay > 0 and self._stop.wait(delay):
                return
            if self._stop.is_set():
                return
            fault.started_s, fault.started_at = self.since(), _now()
            self.log(f"  ! {fault.kind} {fault.target} at {fault.started_s:.1f} s (planned {fault.at_s:.1f} s)")
            try:
                self.actions[fault.kind](fault, self.since)
            except Exception as exc:  # noqa: BLE001 - recorded; the run reports it
                fault.error = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:2000]
                self.log(f"  ! {fault.kind} {fault.target} FAILED: {fault.error[:300]}")
            fault.back_at = _now()
            if fault.back_at_s is not None:
                self.log(f"    {fault.target} back at {fault.back_at_s:.1f} s")


def restart_process(stack, name: str, fault: Fault, since, attempts: int = 6) -> None:
    """Start a killed process of `stack` (mailroom_testing's Stack) again, retrying a start that
    fails (the broker or the database may be restarting at that moment)."""
    for attempt in range(1, attempts + 1):
        fault.attempts = attempt
        try:
            stack.restart_process(name)
            return
        except Exception as exc:  # noqa: BLE001 - retried
            fault.notes.append(f"start {attempt} failed at {since():.1f} s: {str(exc)[:300]}")
            stack.kill_process(name)
            time.sleep(2)
    raise RuntimeError(f"{name} did not come back after {attempts} starts")


def readiness(ports: dict[str, int]) -> dict[str, int | str]:
    """Each service's `GET /health/ready` status code (or the error): a service whose consumers
    lost the broker should say it is not ready (503), and ready (200) again once reconnected."""
    import urllib.error
    import urllib.request

    codes: dict[str, int | str] = {}
    for service, port in ports.items():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=3) as response:  # noqa: S310
                codes[service] = response.status
        except urllib.error.HTTPError as error:
            codes[service] = error.code
        except OSError as exc:
            codes[service] = type(exc).__name__
    return codes


class ReadinessSampler:
    """While the broker is away (from its stop until its start returned): each service's
    readiness about once a second, in a thread; notes when every service first said it was not
    ready."""

    def __init__(self, fault: Fault, ports: dict[str, int], since):
        self.fault, self.ports, self.since = fault, ports, since
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="chaos-readiness")

    def __enter__(self) -> ReadinessSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(15)
        self.fault.readiness["while_down"] = self.samples
        self.fault.readiness.setdefault("all_not_ready_at_s", None)

    def _run(self) -> None:
        while not self._stop.is_set():
            codes = readiness(self.ports)
            self.samples.append({"at_s": round(self.since(), 1), **codes})
            if "all_not_ready_at_s" not in self.fault.readiness and all(c != 200 for c in codes.values()):
                self.fault.readiness["all_not_ready_at_s"] = round(self.since(), 1)
            self._stop.wait(1.0)


def watch_readiness(fault: Fault, ports: dict[str, int], since, timeout: float = 30.0) -> None:
    """After the broker is back: until every service says ready (or `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        codes = readiness(ports)
        absent = any(code == 404 for code in codes.values())  # a build without readiness probes
        if absent or all(code == 200 for code in codes.values()) or time.monotonic() > deadline:
            fault.readiness["back"] = codes
            fault.readiness["back_checked_at_s"] = round(since(), 2)
            return
        time.sleep(0.5)
