"""`make bench`: throughput, latency, scale and memory of mailroom on this machine.

    .venv/bin/python bench/run.py [--quick] [--n N] [--scale-rows R] [--skip-scale] [--skip-outbound] [--skip-imap]
                                  [--profile] [--only outbound|imap|idle|inbox-list] [--skip-inbox-list]
                                  [--replicas N] [--private-postgres]

Environment overrides: BENCH_N (emails end to end, default 5000), BENCH_SCALE_ROWS (existing
messages for the scale run, default 1,000,000), BENCH_CLIENTS (concurrent SMTP clients, 8),
BENCH_SEED (corpus seed, 6), BENCH_OUTBOUND_N (replies in the outbound run, default 1000; 300 with
--quick), BENCH_OUTBOUND_SEND_S (seconds of reply requests at most, 30), BENCH_SINK_DELAY_MS (0),
BENCH_IMAP_N (emails in the IMAP run, a local Dovecot mailbox polled by ingest: 1000; 300 with --quick),
BENCH_IDLE_S (seconds the idle stack's CPU is read: 60; 20 with --quick), BENCH_SKIP_LATENCY (set: no
half-rate latency batch, when only the CPU per email of the saturated batch is wanted), BENCH_LATENCY_RATE
(emails/s of the latency batch instead of half the saturated rate: an A/B at the same offered load),
BENCH_INBOX_CONVERSATIONS (conversations in the inbox-list run, bench/inbox_list_bench.py: 10,000).
--replicas N: after the end-to-end run on empty databases, the same emails again on a fresh stack
with N processes of ingest, contacts, conversations and N SMTP listeners (bench/e2e.py); the rate,
CPU per email by service and by process, exactly-once counts and the ratio N/1 are printed and
written under "replicas". N processes of each hold about N times the database connections (up to
20 per pool, a few pools per process): a shared server's max_connections (100 by default) may not
have room while other stacks run; --private-postgres runs every part of the bench on a PostgreSQL
cluster of its own (chaos/infra.py: max_connections 500), started and removed by the run.
Prints a table and writes bench/results/latest.json. Every run uses a fresh RabbitMQ vhost and
fresh PostgreSQL databases, dropped afterwards. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import corpus as corpus_module  # noqa: E402
import e2e  # noqa: E402
import floor  # noqa: E402
import idle  # noqa: E402
import imap_bench  # noqa: E402
import inbox_list_bench  # noqa: E402
import outbound_bench  # noqa: E402 - not "outbound": bench/ is on sys.path and would shadow the service package
import parse_bench  # noqa: E402
import replicas as replicas_module  # noqa: E402
import seed  # noqa: E402

from mailroom_shared.migrations import upgrade  # noqa: E402
from mailroom_testing import infra  # noqa: E402

RESULTS = BENCH / "results"
TARGETS = {"e2e_emails_per_s": 200, "e2e_latency_p99_ms_at_half_rate": 500, "scale_ratio": 0.8,
           "parse_vs_stdlib": 0.5}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Infra:
    """Fresh vhosts and databases on the local servers; everything made is dropped at the end."""

    def __init__(self):
        self.amqp_base, _ = infra.base_amqp_uri()
        management = os.environ.get("MAILROOM_TEST_RABBIT_MANAGEMENT_URL", infra.LOCAL_MANAGEMENT)
        self.rabbit = infra.RabbitAdmin(self.amqp_base, management)
        admin_url, _ = infra.postgres_admin_url()
        self.postgres = infra.PostgresAdmin(admin_url)
        self.vhosts: list[str] = []
        self.databases: list[str] = []

    def vhost(self) -> str:
        vhost = self.rabbit.create_vhost()
        self.vhosts.append(vhost)
        return self.rabbit.uri_for(vhost)

    def database(self, prefix: str) -> str:
        url = self.postgres.create_database(f"bench_{prefix}")
        self.databases.append(url)
        return url

    def cleanup(self) -> None:
        for vhost in self.vhosts:
            self.rabbit.delete_vhost(vhost)
        for url in self.databases:
            try:
                self.postgres.drop_database(url)
            except Exception as exc:  # noqa: BLE001 - keep cleaning the rest
                log(f"could not drop {url.rsplit('/', 1)[-1]}: {exc}")
        self.postgres.dispose()


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal")))

    def version(argv: list[str]) -> str | None:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None

    return {"cpus": os.cpu_count(), "cpu": cpu, "memory_gb": round(mem_kb / 1024 / 1024, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "postgresql": version(["psql", "--version"]), "rabbitmq_management": _rabbit_version()}


def _rabbit_version() -> str | None:
    import base64
    import urllib.parse
    import urllib.request

    management = urllib.parse.urlsplit(os.environ.get("MAILROOM_TEST_RABBIT_MANAGEMENT_URL", infra.LOCAL_MANAGEMENT))
    url = f"http://{management.hostname}:{management.port}/api/overview"
    request = urllib.request.Request(url)  # noqa: S310 - a fixed http URL
    token = base64.b64encode(f"{management.username}:{management.password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - a fixed http URL
            return json.loads(response.read()).get("rabbitmq_version")
    except Exception:  # noqa: BLE001 - informative only
        return None


def auth_env() -> dict[str, str]:
    """The stack's services may require a JWT secret to start (bearer auth on HTTP)."""
    try:
        from mailroom_testing.tokens import TEST_ENV
    except ImportError:
        return {}
    return dict(TEST_ENV)


