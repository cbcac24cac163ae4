"""End-to-end: a real stack (ingest + SMTP listener, contacts, conversations as `mailroom-service`
processes on a fresh vhost and fresh PostgreSQL databases), concurrent SMTP clients, and an
external pika subscriber on `conversations.events` / `message_added` that confirms every message
was stored in its conversation. No HTTP: the API may require bearer tokens.

With `replicas` > 1 (bench/run.py --replicas N) every one of those processes runs N times, as the
Kubernetes manifests run them (deploy/k8s: each service a Deployment of 2 replicas, the SMTP
listener `mailroom-smtp` a Deployment of its own): the services' replicas compete for the same
queues (contacts, conversations) and the same intake rows (ingest: SELECT … SKIP LOCKED, woken by
the listeners' NOTIFY); the SMTP listeners each have a port and the clients are spread over them
by connection, as a Service spreads connections over pods.

Times are CLOCK_MONOTONIC (`time.monotonic()`), system-wide on Linux, so the sender process's
"250 received" and the subscriber's "message_added received" are comparable.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import smtplib
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pika
from corpus import INBOX_ADDRESS, MEMBER, TRUSTED_AUTHSERV_ID, CorpusMessage  # noqa: I001 - bench/ is on sys.path
from kombu import Connection
from replicas import clean_id, exactly_once  # bench/replicas.py
from sqlalchemy import create_engine, make_url, text

from mailroom_shared.db import normalise_url
from mailroom_shared.messaging.topology import SUBSCRIPTIONS
from mailroom_testing.specs import CONTACTS, CONVERSATIONS, INGEST
from mailroom_testing.stack import Stack, free_port

SERVICES = [INGEST, CONTACTS, CONVERSATIONS]
# The test stack's settings that a deployment does not have, put back to the services' defaults
# for every bench stack: the blocking detector (test-only: a syscall per green-thread switch) off,
# the outbox relays' fallback poll at its default instead of the tests' 0.1 s, and two parser workers
# instead of the tests' one ("" = unset).
SERVICE_DEFAULTS = {"MAILROOM_BLOCKING_DETECTION_SECONDS": "0", "OUTBOX_POLL_SECONDS": "", "INGEST_PARSE_WORKERS": ""}
INBOXES_YAML = f"""
inboxes:
  - key: support
    name: Support
    channels: [{{address: {INBOX_ADDRESS}, name: Support, primary: true}}]
    members: [{{user_id: agent-1, email: {MEMBER[1]}}}]
