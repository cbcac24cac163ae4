"""What an operator sees of a running service: health, metrics and logs (docs/operations.md).

Every service built with `kit.service_base` gets, without code in its service.py:

* `GET /health/live` — 200 while the process's event loop turns (a green-thread heartbeat, no
  I/O): a database or broker outage never restarts the pods;
* `GET /health/ready` — 200 when the database answers, its schema is at the revision the code
  expects (or newer: a rollout of the next release), and every AMQP consumer is attached with a
  live broker connection; 503 with the failing checks otherwise;
* `GET /metrics` — Prometheus metrics of this process.

They answer on the service's HTTP port and, when `MAILROOM_METRICS_PORT` is set (Kubernetes: the
`metrics` container port), on a small server of their own that needs no free nameko worker: the
probes and Prometheus use that one.

Metrics every service has (kit): per handler processed/duplicate/failed/retried/dead-lettered and
duration, outbox backlog and oldest unpublished age, HTTP request duration by route and status.
Service-specific metrics (intake, quarantine, deliveries, IMAP polls) are defined here so their
names are shared by the alerts, the dashboard and the code; the services count them.

Logs: `PlainFormatter` (make run) and `JsonFormatter` (`MAILROOM_LOG_FORMAT=json`, deployments)
both redact secrets: values of secret-looking environment variables, URL passwords, bearer tokens
and `password=`-style pairs. JSON lines carry the service and, inside a handler or request, the
event id/type/source, subject, message and conversation ids, the event's `traceparent`
(`correlation_id`) and its W3C trace id (`trace_id`: the same on every line of one inbound
message's path through every service, mailroom_shared.events.tracing) (`log_context`).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from mailroom_shared.events import tracing

log = logging.getLogger(__name__)

SERVICE_NAME: str | None = None  # set once per process by the service's ObservabilityProvider

# --- metrics every service has (the kit counts them) ---------------------------------------------

HANDLER_LABELS = ("service", "handler", "event")
HANDLER_EVENTS = Counter(
    "mailroom_handler_events_total",
    "Events a handler finished, by outcome: processed (ran and committed), duplicate (already "
    "processed: skipped) or failed (raised; then retried or dead-lettered).",
    (*HANDLER_LABELS, "outcome"))
HANDLER_FAILURES = Counter(
    "mailroom_handler_failures_total", "Handler runs that raised, by exception class.", (*HANDLER_LABELS, "error"))
HANDLER_RETRIED = Counter(
    "mailroom_handler_retried_total", "Failed events republished to a retry (delay) queue.", HANDLER_LABELS)
HANDLER_DEAD_LETTERED = Counter(
    "mailroom_handler_dead_lettered_total",
    "Events parked in the handler's dead-letter queue, by reason: permanent (invalid payload, "
    "PoisonMessage), exhausted (retries used up) or undecodable.", (*HANDLER_LABELS, "reason"))
HANDLER_DURATION = Histogram(
    "mailroom_handler_duration_seconds", "Time from delivery to the handler's outcome (transaction included).",
    HANDLER_LABELS, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
HTTP_DURATION = Histogram(
    "mailroom_http_request_duration_seconds", "HTTP requests of the service's API, by route template and status.",
    ("service", "method", "route", "status"), buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
READY = Gauge("mailroom_ready", "1 when the last readiness check passed.", ("service",))

# --- metrics the services count (names shared with deploy/k8s/monitoring) -----------------------

INTAKE_MESSAGES = Counter(
    "mailroom_intake_messages_total",
    "Inbound messages by path (smtp, imap, http) and status (stored, duplicate, rejected, "
    "processed, quarantined).", ("path", "status"))
QUARANTINED = Counter("mailroom_quarantined_messages_total", "Messages quarantined by ingest, by reason.",
                      ("reason",))
DELIVERIES = Counter(
    "mailroom_deliveries_total",
    "Deliveries by channel (email, chat, webhook, slack) and state (sent, deferred, failed, bounced).",
    ("channel", "state"))
DELIVERY_DURATION = Histogram(
    "mailroom_delivery_duration_seconds", "Time of one delivery attempt (SMTP conversation, HTTP call).",
    ("channel",), buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
IMAP_POLLS = Counter("mailroom_imap_polls_total", "IMAP polls by mailbox and outcome (ok, failed).",
                     ("mailbox", "outcome"))
IMAP_LAST_SUCCESS = Gauge("mailroom_imap_last_success_timestamp_seconds",
                          "Unix time of a mailbox's last successful poll.", ("mailbox",))


# Gauges read from a database at scrape time: the kit's (outbox, database_up) and the ones ingest
# registers with `database_gauge` (the alerts and the dashboard use these names).
SCRAPE_TIME_GAUGES = {
    "mailroom_database_up": "every service",
    "mailroom_outbox_pending_events": "every service",
    "mailroom_outbox_oldest_pending_age_seconds": "every service",
    "mailroom_intake_backlog_messages": "ingest: intake rows stored and not yet processed",
    "mailroom_intake_oldest_backlog_age_seconds": "ingest: age of the oldest of them",
    "mailroom_quarantined_messages": "ingest: messages in quarantine now",
}


def metric_sample_names() -> set[str]:
    """Every sample name mailroom's processes can expose (for checking alerts and dashboards)."""
    names = set(SCRAPE_TIME_GAUGES)
    for metric in globals().values():
        if isinstance(metric, Counter):
            names.add(f"{metric._name}_total")
        elif isinstance(metric, Histogram):
            names |= {f"{metric._name}_{suffix}" for suffix in ("bucket", "count", "sum")}
        elif isinstance(metric, Gauge):
            names.add(metric._name)
    return names