# --- the phases -----------------------------------------------------------------------------


def run_floor(resources: Infra, count: int) -> dict:
    amqp = resources.vhost()
    dsn = resources.database("floor")
    return floor.measure(amqp, dsn, count)


@contextmanager
def running_stack(resources: Infra, workdir: Path, scale_rows: int = 0, profile: bool = False, replicas: int = 1):
    amqp = resources.vhost()
    urls = {spec.name: resources.database(spec.name) for spec in e2e.SERVICES}
    seeded = None
    if scale_rows:
        for spec in e2e.SERVICES:
            upgrade(spec.name, spec.migrations, urls[spec.name])
        log(f"  seeding {scale_rows:,} existing messages into ingest, contacts and conversations …")
        seeded = seed.seed(urls, scale_rows)
        log(f"  seeded in {seeded['seconds']} s ({sum(d['mb'] for d in seeded['databases'].values())} MB)")
    bench = e2e.start_stack(amqp, urls, workdir, extra_env=auth_env(), replicas=replicas)
    bench.seeded = seeded
    bench.amqp = amqp
    profilers = start_profilers(bench, workdir) if profile else []
    try:
        yield bench
    finally:
        stop_profilers(profilers)
        bench.stack.stop()


def start_profilers(bench, workdir: Path) -> list:
    py_spy = shutil.which("py-spy") or os.environ.get("PY_SPY")
    if not py_spy:
        log("  (--profile: py-spy not found on PATH or $PY_SPY; no profile)")
        return []
    processes = []
    for name, pid in bench.pids.items():
        out = RESULTS / f"profile-{name}.txt"
        errors = open(workdir / f"py-spy-{name}.log", "wb")  # noqa: SIM115 - the child process owns it
        processes.append(subprocess.Popen([py_spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "50",
                                           "--output", str(out), "--nonblocking"],
                                          stdout=errors, stderr=subprocess.STDOUT))
    return processes


def stop_profilers(processes: list) -> None:
    import signal

    for process in processes:
        process.send_signal(signal.SIGINT)
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def warm_up(bench, subscriber, seed_value: int, clients: int) -> None:
    warm = corpus_module.generate(40, seed=seed_value + 1000, run_tag="warm")
    e2e.run_load(bench, subscriber, warm, clients, log=lambda _m: None)
    e2e.wait_idle(bench.amqp)


def run_e2e(resources: Infra, workdir: Path, mail: list, clients: int, seed_value: int, *, paced: bool,
            scale_rows: int = 0, profile: bool = False, window_s: float | None = None, replicas: int = 1) -> dict:
    """With `window_s`, a 200-email probe first measures the rate, and only as many emails as
    that rate stores in `window_s` seconds are sent (at least 500, at most all): keeps `make
    bench` within its time budget while the pipeline is slow. `replicas`: processes per service."""
    label = f"scale ({scale_rows:,} existing messages)" if scale_rows else "empty databases"
    if replicas > 1:
        label += f", {replicas} processes each"
    load_before = load_average()
    code = code_fingerprint()
    with running_stack(resources, workdir, scale_rows, profile, replicas) as bench, \
            e2e.AddedSubscriber(bench.amqp) as subscriber:
        warm_up(bench, subscriber, seed_value, clients)
        probe = None
        if window_s:
            probe = e2e.run_load(bench, subscriber, corpus_module.generate(200, seed=seed_value + 3,
                                                                           run_tag="probe"), clients)
            e2e.wait_idle(bench.amqp)
            fits = int((probe["emails_per_s"] or 1) * window_s)
            if fits < len(mail):
                mail = mail[:max(500, fits)]
                log(f"  probe: {probe['emails_per_s']} emails/s → {len(mail)} emails fit in {window_s:.0f} s")
        log(f"  {label}: {len(mail)} emails from {clients} SMTP clients, as fast as they are accepted …")
        saturated = e2e.run_load(bench, subscriber, mail, clients, log=log)
        log(f"  → {saturated['emails_per_s']} emails/s, {saturated['seconds']} s "
            f"({saturated['stored']}/{saturated['messages']} stored)")
        result = {"saturated": saturated, "seeded": bench.seeded, "probe": probe}
        if paced and saturated["emails_per_s"] and not os.environ.get("BENCH_SKIP_LATENCY"):
            e2e.wait_idle(bench.amqp)
            # BENCH_LATENCY_RATE pins the paced rate: an A/B whose saturated rates differ then
            # compares latency at the same offered load (half of each one's own rate does not)
            rate = float(os.environ.get("BENCH_LATENCY_RATE") or 0) or max(1.0, saturated["emails_per_s"] / 2)
            count = int(min(len(mail), max(200, rate * 30)))
            paced_mail = corpus_module.generate(count, seed=seed_value + 7, run_tag="paced")
            log(f"  latency at half that rate: {count} emails at {rate:.1f}/s …")
            result["half_rate"] = e2e.run_load(bench, subscriber, paced_mail, clients, rate=rate, log=log)
            log(f"  → p50 {result['half_rate']['latency_ms']['p50']} ms, "
                f"p99 {result['half_rate']['latency_ms']['p99']} ms")
        e2e.wait_idle(bench.amqp)
        result["peak_rss_mb"] = e2e.peak_rss_mb(bench.pids)
        result["duplicates_delivered"] = subscriber.deliveries - len(subscriber.seen)
        result["exactly_once"] = e2e.count_exactly_once(bench, subscriber)
        once = result["exactly_once"]
        log(f"  exactly once: {once['stored_once']}/{once['accepted']} accepted stored once, "
            f"{once['duplicated']} duplicated, {once['missing_count']} missing, message_added "
            f"{once['message_added_events']} events ({once['message_added_duplicated']} duplicated, "
            f"{once['message_added_redelivered']} redelivered)")
        result["replicas"] = replicas
        result["processes"] = sorted(bench.pids)
        result["load_average"] = {"before": load_before, "after": load_average()}
        result["code"] = code
        result["broker"] = broker_work(resources, bench.amqp, len(subscriber.seen))
    return result