"""


# --- the subscriber ---------------------------------------------------------------------------


class AddedSubscriber:
    """Records when each message_added arrives (first delivery; at-least-once may repeat)."""

    def __init__(self, amqp_uri: str):
        self.amqp_uri = amqp_uri
        self.seen: dict[str, float] = {}
        self.deliveries = 0
        self.event_ids: dict[str, set[str]] = {}  # Message-ID -> CloudEvents ids (two: announced twice)
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="bench-subscriber")

    def __enter__(self) -> AddedSubscriber:
        self._thread.start()
        if not self._ready.wait(15):
            raise TimeoutError(f"subscriber did not connect: {self._error}")
        if self._error:
            raise self._error
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        try:
            connection = pika.BlockingConnection(pika.URLParameters(self.amqp_uri))
            channel = connection.channel()
            channel.basic_qos(prefetch_count=500)
            channel.exchange_declare("conversations.events", "topic", durable=True)
            queue = channel.queue_declare("bench.message_added", durable=False, exclusive=True).method.queue
            channel.queue_bind(queue, "conversations.events", "message_added")

            def on_message(ch, method, properties, body):
                now = time.monotonic()
                envelope = json.loads(body)
                key = (envelope.get("data", {}).get("rfc_message_id") or "").lower()
                with self.lock:
                    self.deliveries += 1
                    self.seen.setdefault(key, now)
                    self.event_ids.setdefault(key, set()).add(envelope.get("id"))
                ch.basic_ack(method.delivery_tag)

            channel.basic_consume(queue, on_message)
            self._ready.set()
            while not self._stop.is_set():
                connection.process_data_events(time_limit=0.05)
            connection.close()
        except BaseException as exc:  # surfaced by __enter__ / wait
            self._error = exc
            self._ready.set()

    def wait_for(self, ids: set[str], stall_timeout: float = 90.0, progress=None) -> bool:
        """Until every id has been seen; False if nothing new arrives for `stall_timeout` s."""
        last_count, last_change = -1, time.monotonic()
        while True:
            if self._error:
                raise self._error
            with self.lock:
                seen = set(self.seen)
            count = len(ids & seen)
            if count >= len(ids):
                return True
            now = time.monotonic()
            if count != last_count:
                last_count, last_change = count, now
                if progress:
                    progress(count, len(ids))
            elif now - last_change > stall_timeout:
                return False
            time.sleep(0.1)


# --- the SMTP clients (a child process: they should not share the harness's GIL) ---------------


def _sender_main(ports: list[int], messages: list[tuple[str, str, bytes]], clients: int, rate: float | None,
                 start_at: float, out) -> None:
    results: list[tuple[str, float, float, int]] = [None] * len(messages)  # type: ignore[list-item]
    errors: list[str] = []
    lock = threading.Lock()
    cursor = {"next": 0}

    def client(port: int) -> None:
        smtp = None
        while True:
            with lock:
                index = cursor["next"]
                cursor["next"] += 1
            if index >= len(messages):
                break
            message_id, sender, raw = messages[index]
            if rate:  # open loop: message i is due at start + i / rate
                delay = start_at + index / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            began = time.monotonic()
            for attempt in range(1, 31):
                try:
                    if smtp is None:
                        smtp = smtplib.SMTP("127.0.0.1", port, timeout=60)
                    smtp.sendmail(sender, [INBOX_ADDRESS], raw)
                    results[index] = (message_id, began, time.monotonic(), attempt)
                    break
                except (smtplib.SMTPException, OSError) as exc:
                    errors.append(f"{message_id}: {exc!r}"[:300])
                    try:
                        if smtp is not None:
                            smtp.close()
                    finally:
                        smtp = None
                    time.sleep(0.2)
        if smtp is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.quit()

    # client k connects to listener k mod len(ports): a Service spreads connections, not messages
    threads = [threading.Thread(target=client, args=(ports[k % len(ports)],)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.send({"results": [r for r in results if r is not None], "errors": errors[:50], "error_count": len(errors)})
    out.close()


def send_all(port: int | list[int], corpus: list[CorpusMessage], clients: int, rate: float | None = None) -> dict:
    """`port`: the SMTP listener's, or a list of listeners' ports to spread the clients over."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    payload = [(m.message_id, m.sender, m.raw) for m in corpus]
    start_at = time.monotonic() + 0.2
    ports = [port] if isinstance(port, int) else list(port)
    process = context.Process(target=_sender_main, args=(ports, payload, clients, rate, start_at, sender),
                              daemon=True)
    process.start()
    sender.close()
    return {"process": process, "receiver": receiver}


def collect(handle: dict, timeout: float = 900) -> dict:
    if not handle["receiver"].poll(timeout):
        raise TimeoutError("SMTP clients did not finish")
    result = handle["receiver"].recv()
    handle["process"].join(10)
    return result


# --- the stack ------------------------------------------------------------------------------


@dataclass
class BenchStack:
    stack: Stack
    smtp_port: int
    pids: dict[str, int] = field(default_factory=dict)
    database_urls: dict[str, str] = field(default_factory=dict)
    smtp_ports: list[int] = field(default_factory=list)  # every listener's (smtp_port first)
    replicas: int = 1
    accepted: set[str] = field(default_factory=set)  # Message-IDs answered 250 by any run_load