def imap_polled(mailbox: str, ok: bool) -> None:
    """What ingest's IMAP poller calls after each poll of a mailbox."""
    IMAP_POLLS.labels(mailbox, "ok" if ok else "failed").inc()
    if ok:
        IMAP_LAST_SUCCESS.labels(mailbox).set(time.time())


# --- gauges read from the service's database when Prometheus scrapes -------------------------


@dataclass(frozen=True)
class DatabaseGauge:
    name: str
    documentation: str
    # session -> a number, or {label values tuple: number} for `labels`
    read: Callable[[object], float | Mapping[tuple[str, ...], float]]
    labels: tuple[str, ...] = ()
    service: str | None = None  # only in this service's processes (None: every service)


DATABASE_GAUGES: list[DatabaseGauge] = []


def database_gauge(name: str, documentation: str, read, labels: tuple[str, ...] = (),
                   service: str | None = None) -> DatabaseGauge:
    """Register a gauge computed from the service's database at scrape time (cached a few
    seconds), e.g. ingest's intake backlog:

        database_gauge("mailroom_intake_backlog_messages", "Stored, not yet processed.",
                       lambda session: session.scalar(select(func.count())...), service="ingest")
    """
    gauge = DatabaseGauge(name, documentation, read, tuple(labels), service)
    DATABASE_GAUGES.append(gauge)
    return gauge


def outbox_backlog(table) -> Callable[[object], dict]:
    from sqlalchemy import func, select

    from mailroom_shared.db import aware, utcnow

    def read(session) -> dict:
        count, oldest = session.execute(
            select(func.count(), func.min(table.c.created_at)).where(table.c.published_at.is_(None))).one()
        age = (utcnow() - aware(oldest)).total_seconds() if oldest is not None else 0.0
        return {"pending": float(count), "age": max(age, 0.0)}

    return read