def broker_work(resources: Infra, amqp_uri: str, emails: int) -> dict:
    """Messages RabbitMQ took into queues (each persistent: written, delivered, acked) per email
    stored, for the whole run on this vhost: the broker's work in a unit that the other load on a
    shared machine does not blur (its CPU time is the whole broker's). From the management API,
    whose statistics lag up to 5 s."""
    import urllib.parse

    time.sleep(6)
    vhost = urllib.parse.unquote(urllib.parse.urlsplit(amqp_uri).path.lstrip("/")) or "/"
    try:
        queues = json.loads(resources.rabbit._api("GET", f"/api/queues/{urllib.parse.quote(vhost, safe='')}"))
    except Exception as exc:  # noqa: BLE001 - informative only
        return {"error": str(exc)}
    by_queue = {q["name"]: (q.get("message_stats") or {}).get("publish", 0) for q in queues}
    by_queue = {name: count for name, count in by_queue.items() if count}
    total = sum(by_queue.values())
    return {"emails": emails, "enqueued": total, "enqueued_per_email": round(total / max(emails, 1), 2),
            "by_queue_per_email": {name: round(count / max(emails, 1), 2) for name, count in sorted(by_queue.items())}}


def run_outbound(resources: Infra, workdir: Path, n: int, clients: int, seed_value: int) -> dict:
    """bench/outbound_bench.py. BENCH_OUTBOUND_SEND_S (default 30; 0: always send N): seconds of
    HTTP requests at most; BENCH_SINK_DELAY_MS (default 0): the sink answers DATA that much later."""
    return outbound_bench.measure(resources, workdir, n, clients, extra_env=auth_env(), seed=seed_value,
                                  send_s=float(os.environ.get("BENCH_OUTBOUND_SEND_S", "30")),
                                  sink_delay_ms=float(os.environ.get("BENCH_SINK_DELAY_MS", "0")), log=log)


def run_imap(resources: Infra, workdir: Path, mail: list, seed_value: int) -> dict:
    """bench/imap_bench.py: the same corpus fetched from a local Dovecot by ingest's IMAP poller."""
    return imap_bench.measure(resources, workdir, mail, seed_value, extra_env=auth_env(), log=log)


def start_private_postgres(root: Path):
    """--private-postgres: a PostgreSQL cluster of the run's own (chaos/infra.py's PrivatePostgres),
    made the server of every database the bench creates (MAILROOM_TEST_POSTGRES_URL)."""
    spec = importlib.util.spec_from_file_location("chaos_infra", BENCH.parent / "chaos" / "infra.py")
    chaos_infra = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(chaos_infra)
    for path in (root.parent, root):  # the postgres user must reach its data directory inside
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o755)
    pg = chaos_infra.PrivatePostgres(root)
    pg.init()
    pg.start()
    os.environ["MAILROOM_TEST_POSTGRES_URL"] = pg.url()
    e2e.POSTMASTER_PID = int((pg.data / "postmaster.pid").read_text().split()[0])
    return pg


def postgres_headroom(resources: Infra) -> tuple[int, int]:
    """(connections in use, max_connections) on the bench's PostgreSQL server."""
    from sqlalchemy import text

    with resources.postgres.engine.connect() as connection:
        used = connection.execute(text("SELECT count(*) FROM pg_stat_activity")).scalar_one()
        limit = int(connection.execute(text("SHOW max_connections")).scalar_one())
    return used, limit