def start_stack(amqp_uri: str, database_urls: dict[str, str], workdir: Path,
                extra_env: dict | None = None, replicas: int = 1) -> BenchStack:
    """`replicas`: processes of each service and SMTP listeners (module docstring)."""
    workdir.mkdir(parents=True, exist_ok=True)
    inboxes = workdir / "inboxes.yaml"
    inboxes.write_text(INBOXES_YAML)
    smtp_port = free_port()
    env = {"CONVERSATIONS_INBOXES_FILE": str(inboxes), "INGEST_SMTP_PORT": str(smtp_port), "LOG_LEVEL": "WARNING",
           "INGEST_BLOB_DIR": str(workdir / "blobs"), "INGEST_TRUSTED_AUTHSERV_IDS": TRUSTED_AUTHSERV_ID,
           **SERVICE_DEFAULTS}
    env.update(extra_env or {})
    stack = Stack(services=list(SERVICES), amqp_uri=amqp_uri, database_urls=database_urls, workdir=workdir,
                  extra_env=env, replicas={spec.name: replicas for spec in SERVICES} if replicas > 1 else {})
    stack.start()
    stack.start_process("smtp", [sys.executable, "-m", "ingest.smtp_listener"], port=smtp_port)
    smtp_ports = [smtp_port]
    for number in range(2, replicas + 1):  # the listener takes its port from the environment only
        smtp_ports.append(free_port())
        stack.start_process(f"smtp-{number}", ["env", f"INGEST_SMTP_PORT={smtp_ports[-1]}", sys.executable, "-m",
                                               "ingest.smtp_listener"], port=smtp_ports[-1])
    wait_for_inbox_address(database_urls["ingest"])
    return BenchStack(stack, smtp_port, {name: p.pid for name, p in stack.processes.items()}, dict(database_urls),
                      smtp_ports, replicas)


def wait_for_inbox_address(ingest_url: str, timeout: float = 60) -> None:
    """Ready when ingest has learnt the inbox's address (from conversations' inbox_updated)."""
    engine = create_engine(normalise_url(ingest_url))
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with engine.connect() as connection:
                if connection.execute(text("SELECT count(*) FROM channels")).scalar_one():
                    return
            time.sleep(0.2)
        raise TimeoutError("ingest never learnt the inbox address")
    finally:
        engine.dispose()


def wait_idle(amqp_uri: str, timeout: float = 120, services=SERVICES) -> float:
    """Until every queue of `services` has been empty for a second (contacts may still be busy
    after the last event); returns when they first were (monotonic), so the caller can tell when
    the work caused by a batch was done."""
    queues = [sub.queue_name for sub in SUBSCRIPTIONS if sub.service in {s.name for s in services}]
    deadline = time.monotonic() + timeout
    quiet_since = None
    with Connection(amqp_uri) as connection:
        channel = connection.default_channel
        while time.monotonic() < deadline:
            busy = sum(channel.queue_declare(q, passive=True).message_count for q in queues)
            if busy == 0:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 1.0:
                    return quiet_since
            else:
                quiet_since = None
            time.sleep(0.2)
    return time.monotonic()


def peak_rss_mb(pids: dict[str, int]) -> dict[str, float | None]:
    peaks: dict[str, float | None] = {}
    for name, pid in pids.items():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            peaks[name] = None
            continue
        line = next((x for x in status.splitlines() if x.startswith("VmHWM:")), None)
        peaks[name] = round(int(line.split()[1]) / 1024, 1) if line else None
    return peaks


_TICKS = os.sysconf("SC_CLK_TCK")


# bench/run.py --private-postgres: only this postmaster and its children are "postgres" (the
# machine's shared server serves other people's work meanwhile)
POSTMASTER_PID: int | None = None


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # [0] state, [1] ppid, …
    except OSError:
        return None