class ServiceCollector:
    """The scrape-time metrics of one running service: its outbox and its database gauges."""

    def __init__(self, service: str, database: Callable[[], object], outbox_table, cache_seconds: float = 5.0,
                 timeout: float = 3.0):
        self.service = service
        self.database = database
        self.outbox_read = outbox_backlog(outbox_table) if outbox_table is not None else None
        self.cache_seconds = cache_seconds
        self.timeout = timeout
        self._lock = threading.Lock()
        self._cached: tuple[float, list] | None = None

    def describe(self):
        return []  # no fixed families: collect() is only called when scraping

    def collect(self):
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self.cache_seconds:
                self._cached = (now, self._read())
            return list(self._cached[1])

    def _gauges(self) -> list[DatabaseGauge]:
        return [g for g in DATABASE_GAUGES if g.service in (None, self.service)]

    def _read(self) -> list:
        import eventlet

        families = []
        up = GaugeMetricFamily("mailroom_database_up", "1 when the service's database answered the last scrape.",
                               labels=["service"])
        try:
            database = self.database()
            if database is None:
                raise RuntimeError("no database yet")
            with eventlet.Timeout(self.timeout), database.transaction() as session:
                if self.outbox_read is not None:
                    backlog = self.outbox_read(session)
                    pending = GaugeMetricFamily("mailroom_outbox_pending_events",
                                                "Events committed to the outbox and not yet confirmed by the broker.",
                                                labels=["service"])
                    pending.add_metric([self.service], backlog["pending"])
                    age = GaugeMetricFamily("mailroom_outbox_oldest_pending_age_seconds",
                                            "Age of the oldest unpublished outbox event (0 when none).",
                                            labels=["service"])
                    age.add_metric([self.service], backlog["age"])
                    families += [pending, age]
                for gauge in self._gauges():
                    family = GaugeMetricFamily(gauge.name, gauge.documentation, labels=["service", *gauge.labels])
                    value = gauge.read(session)
                    items = value.items() if isinstance(value, Mapping) else [((), value)]
                    for label_values, number in items:
                        family.add_metric([self.service, *label_values], float(number))
                    families.append(family)
            up.add_metric([self.service], 1.0)
        except (Exception, eventlet.Timeout) as exc:
            log.warning("metrics: reading %s's database failed: %s", self.service, exc)
            families = []
            up.add_metric([self.service], 0.0)
        return [up, *families]


def metrics_payload() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


# --- health --------------------------------------------------------------------------------------


class ConsumerWatch:
    """Notes when a nameko QueueConsumer's loop last turned. kombu's consume loop calls
    `on_iteration` at least once a second while connected (drain_events times out after 1 s and
    checks heartbeats); it stops while the connection is down and kombu reconnects."""

    def __init__(self, consumer):
        self.consumer = consumer
        self.last_iteration: float | None = None
        original = consumer.on_iteration

        def on_iteration():
            self.last_iteration = time.monotonic()
            return original()

        consumer.on_iteration = on_iteration

    def state(self, stale_after: float) -> dict:
        consumer = self.consumer
        started = consumer._consumers_ready.ready()
        thread = consumer._gt
        alive = thread is not None and not thread.dead
        fresh = self.last_iteration is not None and time.monotonic() - self.last_iteration < stale_after
        attached = len(consumer._consumers)
        expected = len(consumer._providers)
        return {"ok": bool(started and alive and fresh and attached >= expected > 0),
                "connected": bool(alive and fresh), "consumers": attached, "expected": expected}