def code_fingerprint() -> dict:
    """The commit and a hash of uncommitted changes to the services' code: a stack runs what the
    checkout holds when it starts, and a shared checkout can change between two stacks of a run."""
    import hashlib

    def git(*argv: str) -> bytes:
        try:
            return subprocess.run(["git", *argv], capture_output=True, timeout=30, cwd=BENCH.parent).stdout
        except (OSError, subprocess.TimeoutExpired):
            return b""

    diff = git("diff", "HEAD", "--", "services", "shared")
    return {"commit": git("rev-parse", "--short", "HEAD").decode().strip(),
            "uncommitted": hashlib.sha256(diff).hexdigest()[:12] if diff else None}


def load_average() -> list[float]:
    """1, 5 and 15-minute load averages (/proc/loadavg): how busy the shared machine was."""
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


REPLICATED = ("ingest", "contacts", "conversations", "smtp")  # the processes --replicas multiplies


def replica_summary(run: dict, floor_rate: float | None) -> dict:
    saturated = run["saturated"]
    cpu = saturated["cpu_ms_per_email"]
    # a process with its children: ingest's parser workers parse every email
    with_children = {name: round(value + (cpu.get(f"children:{name}") or 0.0), 2) for name, value in cpu.items()
                     if not name.startswith("children:")}
    by_service = replicas_module.cpu_by_service(with_children, REPLICATED)
    services_total = round(sum(row["total"] for row in by_service.values()), 2)
    return {
        "processes_per_service": run.get("replicas", 1), "emails": saturated["messages"],
        "stored": saturated["stored"], "seconds": saturated["seconds"], "emails_per_s": saturated["emails_per_s"],
        "e2e_vs_floor": replicas_module.ratio(saturated["emails_per_s"], floor_rate),
        "latency_saturated_ms": saturated["latency_ms"],
        "cpu_ms_per_email": {"by_service": {name: row["total"] for name, row in by_service.items()},
                             "by_process": {name: row["per_process"] for name, row in by_service.items()},
                             "services_total": services_total,
                             "postgres": cpu.get("postgres"), "rabbitmq": cpu.get("rabbitmq"),
                             "machine": cpu.get("machine_busy")},
        "commits_per_email": saturated.get("commits_per_email"),
        "peak_db_connections": saturated.get("peak_db_connections"),
        "exactly_once": run.get("exactly_once"), "load_average": run.get("load_average"), "code": run.get("code"),
        "peak_rss_mb": run.get("peak_rss_mb"),
    }


def replicas_result(one: dict, many: dict, floor_rate: float | None) -> dict:
    """The 1-process and N-process runs side by side and their ratios (N / 1)."""
    single, multi = replica_summary(one, floor_rate), replica_summary(many, floor_rate)
    n = multi["processes_per_service"]
    cpu1, cpuN = single["cpu_ms_per_email"], multi["cpu_ms_per_email"]
    ratios = {"emails_per_s": replicas_module.ratio(multi["emails_per_s"], single["emails_per_s"]),
              "cpu_ms_per_email_services": replicas_module.ratio(cpuN["services_total"], cpu1["services_total"]),
              "cpu_ms_per_email_machine": replicas_module.ratio(cpuN["machine"], cpu1["machine"])}
    ratios.update({f"cpu_ms_per_email_{name}": replicas_module.ratio(cpuN["by_service"].get(name),
                                                                     cpu1["by_service"].get(name))
                   for name in REPLICATED})
    if single["code"] != multi["code"]:
        log(f"  note: the services' code changed between the two stacks ({single['code']} → {multi['code']})")
    return {"n": n, "1": single, str(n): multi, f"ratio_{n}_to_1": ratios, "same_code": single["code"] == multi["code"],
            "exactly_once": bool((single["exactly_once"] or {}).get("ok") and (multi["exactly_once"] or {}).get("ok"))}


