"""Idle CPU: every service (ingest, contacts, conversations, outbound, notifier) and the SMTP
listener started on a fresh vhost and fresh databases, left alone once started and quiet, and
their CPU time (utime + stime from /proc) read over `seconds` (60 by default), with PostgreSQL's
and RabbitMQ's: what the stack costs while no mail arrives (relays, intake processor, delivery
workers and health checks polling). Reported in ms of CPU per second (10 = 1 % of a core), and
wake-ups per second of each process (voluntary context switches of all its threads, from
/proc/<pid>/task/*/status: how often it leaves a wait, whatever the wait was for)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import e2e  # bench/ is on sys.path
from outbound_bench import SERVICES as OUTBOUND_STACK

from mailroom_testing.specs import NOTIFIER
from mailroom_testing.stack import Stack, free_port

SERVICES = [*OUTBOUND_STACK, NOTIFIER]


def measure(resources, workdir: Path, seconds: float = 60.0, extra_env: dict | None = None, log=print) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    amqp = resources.vhost()
    urls = {spec.name: resources.database(spec.name) for spec in SERVICES}
    inboxes = workdir / "inboxes.yaml"
    inboxes.write_text(e2e.INBOXES_YAML)
    smtp_port = free_port()
    env = {"CONVERSATIONS_INBOXES_FILE": str(inboxes), "INGEST_SMTP_PORT": str(smtp_port), "LOG_LEVEL": "WARNING",
           "INGEST_BLOB_DIR": str(workdir / "blobs"), "OUTBOUND_SMTP_HOST": "127.0.0.1",
           "OUTBOUND_SMTP_PORT": str(free_port()), **e2e.SERVICE_DEFAULTS}
    env.update(extra_env or {})
    stack = Stack(services=list(SERVICES), amqp_uri=amqp, database_urls=urls, workdir=workdir, extra_env=env)
    try:
        stack.start()
        stack.start_process("smtp", [sys.executable, "-m", "ingest.smtp_listener"], port=smtp_port)
        e2e.wait_for_inbox_address(urls["ingest"])
        e2e.wait_idle(amqp, services=SERVICES)
        time.sleep(5)  # start-up work (migrations' connections, first polls) out of the window
        pids = {name: p.pid for name, p in stack.processes.items()}
        log(f"  {len(pids)} processes started and quiet; reading their CPU for {seconds:.0f} s …")
        before, began, woke = e2e.cpu_snapshot(pids), time.monotonic(), wakeups(pids)
        time.sleep(seconds)
        after, elapsed, woke_after = e2e.cpu_snapshot(pids), time.monotonic() - began, wakeups(pids)
    finally:
        stack.stop()
    per_second = {name: round((after[name] - before[name]) * 1000 / elapsed, 2) for name in after}
    services = {name: per_second[name] for name in pids}
    wakeups_per_s = {name: round((woke_after[name] - woke[name]) / elapsed, 1) for name in pids}
    return {"seconds": round(elapsed, 1), "cpu_ms_per_s": per_second, "wakeups_per_s": wakeups_per_s,
            "services_cpu_ms_per_s": round(sum(services.values()), 2), "env": extra_env or {}}


def wakeups(pids: dict[str, int]) -> dict[str, int]:
    """Voluntary context switches so far of every thread of each process (its parser workers and
    other children not included)."""
    counts = {}
    for name, pid in pids.items():
        total = 0
        for status in Path(f"/proc/{pid}/task").glob("*/status"):
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("voluntary_ctxt_switches:"):
                        total += int(line.split()[1])
            except OSError:  # a thread that ended meanwhile
                continue
        counts[name] = total
    return counts