class Health:
    """Liveness and readiness of one service process."""

    def __init__(self, service: str, database: Callable[[], object], migrations_dir: Path | None,
                 consumers: list, live_max_lag: float = 10.0, consumer_stale_after: float = 10.0,
                 db_timeout: float = 3.0):
        from mailroom_shared import migrations

        self.service = service
        self.database = database
        self.consumers = [ConsumerWatch(consumer) for consumer in consumers]
        self.live_max_lag = live_max_lag
        self.consumer_stale_after = consumer_stale_after
        self.db_timeout = db_timeout
        self.last_beat = time.monotonic()
        self.expected = self.known = None
        if migrations_dir is not None and (migrations_dir / "env.py").exists():
            self.expected = migrations.expected_heads(migrations_dir)
            self.known = migrations.known_revisions(migrations_dir)

    def beat_forever(self) -> None:
        import eventlet

        while True:
            self.last_beat = time.monotonic()
            eventlet.sleep(1.0)

    def live(self) -> tuple[int, dict]:
        lag = time.monotonic() - self.last_beat
        ok = lag < self.live_max_lag
        return (200 if ok else 503), {"service": self.service, "status": "ok" if ok else "stalled",
                                      "loop_lag_seconds": round(lag, 3)}

    def ready(self) -> tuple[int, dict]:
        import eventlet

        from mailroom_shared import migrations

        checks: dict[str, object] = {}
        ok = True
        try:
            database = self.database()
            with eventlet.Timeout(self.db_timeout), database.engine.connect() as connection:
                current = migrations.current_revisions(connection)
            checks["database"] = "up"
            if self.expected is not None:
                state = migrations.schema_state(current, self.expected, self.known)
                checks["schema"] = state
                ok = state in ("current", "ahead")
        except (Exception, eventlet.Timeout) as exc:
            checks["database"] = "down"
            checks["database_error"] = (str(exc) or type(exc).__name__).splitlines()[0][:200]
            ok = False
        if self.consumers:
            states = [watch.state(self.consumer_stale_after) for watch in self.consumers]
            checks["broker"] = "connected" if all(s["connected"] for s in states) else "disconnected"
            checks["consumers"] = sum(s["consumers"] for s in states)
            checks["consumers_expected"] = sum(s["expected"] for s in states)
            ok = ok and all(s["ok"] for s in states)
        READY.labels(self.service).set(1 if ok else 0)
        return (200 if ok else 503), {"service": self.service, "status": "ready" if ok else "unavailable",
                                      "checks": checks}


def metrics_wsgi_app(health: Health | None) -> Callable:
    """/metrics, /health/live and /health/ready for the dedicated metrics port."""

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            body, content_type = metrics_payload()
            status = 200
        elif path in ("/health/live", "/health/ready") and health is not None:
            status, document = health.live() if path.endswith("live") else health.ready()
            body, content_type = json.dumps(document).encode(), "application/json"
        else:
            status, body, content_type = 404, b"not found\n", "text/plain"
        start_response(f"{status} {'OK' if status == 200 else 'Error'}",
                       [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]

    return app


# --- logs -----------------------------------------------------------------------------------------

SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL)", re.I)
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/\s@]*:)([^@\s/]+)(@)", re.I)
_BEARER = re.compile(r"(\bbearer\s+)[A-Za-z0-9._~+/=-]+", re.I)
_PAIR = re.compile(r"""(\b(?:password|passwd|pwd|secret|token|api_?key)\b["']?\s*[:=]\s*["']?)([^\s"',;&}]+)""", re.I)


class Redactor:
    """Removes secrets from a log line: the values of secret-looking environment variables (and
    of `*_DATABASE_URL`/`AMQP_URI`'s passwords), URL passwords, bearer tokens, `password=…`."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        environ = os.environ if environ is None else environ
        values = {value for name, value in environ.items() if SECRET_NAME.search(name) and len(value or "") >= 4}
        self.values = sorted(values, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self.values:
            if value in text:
                text = text.replace(value, "***")
        text = _URL_PASSWORD.sub(r"\1***\3", text)
        text = _BEARER.sub(r"\1***", text)
        return _PAIR.sub(r"\1***", text)


_redactor: Redactor | None = None


def redact(text: str) -> str:
    global _redactor
    if _redactor is None:
        _redactor = Redactor()
    return _redactor(text)


LOG_CONTEXT: contextvars.ContextVar[dict | None] = contextvars.ContextVar("mailroom_log_context", default=None)


def envelope_fields(envelope) -> dict:
    """What a log line says about the event being handled."""
    if not isinstance(envelope, Mapping):
        return {}
    fields = {"event_id": envelope.get("id"), "event_type": envelope.get("type"),
              "event_source": envelope.get("source"), "subject": envelope.get("subject")}
    correlation = envelope.get("traceparent") or envelope.get("correlationid")
    if correlation:
        fields["correlation_id"] = correlation
    trace = tracing.trace_id(envelope.get("traceparent"))
    if trace:
        fields["trace_id"] = trace  # one message's path across every service: grep this
    data = envelope.get("data")
    if isinstance(data, Mapping):
        for key in ("message_id", "conversation_id", "intake_id", "email_id"):
            if isinstance(data.get(key), str | int):
                fields[key] = data[key]
    return {key: value for key, value in fields.items() if value is not None}


@contextlib.contextmanager
def log_context(**fields) -> Iterator[None]:
    """Add fields to every log line written inside (this green thread only)."""
    current = LOG_CONTEXT.get() or {}
    token = LOG_CONTEXT.set({**current, **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        LOG_CONTEXT.reset(token)


def service_name() -> str | None:
    """This process's service: set when its container is set up; before that (the first lines of
    `mailroom-service … contacts.service`), the image's MAILROOM_SERVICE or the module argument."""
    global SERVICE_NAME
    if SERVICE_NAME is None:
        modules = [arg for arg in sys.argv[1:] if arg.endswith(".service")]
        SERVICE_NAME = os.environ.get("MAILROOM_SERVICE") or (modules[0].split(".")[0] if len(modules) == 1 else None)
    return SERVICE_NAME