def replicas_text(rep: dict | None) -> str:
    if not rep:
        return ""
    n = rep["n"]
    one, many, ratios = rep["1"], rep[str(n)], rep[f"ratio_{n}_to_1"]

    def num(value) -> str:
        return "-" if value is None else (f"{value:,.2f}" if isinstance(value, float) else str(value))

    def once(run: dict) -> str:
        e = run["exactly_once"] or {}
        return (f"{e.get('stored_once')}/{e.get('accepted')} once, {e.get('duplicated')}+"
                f"{e.get('message_added_duplicated')} dup, {e.get('missing_count')} miss") if e else "-"

    rows = [("emails/s (SMTP in, empty DBs)", one["emails_per_s"], many["emails_per_s"], ratios["emails_per_s"]),
            ("e2e / floor", one["e2e_vs_floor"], many["e2e_vs_floor"], None),
            ("emails stored", one["stored"], many["stored"], None)]
    for name in REPLICATED:
        per = many["cpu_ms_per_email"]["by_process"].get(name, {})
        split = " + ".join(num(v) for v in per.values())
        label = f"CPU ms/email {name}" + (" + parser workers" if name == "ingest" else "")
        rows.append((label, one["cpu_ms_per_email"]["by_service"].get(name),
                     f"{num(many['cpu_ms_per_email']['by_service'].get(name))} ({split})",
                     ratios.get(f"cpu_ms_per_email_{name}")))
    rows += [("commits/email i/c/c", "/".join(num((one["commits_per_email"] or {}).get(s)) for s in REPLICATED[:3]),
              "/".join(num((many["commits_per_email"] or {}).get(s)) for s in REPLICATED[:3]), None),
             ("CPU ms/email these services", one["cpu_ms_per_email"]["services_total"],
              many["cpu_ms_per_email"]["services_total"], ratios["cpu_ms_per_email_services"]),
             ("CPU ms/email postgres", one["cpu_ms_per_email"]["postgres"], many["cpu_ms_per_email"]["postgres"], None),
             ("CPU ms/email rabbitmq", one["cpu_ms_per_email"]["rabbitmq"], many["cpu_ms_per_email"]["rabbitmq"], None),
             ("CPU ms/email machine", one["cpu_ms_per_email"]["machine"], many["cpu_ms_per_email"]["machine"],
              ratios["cpu_ms_per_email_machine"]),
             ("peak DB connections i/c/c", "/".join(num((one["peak_db_connections"] or {}).get(s))
                                                     for s in REPLICATED[:3]),
              "/".join(num((many["peak_db_connections"] or {}).get(s)) for s in REPLICATED[:3]), None),
             ("load average before (1 min)", (one["load_average"] or {}).get("before", [None])[0],
              (many["load_average"] or {}).get("before", [None])[0], None),
             ("exactly once", once(one), once(many), "ok" if rep["exactly_once"] else "NOT OK")]
    head = ("replicas", "1 process each", f"{n} processes each", f"{n}/1")
    cells = [(a, num(b), num(c), num(d)) for a, b, c, d in rows]
    widths = [max(len(r[i]) for r in [head, *cells]) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in [head, *cells])


# --- reporting ------------------------------------------------------------------------------

# the CPU-per-email table's rows: the processes of each path (ms of CPU per email, from /proc)
CPU_ROWS = ("ingest", "contacts", "conversations", "outbound", "smtp", "dovecot", "postgres", "rabbitmq")


def cpu_table(results: dict) -> dict[str, dict[str, float]]:
    """{path: {process: ms per email, ..., "total": sum of those, "machine": all cores' busy time}}
    for SMTP in, IMAP in and outbound replies, from the runs that happened."""
    sources = {"smtp_inbound": (results.get("e2e") or {}).get("saturated"),
               "imap_inbound": results.get("imap"),
               "outbound_reply": results.get("outbound")}
    table_: dict[str, dict[str, float]] = {}
    for path, run in sources.items():
        cpu = (run or {}).get("cpu_ms_per_email")
        if not cpu:
            continue
        rows = {name: cpu[name] for name in CPU_ROWS if name in cpu}
        rows["total"] = round(sum(rows.values()), 2)
        rows["machine"] = cpu.get("machine_busy")
        table_[path] = rows
    return table_


def cpu_text(cpu: dict[str, dict[str, float]]) -> str:
    if not cpu:
        return ""
    paths = list(cpu)
    names = [n for n in (*CPU_ROWS, "total", "machine") if any(n in cpu[p] for p in paths)]
    lines = ["CPU ms per email  " + "".join(p.rjust(16) for p in paths)]
    for name in names:
        cells = "".join((f"{cpu[p][name]:.2f}" if cpu[p].get(name) is not None else "-").rjust(16) for p in paths)
        lines.append(f"{name.ljust(17)}{cells}")
    return "\n".join(lines)



def idle_text(idle_result: dict | None) -> str:
    """The idle stack's CPU (ms per second, 10 = 1 % of a core) and wake-ups per second, per process."""
    if not idle_result or not idle_result.get("cpu_ms_per_s"):
        return ""
    cpu, woke = idle_result["cpu_ms_per_s"], idle_result.get("wakeups_per_s") or {}
    lines = [f"idle, {idle_result.get('seconds')} s     CPU ms/s   wake-ups/s"]
    for name, value in cpu.items():
        if name == "machine_busy":
            continue
        wake = woke.get(name)
        lines.append(f"{name.ljust(17)}{value:>10.1f}{(f'{wake:.1f}' if wake is not None else '-'):>13}")
    lines.append(f"{'all services'.ljust(17)}{idle_result.get('services_cpu_ms_per_s', 0):>10.1f}"
                 f"{sum(woke.values()):>13.1f}")
    return "\n".join(lines)


