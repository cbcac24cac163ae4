"""`make chaos`: the pipeline loses nothing and doubles nothing while its processes, its broker and
its database are killed and restarted under load.

    .venv/bin/python chaos/run.py [--emails N] [--clients C] [--seed S] [--json out.json]
                                  [--send-seconds T | --rate R] [--replies M | --no-outbound-half]

What it does, on a private PostgreSQL cluster and a private RabbitMQ node of its own (chaos/infra.py:
the machine's shared servers are never touched, since restarting them is part of the run):
1. every service in its own process as the tests start them (mailroom_testing's Stack): ingest and
   its SMTP listener, contacts, conversations, outbound (relaying to an SMTP sink of ours);
   an external subscriber's durable queue bound to every events exchange before anything starts;
2. N emails (bench/corpus.py: distinct senders, replies to earlier ones, forwards, attachments,
   plus ~1 % exact re-sends with the same Message-ID) from C concurrent SMTP clients, paced over
   `--send-seconds`; meanwhile, at seeded random moments, each service process is SIGKILLed once
   and restarted, the broker is restarted once, the broker closes every client connection once
   (`rabbitmqctl close_all_connections`) and the database is restarted once (fast shutdown);
3. then waits (bounded) until nothing is pending: every queue empty (retry queues included), every
   outbox published, every intake row processed; and counts, from the databases and from what the
   external subscriber received (chaos/checks.py);
4. the outbound half (unless --no-outbound-half): M replies through the API to those conversations
   while outbound is SIGKILLed once and the SMTP relay is restarted once; every accepted reply must
   reach the relay; duplicates at the relay are counted (allowed: at most one per kill).

Prints the figures and writes them as JSON: sent, accepted, stored, lost, duplicated, redeliveries,
dead_lettered, seconds, faults (with timestamps) and the details. Exit status 1 when lost or
duplicated is not 0 (or timeline entries are missing, the run did not quiesce, or a reply was
not delivered or doubled beyond the allowance), 2 when the run itself failed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import email
import email.policy
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path

# importing eventlet (through mailroom_shared.db) warns that it is deprecated: known (DESIGN.md)
warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")

CHAOS = Path(__file__).resolve().parent
REPO = CHAOS.parent
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(CHAOS))

import checks  # noqa: E402
import e2e  # noqa: E402 - bench/e2e.py
import faults as faults_module  # noqa: E402
import infra  # noqa: E402
import mail  # noqa: E402
import subscriber as subscriber_module  # noqa: E402

from mailroom_shared.messaging.topology import SUBSCRIPTIONS  # noqa: E402
from mailroom_testing.specs import CONTACTS, CONVERSATIONS, INGEST, NOTIFIER, OUTBOUND  # noqa: E402
from mailroom_testing.stack import Stack  # noqa: E402

STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} +{time.monotonic() - STARTED:6.1f}s] {message}", flush=True)


def auth_env() -> dict[str, str]:
    try:
        from mailroom_testing.tokens import TEST_ENV
    except ImportError:  # pragma: no cover
        return {}
    return dict(TEST_ENV)


class Interrupted(BaseException):
    pass


def _on_signal(signum, _frame):
    raise Interrupted(signal.Signals(signum).name)


# --- the stack ------------------------------------------------------------------------------------


def start_stack(amqp_uri: str, urls: dict[str, str], workdir: Path, services: list, relay_port: int | None,
                extra_env: dict[str, str]) -> tuple[Stack, int]:
    """As bench/e2e.start_stack (and outbound_bench.running_stack), with the outbound relay and a
    Stack the caller can stop even when the start fails half way."""
    workdir.mkdir(parents=True, exist_ok=True)
    inboxes = workdir / "inboxes.yaml"
    inboxes.write_text(e2e.INBOXES_YAML)
    smtp_port = infra.free_port()
    env = {"CONVERSATIONS_INBOXES_FILE": str(inboxes), "INGEST_SMTP_PORT": str(smtp_port),
           "INGEST_BLOB_DIR": str(workdir / "blobs"), **auth_env()}
    if relay_port:
        env.update({"OUTBOUND_SMTP_HOST": "127.0.0.1", "OUTBOUND_SMTP_PORT": str(relay_port),
                    "OUTBOUND_SMTP_TIMEOUT": "20",
                    # a refused or dropped relay is retried after seconds, not the production minutes
                    "OUTBOUND_RETRY_BASE_SECONDS": "1", "OUTBOUND_RETRY_MAX_SECONDS": "10",
                    "OUTBOUND_MAX_ATTEMPTS": "30",
                    # a send cut short by a kill is sent again when its lease expires (production: 300 s)
                    "OUTBOUND_SEND_LEASE_SECONDS": "30"})
    env.update(extra_env)
    stack = Stack(services=list(services), amqp_uri=amqp_uri, database_urls=urls, workdir=workdir, extra_env=env)
    return stack, smtp_port


# --- the inbound half -----------------------------------------------------------------------------


def inbound(args, env) -> dict:
    rng = random.Random(args.seed)
    stack, rabbit, pg, relay = env["stack"], env["rabbit"], env["pg"], env.get("relay")
    messages = mail.build(args.emails, args.seed, args.duplicates)
    distinct = {m.message_id: m for m in messages if m.kind != "resend"}
    resent = {m.message_id for m in messages if m.kind == "resend"}
    parents = {}
    for m in distinct.values():
        if m.kind == "reply":
            headers = email.message_from_bytes(m.raw.split(b"\r\n\r\n", 1)[0], policy=email.policy.compat32)
            parent = checks.clean_id(headers.get("In-Reply-To"))
            if parent:
                parents[m.message_id] = parent
    send_s = args.send_seconds if args.rate is None else len(messages) / args.rate
    rate = len(messages) / send_s
    processes = [name for name in ("ingest", "smtp", "contacts", "conversations", "outbound", "notifier")
                 if name in stack.commands]
    plan = faults_module.plan(rng, processes, send_s, rabbit=not args.no_rabbit_restart,
                              postgres=not args.no_postgres_restart,
                              close_connections=not args.no_close_connections)
    log(f"sending {len(distinct)} emails + {len(resent)} re-sends from {args.clients} SMTP clients at "
        f"{rate:.1f}/s over ~{send_s:.0f} s; faults: "
        + ", ".join(f"{f.kind}:{f.target}@{f.at_s:.0f}s" for f in plan))

    def kill(fault, since):
        stack.kill_process(fault.target)
        fault.down_at_s = since()
        time.sleep(fault.down_s)
        faults_module.restart_process(stack, fault.target, fault, since)
        fault.back_at_s = since()

    def rabbit_restart(fault, since):
        with faults_module.ReadinessSampler(fault, stack.ports, since):
            rabbit.stop(args.rabbit_mode)
            fault.down_at_s = since()
            time.sleep(fault.down_s)
            rabbit.start()
        fault.back_at_s = since()
        faults_module.watch_readiness(fault, stack.ports, since)

    def close_connections(fault, since):
        before = len(rabbit.connections())
        rabbit.close_all_connections()
        fault.down_at_s = since()
        fault.notes.append(f"{before} connections closed by the broker")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # back: as many client connections as before
            if len(rabbit.connections()) >= before:
                break
            time.sleep(0.5)
        fault.notes.append(f"{len(rabbit.connections())} connections open again")
        fault.back_at_s = since()
        faults_module.watch_readiness(fault, stack.ports, since)

    def postgres_restart(fault, since):
        pg.stop_fast()
        fault.down_at_s = since()
        time.sleep(fault.down_s)
        pg.start()
        fault.back_at_s = since()

    def relay_restart(fault, since):
        relay.stop()
        fault.down_at_s = since()
        time.sleep(fault.down_s)
        relay.start()
        fault.back_at_s = since()

    actions = {"kill": kill, "rabbitmq_restart": rabbit_restart, "rabbitmq_close_connections": close_connections,
               "postgres_restart": postgres_restart, "relay_restart": relay_restart}
    subscriber = env["subscriber"]
    sender = mail.Sender(env["smtp_port"], messages, args.clients, rate, give_up_s=args.give_up_seconds)
    env["sender"] = sender
    t0 = sender.start_at
    injector = faults_module.FaultInjector(plan, actions, t0, log).start()
    env["injector"] = injector
    last = time.monotonic()
    while not sender.done():
        time.sleep(0.5)
        if time.monotonic() - last >= 15:
            last = time.monotonic()
            log(f"  … {time.monotonic() - t0:.0f} s: {subscriber.count} events seen by the subscriber")
    sent = sender.result()
    send_done = time.monotonic() - t0
    injector.join()
    log(f"mail sent in {send_done:.1f} s ({sent['outcomes']}); faults done at {injector.since():.1f} s; "
        f"waiting for quiescence (at most {args.quiesce_timeout:.0f} s) …")
    quiet = checks.wait_quiescent(rabbit, env["dbs"], subscriber, args.quiesce_timeout, log,
                                  ignored=env["ignored_queues"])
    seconds = time.monotonic() - t0
    log(f"{'quiescent' if quiet['quiescent'] else 'NOT quiescent'} after {quiet['seconds']} s more "
        f"({seconds:.1f} s since the first email)")

    results = sent["results"]
    accepted_positions = [p for p, r in results.items() if r[0] == "accepted"]
    accepted_ids = {messages[p].message_id for p in accepted_positions}
    counts = checks.inbound_counts(env["dbs"], accepted_ids, resent & accepted_ids, parents)
    deliveries = subscriber.snapshot()
    events = checks.event_counts(deliveries, t0)
    dead = checks.dead_letters(rabbit)
    duplicated_breakdown = {**counts.pop("duplicated_breakdown"),
                            **{f"events: {k}": v for k, v in events.pop("duplicated_breakdown").items()}}
    duplicated_examples = {**counts.pop("duplicated_examples"),
                           **{f"events: {k}": v for k, v in events.pop("duplicated_examples").items()}}
    return {
        "sent": len(distinct), "resent_duplicates": len(resent), "smtp_transactions": len(messages),
        "accepted": len(accepted_ids), "smtp_250": sent["outcomes"].get("250", 0),
        "not_accepted": {k: sum(1 for r in results.values() if r[0] == k) for k in ("rejected", "gave_up")},
        "smtp_outcomes": sent["outcomes"], "smtp_error_samples": sent["samples"][:15],
        "stored": counts["stored"], "lost": counts["lost"],
        "duplicated": sum(duplicated_breakdown.values()),
        "redeliveries": events["redeliveries"], "dead_lettered": sum(dead.values()),
        "seconds": round(seconds, 1), "send_seconds": round(send_done, 1), "offered_rate": round(rate, 2),
        "quiescent": quiet["quiescent"], "quiescence_wait_seconds": quiet["seconds"],
        "pending_at_end": quiet["pending"], "consumers_of_busy_queues": quiet.get("consumers_of_busy_queues"),
        "faults": [f.as_dict() for f in plan],
        "details": {**counts, "events": events, "dead_letter_queues": dead,
                    "duplicated_breakdown": duplicated_breakdown, "duplicated_examples": duplicated_examples,
                    "subscriber": {"connections": subscriber.connections,
                                   "disconnects": len(subscriber.disconnects),
                                   "undecodable": subscriber.undecodable}},
    }


# --- the outbound half ----------------------------------------------------------------------------


def run_outbound_half(args, env) -> dict:
    import outbound_half

    return outbound_half.run(args, env, log)


# --- main -----------------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="chaos/run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=int(os.environ.get("CHAOS_EMAILS", 2000)))
    parser.add_argument("--clients", type=int, default=int(os.environ.get("CHAOS_CLIENTS", 8)))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED", 1)))
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--send-seconds", type=float, default=None,
                        help="spread the sending over this long (default: max(40, N / 20))")
    parser.add_argument("--rate", type=float, default=None, help="emails per second instead of --send-seconds")
    parser.add_argument("--duplicates", type=int, default=None, help="exact re-sends (default 1 %% of N, >= 3)")
    parser.add_argument("--replies", type=int, default=None, help="replies in the outbound half (default min(N, 300))")
    parser.add_argument("--no-outbound-half", action="store_true")
    parser.add_argument("--relay-delay-ms", type=float, default=100.0,
                        help="the SMTP relay answers DATA this much after taking the message")
    parser.add_argument("--no-outbound", action="store_true", help="do not run the outbound service at all")
    parser.add_argument("--no-notifier", action="store_true", help="do not run the notifier service")
    parser.add_argument("--no-rabbit-restart", action="store_true")
    parser.add_argument("--no-postgres-restart", action="store_true")
    parser.add_argument("--no-close-connections", action="store_true",
                        help="skip the broker closing every client connection (rabbitmqctl close_all_connections)")
    parser.add_argument("--rabbit-mode", choices=("stop", "kill"), default="stop",
                        help="broker restart: rabbitmqctl stop, or SIGKILL of the Erlang VM")
    parser.add_argument("--quiesce-timeout", type=float, default=900.0)
    parser.add_argument("--give-up-seconds", type=float, default=300.0,
                        help="an SMTP client gives a message up after retrying it this long")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, data)")
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the temporary directory")
    args = parser.parse_args(argv)
    if args.send_seconds is None:
        args.send_seconds = max(40.0, args.emails / 20)
    if args.no_outbound:
        args.no_outbound_half = True
    if args.replies is None:
        args.replies = min(args.emails, 300)
    return args


def summary_line(result: dict) -> str:
    keys = ("sent", "accepted", "stored", "lost", "duplicated", "redeliveries", "dead_lettered", "seconds")
    return "  ".join(f"{k}={result.get(k)}" for k in keys)


def verdict(result: dict) -> list[str]:
    failures = []
    if result.get("lost"):
        failures.append(f"lost {result['lost']}")
    if result.get("duplicated"):
        failures.append(f"duplicated {result['duplicated']}")
    details = result.get("details", {})
    if details.get("timeline_missing"):
        failures.append(f"{details['timeline_missing']} stored messages missing from the timeline")
    if not result.get("quiescent", False):
        failures.append(f"not quiescent: {result.get('pending_at_end')}")
    if result.get("not_accepted", {}).get("gave_up"):
        failures.append(f"{result['not_accepted']['gave_up']} emails never accepted (SMTP clients gave up)")
    errors = [f"{f['kind']} {f['target']}: {f['error']}" for f in result.get("faults", []) if f.get("error")]
    failures.extend(f"fault failed: {e[:200]}" for e in errors)
    out = result.get("outbound")
    if out:
        if out.get("not_delivered"):
            failures.append(f"outbound: {out['not_delivered']} accepted replies not delivered")
        if out.get("relay_duplicates", 0) > out.get("relay_duplicates_allowed", 0):
            failures.append(f"outbound: {out['relay_duplicates']} duplicates at the relay "
                            f"(allowed {out['relay_duplicates_allowed']})")
        if out.get("duplicated"):
            failures.append(f"outbound: duplicated {out['duplicated']}")
        if not out.get("quiescent", False):
            failures.append(f"outbound: not quiescent: {out.get('pending_at_end')}")
        errors = [f"{f['kind']} {f['target']}: {f['error']}" for f in out.get("faults", []) if f.get("error")]
        failures.extend(f"outbound fault failed: {e[:200]}" for e in errors)
    return failures


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    root = infra.make_workdir(args.workdir)
    if args.json:
        args.json = args.json.resolve()
    # Everything the run starts works in `root` (children inherit it), so that the watchdog can
    # stop whatever is left should this process be killed before it cleans up.
    os.chdir(root)
    watchdog = subprocess.Popen([sys.executable, str(CHAOS / "watchdog.py"), "--parent", str(os.getpid()),
                                 "--root", str(root), *(["--keep"] if args.keep else [])],
                                cwd="/", start_new_session=True, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log(f"chaos run: {args.emails} emails, {args.clients} clients, seed {args.seed}; working in {root}")
    env: dict = {"root": root, "watchdog": watchdog}
    result: dict = {"emails": args.emails, "clients": args.clients, "seed": args.seed,
                    "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    code = 2
    try:
        pg = env["pg"] = infra.PrivatePostgres(root)
        pg.init()
        pg.start()
        rabbit = env["rabbit"] = infra.PrivateRabbit(root)
        rabbit.init()
        rabbit.start()
        log(f"private PostgreSQL on :{pg.port}, private RabbitMQ {rabbit.nodename} on :{rabbit.port}")
        subscriber_module.declare(rabbit.amqp_uri)  # before anything publishes
        services = [INGEST, CONTACTS, CONVERSATIONS] + ([] if args.no_outbound else [OUTBOUND])
        if any(sub.service == "notifier" for sub in SUBSCRIPTIONS) and not args.no_notifier:
            services.append(NOTIFIER)  # it consumes events: its queues must drain too
        running = {spec.name for spec in services}
        # a service left out (--no-outbound, --no-notifier) leaves its queues filling: not our work
        env["ignored_queues"] = {sub.queue_name for sub in SUBSCRIPTIONS if sub.service not in running}
        urls = {spec.name: pg.create_database(f"chaos_{spec.name}") for spec in services}
        relay_port = None
        if not args.no_outbound:
            import outbound_half

            relay = env["relay"] = outbound_half.Relay(infra.free_port(), root / "relay.jsonl", args.relay_delay_ms)
            relay.start()
            relay_port = relay.port
        stack, smtp_port = start_stack(rabbit.amqp_uri, urls, root / "stack", services, relay_port, {})
        env["stack"], env["smtp_port"] = stack, smtp_port
        stack.start()
        stack.start_process("smtp", [sys.executable, "-m", "ingest.smtp_listener"], port=smtp_port)
        e2e.wait_for_inbox_address(urls["ingest"])
        env["dbs"] = checks.Databases(urls)
        env["subscriber"] = subscriber_module.ExternalSubscriber(rabbit.amqp_uri).start()
        log(f"stack up: {', '.join(stack.processes)} (SMTP :{smtp_port})")

        result.update(inbound(args, env))
        log("inbound: " + summary_line(result))
        if not args.no_outbound_half:
            result["outbound"] = run_outbound_half(args, env)
        failures = verdict(result)
        result["failures"] = failures
        code = 1 if failures else 0
    except (Exception, Interrupted) as exc:
        result["error"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:]
        log(f"the run failed: {exc!r}")
        traceback.print_exc()
        code = 2
    finally:
        result["wall_seconds"] = round(time.monotonic() - STARTED, 1)
        cleanup(env, result, keep=args.keep)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=str))
    print_figures(result)
    return code


def cleanup(env: dict, result: dict, keep: bool) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finish cleaning up
    steps = [
        ("injector", lambda x: x.stop()),
        ("sender", lambda x: x.stop()),
        ("subscriber", lambda x: x.stop()),
        ("stack", lambda x: x.stop()),
        ("relay", lambda x: x.stop()),
        ("dbs", lambda x: x.dispose()),
        ("rabbit", lambda x: x.stop()),
        ("pg", lambda x: x.stop()),
    ]
    logs = {}
    for key, step in steps:
        if key not in env:
            continue
        if key == "stack" and (result.get("error") or result.get("failures")):
            for name in ("ingest", "smtp", "contacts", "conversations", "outbound", "notifier"):
                text = env["stack"].log(name)
                errors = [line for line in text.splitlines() if " ERROR " in line or "Traceback" in line]
                if errors:
                    logs[name] = errors[-15:]
        try:
            step(env[key])
        except Exception as exc:  # noqa: BLE001 - keep cleaning up
            log(f"cleanup of {key} failed: {exc!r}")
    if logs:
        result["error_log_lines"] = logs
    root = env["root"]
    os.chdir(REPO)
    if keep:
        log(f"kept {root} (service logs in {root / 'stack'})")
    else:
        shutil.rmtree(root, ignore_errors=True)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def print_figures(result: dict) -> None:
    figures = {k: result.get(k) for k in ("sent", "accepted", "stored", "lost", "duplicated", "redeliveries",
                                          "dead_lettered", "seconds")}
    print(json.dumps(figures))
    for fault in result.get("faults", []):
        print(f"  {fault['kind']:<17} {fault['target']:<14} at {fault.get('started_s')} s, back at "
              f"{fault.get('back_at_s')} s{'  ERROR ' + fault['error'][:120] if fault.get('error') else ''}")
    out = result.get("outbound")
    if out:
        print("outbound: " + json.dumps({k: out.get(k) for k in (
            "replies", "accepted", "delivered", "not_delivered", "relay_duplicates", "relay_duplicates_allowed",
            "duplicated", "seconds")}))
    for failure in result.get("failures", []):
        print(f"FAIL: {failure}")
    if result.get("error"):
        print("ERROR: " + result["error"].strip().splitlines()[-1])


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