def configure_logging(service: str) -> None:
    """A process that is not a nameko service (the SMTP listener) logs as the services do:
    MAILROOM_LOG_FORMAT (plain or JSON lines), secrets redacted, its service named."""
    import logging.config

    from mailroom_shared import config

    global SERVICE_NAME
    SERVICE_NAME = service
    logging.config.dictConfig(config.logging_config())


class PlainFormatter(logging.Formatter):
    """The human-readable format of `make run`, with secrets redacted."""

    def __init__(self, fmt: str = "%(asctime)s %(name)s %(levelname)s %(message)s", datefmt: str | None = None):
        super().__init__(fmt, datefmt)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "service": service_name(),
            "message": redact(record.getMessage()),
        }
        document.update(LOG_CONTEXT.get() or {})
        if record.exc_info:
            document["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            document["exception"] = redact(record.exc_text)
        if record.stack_info:
            document["stack"] = redact(self.formatStack(record.stack_info))
        return redact(json.dumps(document, default=str))  # and the context's values


__all__ = [
    "DATABASE_GAUGES", "DELIVERIES", "DELIVERY_DURATION", "HANDLER_DEAD_LETTERED", "HANDLER_DURATION",
    "HANDLER_EVENTS", "HANDLER_FAILURES", "HANDLER_RETRIED", "HTTP_DURATION", "IMAP_LAST_SUCCESS", "IMAP_POLLS",
    "INTAKE_MESSAGES", "QUARANTINED", "Health", "JsonFormatter", "PlainFormatter", "Redactor", "ServiceCollector",
    "configure_logging", "database_gauge", "envelope_fields", "imap_polled", "log_context", "metrics_payload",
    "metrics_wsgi_app", "redact",
]


# --- CPU profile (bench/run.py --cprofile) -------------------------------------------------------


class CpuProfile:
    """With `MAILROOM_CPROFILE_DIR` set, a cProfile of the service's event-loop thread, timed in
    CPU time of that thread (`time.thread_time`: waiting for the database, the broker or a busy
    machine's run queue costs nothing), written as `<dir>/<service>-<pid>.prof` when the service
    stops. For the benchmark (`bench/run.py --cprofile`); never on in a deployment."""

    def __init__(self, name: str):
        import cProfile

        self.directory = os.environ.get("MAILROOM_CPROFILE_DIR") or None
        self.name = name
        self.profile = cProfile.Profile(time.thread_time) if self.directory else None

    def start(self) -> CpuProfile:
        if self.profile is not None:
            self.profile.enable()
        return self

    def stop(self) -> None:
        if self.profile is None:
            return
        self.profile.disable()
        target = Path(self.directory) / f"{self.name}-{os.getpid()}.prof"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self.profile.dump_stats(str(target))
        except OSError as exc:
            log.warning("could not write the CPU profile %s: %s", target, exc)
        self.profile = None