def _process_cpu(pid: int) -> float:
    fields = _stat(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each service process, by PostgreSQL and RabbitMQ (all their
    processes), and by the whole machine (busy time of all cores, from /proc/stat). And
    `children:<name>`: what the process's children used (ingest's parser workers: living ones
    and those it reaped), which `<name>` itself leaves out."""
    snapshot = {name: _process_cpu(pid) for name, pid in pids.items()}
    servers = {"postgres": 0.0, "rabbitmq": 0.0}
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm.startswith("python") and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
        if comm == "postgres":
            fields = _stat(int(entry.name))
            if fields is None or (POSTMASTER_PID and POSTMASTER_PID not in (int(entry.name), int(fields[1]))):
                continue
            # + cutime + cstime: the postmaster reaps every backend, so a backend that ended between two
            # snapshots still counts (the sum over living processes alone could even go down)
            servers["postgres"] += sum(int(x) for x in fields[11:15]) / _TICKS
        elif comm.startswith("beam"):
            servers["rabbitmq"] += _process_cpu(int(entry.name))
    snapshot.update(servers)
    for name, pid in pids.items():
        snapshot[f"children:{name}"] = _descendants_cpu(pid, children)
    cpu = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    snapshot["machine_busy"] = (sum(map(int, cpu)) - int(cpu[3]) - int(cpu[4])) / _TICKS  # all but idle, iowait
    return snapshot


def _descendants_cpu(pid: int, children: dict[int, list[int]]) -> float:
    """CPU seconds of `pid`'s descendants: the reaped ones (its cutime + cstime) and the living ones."""
    fields = _stat(pid)
    total = (int(fields[13]) + int(fields[14])) / _TICKS if fields else 0.0
    for child in children.get(pid, []):
        total += _process_cpu(child) + _descendants_cpu(child, children)
    return total


def commit_snapshot(database_urls: dict[str, str]) -> dict[str, int]:
    """Committed transactions so far in each service's database (pg_stat_database): divided by
    the emails stored, it shows how well group commit and intake batches share transactions."""
    counts = {}
    for service, url in database_urls.items():
        parsed = make_url(normalise_url(url))
        if not parsed.drivername.startswith("postgresql"):
            continue
        engine = create_engine(parsed)
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT pg_stat_clear_snapshot()"))
                counts[service] = connection.execute(text(
                    "SELECT xact_commit FROM pg_stat_database WHERE datname = :name"),
                    {"name": parsed.database}).scalar_one()
        finally:
            engine.dispose()
    return counts


class ConnectionPeak:
    """The most sessions each service's database had at once while the block ran (pg_stat_activity,
    sampled every 0.5 s): what a deployment's max_connections or pooler must allow per process."""

    def __init__(self, database_urls: dict[str, str]):
        parsed = {service: make_url(normalise_url(url)) for service, url in database_urls.items()}
        self.names = {url.database: service for service, url in parsed.items()
                      if url.drivername.startswith("postgresql")}
        self.peak: dict[str, int] = {}
        self._url = next(iter(parsed.values()), None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="bench-connections")

    def __enter__(self) -> ConnectionPeak:
        if self.names:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        engine = create_engine(self._url.set(database="postgres"), pool_size=1)
        try:
            while not self._stop.is_set():
                with contextlib.suppress(Exception), engine.connect() as connection:
                    rows = connection.execute(text(
                        "SELECT datname, count(*) FROM pg_stat_activity WHERE datname = ANY(:names) GROUP BY datname"),
                        {"names": list(self.names)}).all()
                    for name, count in rows:
                        service = self.names[name]
                        self.peak[service] = max(self.peak.get(service, 0), count)
                self._stop.wait(0.5)
        finally:
            engine.dispose()


def cpu_per_email_ms(before: dict[str, float], after: dict[str, float], emails: int) -> dict[str, float]:
    return {name: round((after[name] - before.get(name, 0.0)) * 1000 / max(emails, 1), 2) for name in after}


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": round(ordered[-1] * 1000, 1)}