def table(results: dict) -> str:
    def fmt(value, unit=""):
        if value is None:
            return "n/a"
        if isinstance(value, float):
            value = f"{value:,.2f}" if value < 10 else f"{value:,.1f}"
        return f"{value}{unit}"

    lat = results.get("e2e_latency_ms") or {}
    sat = results.get("e2e_latency_saturated_ms") or {}
    rows = [
        ("floor (kombu → PG, commit per msg)", fmt(results.get("floor_msgs_per_s"), " msg/s"), ""),
        ("end to end, empty databases", fmt(results.get("e2e_emails_per_s"), " emails/s"),
         f"target ≥ {TARGETS['e2e_emails_per_s']}"),
        ("e2e latency at half rate p50/p95/p99",
         f"{fmt(lat.get('p50'))}/{fmt(lat.get('p95'))}/{fmt(lat.get('p99'))} ms",
         f"p99 target ≤ {TARGETS['e2e_latency_p99_ms_at_half_rate']}"),
        ("e2e latency saturated p50/p95/p99",
         f"{fmt(sat.get('p50'))}/{fmt(sat.get('p95'))}/{fmt(sat.get('p99'))} ms", ""),
        ("e2e / floor", fmt(results.get("e2e_vs_floor")), ""),
        ("IMAP (Dovecot) → stored", fmt(results.get("imap_emails_per_s"), " emails/s"), ""),
        ("IMAP / floor", fmt(results.get("imap_vs_floor")), ""),
        ("outbound replies → SMTP sink", fmt(results.get("outbound_emails_per_s"), " emails/s"), ""),
        ("outbound / floor", fmt(results.get("outbound_vs_floor")), ""),
        ("parse (ours)", f"{fmt(results.get('parse_msgs_per_s'))} msg/s, {fmt(results.get('parse_mb_per_s'))} MB/s",
         ""),
        ("parse / stdlib email parser", fmt(results.get("parse_vs_stdlib")), f"target ≥ {TARGETS['parse_vs_stdlib']}"),
        ("end to end with existing messages", fmt(results.get("e2e_scaled_emails_per_s"), " emails/s"), ""),
        ("scale ratio", fmt(results.get("scale_ratio")), f"target ≥ {TARGETS['scale_ratio']}"),
    ]
    for name, mb in (results.get("peak_rss_mb") or {}).items():
        rows.append((f"peak RSS {name}", fmt(mb, " MB"), ""))
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    lines = [f"{'metric'.ljust(width)}  {'value'.ljust(value_width)}  target", "-" * (width + value_width + 20)]
    lines += [f"{name.ljust(width)}  {value.ljust(value_width)}  {target}" for name, value, target in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small N and 100k existing rows (a smoke run)")
    parser.add_argument("--n", type=int, default=None, help="emails end to end (BENCH_N, default 5000)")
    parser.add_argument("--scale-rows", type=int, default=None, help="existing messages (BENCH_SCALE_ROWS)")
    parser.add_argument("--clients", type=int, default=int(os.environ.get("BENCH_CLIENTS", "8")))
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--skip-outbound", action="store_true")
    parser.add_argument("--skip-imap", action="store_true")
    parser.add_argument("--skip-idle", action="store_true")
    parser.add_argument("--skip-parse", action="store_true")
    parser.add_argument("--skip-inbox-list", action="store_true")
    parser.add_argument("--only", choices=["outbound", "imap", "idle", "inbox-list"],
                        help="run only this part (and the floor, for the ratio), e.g. to iterate on it")
    parser.add_argument("--outbound-n", type=int, default=None,
                        help="replies in the outbound run (BENCH_OUTBOUND_N, default 1000; 300 with --quick)")
    parser.add_argument("--profile", action="store_true", help="py-spy each service during the empty-DB run")
    parser.add_argument("--cprofile", type=Path, default=None, metavar="DIR",
                        help="cProfile (CPU time) of every service's event loop, one DIR/<service>-<pid>.prof "
                             "per process, written when it stops (MAILROOM_CPROFILE_DIR)")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--replicas", type=int, default=1, metavar="N",
                        help="also run the empty-database end-to-end run with N processes of ingest, contacts, "
                             "conversations and the SMTP listener, beside the 1-process run (\"replicas\" in the "
                             "results)")
    parser.add_argument("--private-postgres", action="store_true",
                        help="run on a PostgreSQL cluster of the run's own (room for --replicas' connections)")
    parser.add_argument("--window", type=float, default=float(os.environ.get("BENCH_WINDOW_S", "80")),
                        help="seconds of end-to-end traffic per run at most (BENCH_WINDOW_S; 0: always send N)")
    args = parser.parse_args(argv)
    if args.cprofile is not None:  # the service processes inherit the harness's environment
        args.cprofile.mkdir(parents=True, exist_ok=True)
        os.environ["MAILROOM_CPROFILE_DIR"] = str(args.cprofile.resolve())

    n = args.n or int(os.environ.get("BENCH_N", "1000" if args.quick else "5000"))
    scale_rows = args.scale_rows if args.scale_rows is not None else \
        int(os.environ.get("BENCH_SCALE_ROWS", "100000" if args.quick else "1000000"))
    seed_value = int(os.environ.get("BENCH_SEED", "6"))
    outbound_n = args.outbound_n or int(os.environ.get("BENCH_OUTBOUND_N", "300" if args.quick else "1000"))
    imap_n = int(os.environ.get("BENCH_IMAP_N", "300" if args.quick else "1000"))
    idle_s = float(os.environ.get("BENCH_IDLE_S", "20" if args.quick else "60"))
    started = time.monotonic()
    RESULTS.mkdir(parents=True, exist_ok=True)
    results: dict = {"started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": machine(),
                     "config": {"n": n, "scale_rows": scale_rows, "clients": args.clients, "seed": seed_value,
                                "quick": args.quick, "outbound_n": outbound_n, "imap_n": imap_n,
                                "only": args.only, "replicas": args.replicas,
                                "private_postgres": args.private_postgres}}
    workroot = Path(tempfile.mkdtemp(prefix="mailroom-bench-"))
    private_pg = resources = None
    try:
        if args.private_postgres:
            log("a private PostgreSQL cluster for this run …")
            private_pg = start_private_postgres(workroot / "private")
            results["machine"]["postgresql_private"] = private_pg.url()
        resources = Infra()
        if args.replicas > 1:
            used, limit = postgres_headroom(resources)
            results["postgres_connections_at_start"] = {"used": used, "max": limit}
            # ~40 sessions per process set: our three services peaked at 15 with one process each and 26
            # with two (300 emails); another engineer's bench stack was seen holding 64
            if limit - used < 40 * args.replicas:
                log(f"  warning: PostgreSQL has {limit - used} of {limit} connections free; {args.replicas} "
                    f"processes of each service may need ~{40 * args.replicas} (--private-postgres)")
        if args.only not in (None, "inbox-list"):  # the floor still runs: the ratios are to it, in the same run
            log(f"floor: kombu publisher → consumer, one INSERT + COMMIT per message, {min(n, 2000)} messages …")
            results["floor"] = run_floor(resources, min(n, 2000))
            results["floor_msgs_per_s"] = results["floor"]["msgs_per_s"]
            log(f"  → {results['floor_msgs_per_s']} msg/s")
        if args.only is None:
            log(f"corpus: {n} emails (seed {seed_value}) …")
            mail = corpus_module.generate(n, seed=seed_value, run_tag="e2e")
            results["corpus"] = corpus_module.describe(mail)
            log(f"  {results['corpus']['bytes'] / 1e6:.1f} MB, {results['corpus']['kinds']}")

            if not args.skip_parse:
                log("parse: ingest's analyse() vs the stdlib email parser on the same corpus …")
                parse = parse_bench.measure(mail)
                results.update(parse_msgs_per_s=parse["ours"]["msgs_per_s"],
                               parse_mb_per_s=parse["ours"]["mb_per_s"], parse_vs_stdlib=parse["ratio"])
                results["parse"] = parse
                log(f"  → ours {parse['ours']['msgs_per_s']} msg/s, stdlib {parse['stdlib']['msgs_per_s']} msg/s, "
                    f"ratio {parse['ratio']}")

            log(f"floor: kombu publisher → consumer, one INSERT + COMMIT per message, {n} messages …")
            results["floor"] = run_floor(resources, n)
            results["floor_msgs_per_s"] = results["floor"]["msgs_per_s"]
            log(f"  → {results['floor_msgs_per_s']} msg/s")

            if not args.skip_e2e:
                log("end to end, empty databases …")
                empty = run_e2e(resources, workroot / "empty", mail, args.clients, seed_value, paced=True,
                                profile=args.profile, window_s=args.window)
                mail = mail[:empty["saturated"]["messages"]]  # the scale run sends the same emails
                results["e2e"] = empty
                results["e2e_emails_per_s"] = empty["saturated"]["emails_per_s"]
                results["e2e_emails_sent"] = empty["saturated"]["messages"]
                results["e2e_latency_ms"] = (empty.get("half_rate") or {}).get("latency_ms")
                results["e2e_latency_saturated_ms"] = empty["saturated"]["latency_ms"]
                results["e2e_vs_floor"] = round(results["e2e_emails_per_s"] / results["floor_msgs_per_s"], 3) \
                    if results["e2e_emails_per_s"] else None
                results["peak_rss_mb"] = empty["peak_rss_mb"]

                if args.replicas > 1:  # the same emails, N processes of each (bench/e2e.py)
                    log(f"end to end, empty databases, {args.replicas} processes of ingest, contacts, conversations "
                        f"and the SMTP listener …")
                    many = run_e2e(resources, workroot / "replicas", mail, args.clients, seed_value, paced=False,
                                   replicas=args.replicas)
                    results["e2e_replicas"] = many
                    results["replicas"] = replicas_result(empty, many, results["floor_msgs_per_s"])
                    ratio = results["replicas"][f"ratio_{args.replicas}_to_1"]["emails_per_s"]
                    log(f"  → {many['saturated']['emails_per_s']} emails/s, {ratio} × the 1-process run")

                if not args.skip_scale and scale_rows:
                    log(f"end to end with {scale_rows:,} existing messages …")
                    scaled = run_e2e(resources, workroot / "scaled", mail, args.clients, seed_value, paced=False,
                                     scale_rows=scale_rows)
                    results["e2e_scaled"] = scaled
                    results["e2e_scaled_emails_per_s"] = scaled["saturated"]["emails_per_s"]
                    results["scale_ratio"] = round(
                        scaled["saturated"]["emails_per_s"] / results["e2e_emails_per_s"], 3) \
                        if results["e2e_emails_per_s"] and scaled["saturated"]["emails_per_s"] else None
                    results["peak_rss_mb_scaled"] = scaled["peak_rss_mb"]

        if args.only in (None, "imap") and not args.skip_imap:
            imap_mail = corpus_module.generate(imap_n, seed=seed_value + 11, run_tag="imap")
            log(f"IMAP: {imap_n} emails in a local Dovecot mailbox, polled by ingest, until every one is stored …")
            imap = run_imap(resources, workroot / "imap", imap_mail, seed_value)
            results["imap"] = imap
            results["imap_emails_per_s"] = imap.get("emails_per_s")
            if imap.get("emails_per_s"):
                log(f"  → {imap['emails_per_s']} emails/s ({imap['stored']}/{imap['messages']} stored in "
                    f"{imap['seconds']} s)")

        if args.only is None and not os.environ.get("BENCH_SKIP_NOTIFIER"):  # bench/notifier_bench.py
            log("notifier: webhook deliveries to a local receiver, Slack posts to a local Slack API …")
            import notifier_bench  # noqa: PLC0415 - bench/ is on sys.path
            notifier = notifier_bench.measure(resources, workroot / "notifier",
                                              int(os.environ.get("BENCH_WEBHOOK_N", "2000")),
                                              int(os.environ.get("BENCH_SLACK_N", "500")), extra_env=auth_env(),
                                              log=log)
            results["notifier"] = notifier
            results["webhook_deliveries_per_s"] = notifier["webhooks"]["deliveries_per_s"]
            results["slack_posts_per_s"] = notifier["slack"]["posts_per_s"]

        if args.only in (None, "inbox-list") and not args.skip_inbox_list:  # bench/inbox_list_bench.py
            conversations = int(os.environ.get("BENCH_INBOX_CONVERSATIONS", "10000"))
            log(f"inbox list: {conversations:,} conversations in one inbox, the web inbox's reads over HTTP …")
            results["inbox_list"] = inbox_list_bench.measure(
                resources, workroot / "inbox_list", conversations, 50 if args.quick else 100, extra_env=auth_env(),
                log=log)

        if args.only in (None, "idle") and not args.skip_idle:
            log(f"idle: every service started and left alone, CPU over {idle_s:.0f} s …")
            results["idle"] = idle.measure(resources, workroot / "idle", idle_s, extra_env=auth_env(), log=log)
            results["idle_cpu_ms_per_s"] = results["idle"]["cpu_ms_per_s"]
            log(f"  → services {results['idle']['services_cpu_ms_per_s']} ms of CPU per second in all: "
                f"{results['idle_cpu_ms_per_s']}; wake-ups per second {results['idle']['wakeups_per_s']}")

        results["outbound_emails_per_s"] = None
        if args.only in (None, "outbound") and not args.skip_outbound:
            log(f"outbound: {outbound_n} replies through the HTTP API to an SMTP sink …")
            out = run_outbound(resources, workroot / "outbound", outbound_n, args.clients, seed_value)
            results["outbound"] = out
            results["outbound_emails_per_s"] = out["emails_per_s"]
            log(f"  → {out['emails_per_s']} emails/s at the sink ({out['delivered']}/{out['replies']} in "
                f"{out['seconds']} s; HTTP accepted {out['http_accept_per_s']}/s), saturated latency p50/p95/p99 "
                f"{out['latency_ms']['p50']}/{out['latency_ms']['p95']}/{out['latency_ms']['p99']} ms, "
                f"problems {out['problems'] or 'none'}")
    except Exception:
        results["error"] = traceback.format_exc()
        log("FAILED:\n" + results["error"])
    finally:
        floor_rate = results.get("floor_msgs_per_s")
        for key, rate in (("imap_vs_floor", results.get("imap_emails_per_s")),
                          ("outbound_vs_floor", results.get("outbound_emails_per_s"))):
            results[key] = round(rate / floor_rate, 3) if rate and floor_rate else None
        results["cpu_ms_per_email"] = cpu_table(results)
        if resources is not None:
            resources.cleanup()
        if private_pg is not None:
            private_pg.stop()
        shutil.rmtree(workroot, ignore_errors=True)
        results["seconds"] = round(time.monotonic() - started, 1)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print()
    print(table(results))
    if results.get("cpu_ms_per_email"):
        print()
        print(cpu_text(results["cpu_ms_per_email"]))
    if results.get("replicas"):
        print()
        print(replicas_text(results["replicas"]))
    if results.get("idle"):
        print()
        print(idle_text(results["idle"]))
    if results.get("inbox_list"):
        print()
        print(inbox_list_bench.text_table(results["inbox_list"]))
    print(f"\n{results['seconds']} s; written to {args.output}")
    return 1 if "error" in results else 0


if __name__ == "__main__":
    sys.exit(main())