def run_load(bench: BenchStack, subscriber: AddedSubscriber, corpus: list[CorpusMessage], clients: int,
             rate: float | None = None, log=print) -> dict:
    """Send `corpus` (closed loop, or paced at `rate` msgs/s) and wait for every message_added."""
    ids = {m.message_id for m in corpus}
    commits_before = commit_snapshot(bench.database_urls)
    cpu_before = cpu_snapshot(bench.pids)
    handle = send_all(bench.smtp_ports or bench.smtp_port, corpus, clients, rate)

    reported = {"at": time.monotonic()}

    def progress(done: int, total: int) -> None:
        if time.monotonic() - reported["at"] >= 15:
            reported["at"] = time.monotonic()
            log(f"    … {done}/{total} stored")

    with ConnectionPeak(bench.database_urls) as connections:
        complete = subscriber.wait_for(ids, progress=progress)
    cpu_after = cpu_snapshot(bench.pids)
    time.sleep(0.6)  # backends report their counters to pg_stat_database at most every 0.5 s
    commits_after = commit_snapshot(bench.database_urls)
    sent = collect(handle)
    results = sent["results"]
    if not results:
        raise RuntimeError(f"no message was accepted: {sent['errors'][:5]}")
    bench.accepted.update(r[0] for r in results)
    first_send = min(r[1] for r in results)
    last_accept = max(r[2] for r in results)
    stored = [subscriber.seen[r[0]] for r in results if r[0] in subscriber.seen]
    latencies = [subscriber.seen[r[0]] - r[2] for r in results if r[0] in subscriber.seen]
    last_stored = max(stored) if stored else time.monotonic()
    elapsed = last_stored - first_send
    return {
        "messages": len(corpus), "accepted": len(results), "stored": len(stored), "complete": complete,
        "clients": clients, "offered_rate": rate, "seconds": round(elapsed, 2),
        "emails_per_s": round(len(stored) / elapsed, 1) if elapsed > 0 else None,
        "smtp_accept_per_s": round(len(results) / (last_accept - first_send), 1),
        "latency_ms": percentiles(latencies), "smtp_errors": sent["error_count"],
        "smtp_error_samples": sent["errors"][:5],
        "mb_per_s": round(sum(len(m.raw) for m in corpus) / elapsed / 1e6, 2) if elapsed > 0 else None,
        # CPU per stored email (ms): the harness's own SMTP clients and subscriber are in machine_busy
        "cpu_ms_per_email": cpu_per_email_ms(cpu_before, cpu_after, len(stored)),
        # every committed transaction, the harness's few polls included
        "commits_per_email": {name: round((commits_after[name] - commits_before.get(name, 0)) / max(len(stored), 1), 2)
                              for name in commits_after},
        # sessions on each service's database at most, all its processes (the listeners' in ingest's)
        "peak_db_connections": connections.peak,
    }


def env_for_bench() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(("BENCH_", "OUTBOX_", "INGEST_"))}


def count_exactly_once(bench: BenchStack, subscriber: AddedSubscriber) -> dict:
    """Every email the listeners accepted on this stack stored once (bench/replicas.exactly_once):
    conversations' inbound messages and contacts' inbound timeline entries by Message-ID, and the
    message_added events the subscriber received. Call it when the stack is idle (wait_idle)."""
    stored = _column(bench.database_urls["conversations"],
                     "SELECT rfc_message_id FROM messages WHERE direction = 'in'")
    timeline = _column(bench.database_urls["contacts"],
                       "SELECT rfc_message_id FROM timeline_entries WHERE direction = 'in'")
    with subscriber.lock:
        events = {clean_id(m): set(ids) for m, ids in subscriber.event_ids.items()}
        deliveries = subscriber.deliveries
    return exactly_once(bench.accepted, stored, events, deliveries, timeline)


def _column(url: str, sql: str) -> list:
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as connection:
            return list(connection.execute(text(sql)).scalars())
    finally:
        engine.dispose()
