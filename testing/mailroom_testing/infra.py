"""Where the tests' RabbitMQ and PostgreSQL come from.

Order: explicit environment (`MAILROOM_TEST_AMQP_URI`/`AMQP_URI`, `MAILROOM_TEST_POSTGRES_URL`),
else testcontainers when a Docker engine answers, else the local defaults (127.0.0.1), which is
what .ci/run provides.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from mailroom_shared.db import normalise_url
from mailroom_shared.migrations import upgrade

LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672/"
LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_MANAGEMENT = "http://guest:guest@127.0.0.1:15672"


def docker_available() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class RabbitAdmin:
    """Creates and deletes throwaway vhosts through the management API, or rabbitmqctl."""

    def __init__(self, base_amqp_uri: str, management_url: str):
        self.base = urllib.parse.urlsplit(base_amqp_uri)
        self.management = urllib.parse.urlsplit(management_url)

    def _api(self, method: str, path: str, body: dict | None = None) -> bytes:
        url = f"{self.management.scheme}://{self.management.hostname}:{self.management.port}{path}"
        request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None)
        token = base64.b64encode(f"{self.management.username}:{self.management.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()

    def close_connections(self, amqp_uri: str) -> int:
        """Close every client connection of the vhost in `amqp_uri` from the broker's side (what a
        broker restart or a network cut does to a client); how many were closed."""
        vhost = urllib.parse.unquote(urllib.parse.urlsplit(amqp_uri).path.lstrip("/")) or "/"
        connections = json.loads(self._api("GET", f"/api/vhosts/{urllib.parse.quote(vhost, safe='')}/connections"))
        for connection in connections:
            self._api("DELETE", f"/api/connections/{urllib.parse.quote(connection['name'], safe='')}")
        return len(connections)

    def queue_stats(self, amqp_uri: str, queue: str) -> dict:
        """The management API's view of one queue of the vhost in `amqp_uri` (message_stats holds
        counters such as `redeliver`; they appear once the queue saw traffic)."""
        vhost = urllib.parse.unquote(urllib.parse.urlsplit(amqp_uri).path.lstrip("/")) or "/"
        path = f"/api/queues/{urllib.parse.quote(vhost, safe='')}/{urllib.parse.quote(queue, safe='')}"
        return json.loads(self._api("GET", path))

    def create_vhost(self) -> str:
        vhost = f"mailroom-test-{uuid.uuid4().hex[:10]}"
        user = self.base.username or "guest"
        try:
            self._api("PUT", f"/api/vhosts/{vhost}")
            self._api("PUT", f"/api/permissions/{vhost}/{user}", {"configure": ".*", "write": ".*", "read": ".*"})
        except (urllib.error.URLError, OSError):
            subprocess.run(["rabbitmqctl", "add_vhost", vhost], check=True, capture_output=True)
            subprocess.run(["rabbitmqctl", "set_permissions", "-p", vhost, user, ".*", ".*", ".*"],
                           check=True, capture_output=True)
        return vhost

    def delete_vhost(self, vhost: str) -> None:
        try:
            self._api("DELETE", f"/api/vhosts/{vhost}")
        except (urllib.error.URLError, OSError):
            subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True)

    def uri_for(self, vhost: str) -> str:
        netloc = self.base.netloc
        return f"{self.base.scheme}://{netloc}/{urllib.parse.quote(vhost, safe='')}"


class PostgresAdmin:
    """Creates and drops throwaway databases on one server."""

    def __init__(self, admin_url: str):
        self.admin_url = make_url(normalise_url(admin_url))
        self.engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")

    def create_database(self, prefix: str, template: str | None = None) -> str:
        """An empty database, or a copy of the database at URL `template` (nobody may be connected to it)."""
        name = f"mr_{prefix}_{uuid.uuid4().hex[:10]}"
        copy = f' TEMPLATE "{make_url(template).database}"' if template else ""
        with self.engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"{copy}'))
        return self.admin_url.set(database=name).render_as_string(hide_password=False)

    def disconnect_all(self, url: str) -> None:
        """End every session connected to the database at `url`."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                    "WHERE datname = :name AND pid <> pg_backend_pid()"),
                               {"name": make_url(url).database})

    def drop_database(self, url: str) -> None:
        name = make_url(url).database
        with self.engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def dispose(self) -> None:
        self.engine.dispose()


class MigratedTemplates:
    """One database per service migrated to head once (per session and xdist worker), which a
    stack's databases copy (CREATE DATABASE … TEMPLATE): a copy takes a fraction of a second where
    running every migration again took one to two seconds per service and test. The copy is the
    same schema and rows the migrations make (they insert no rows that depend on the moment)."""

    def __init__(self, admin: PostgresAdmin):
        self.admin = admin
        self.templates: dict[tuple[str, str], str] = {}

    def template_for(self, service: str, migrations_dir) -> str:
        key = (service, str(migrations_dir))
        if key not in self.templates:
            url = self.admin.create_database(f"tpl_{service}")
            try:
                upgrade(service, migrations_dir, url)
            except Exception:
                self.admin.drop_database(url)
                raise
            self.admin.disconnect_all(url)
            self.templates[key] = url
        return self.templates[key]

    def drop(self) -> None:
        for url in self.templates.values():
            self.admin.drop_database(url)
        self.templates.clear()


class BackgroundCleanup:
    """Runs cleanup calls (dropping a finished test's databases, deleting its vhost) one after
    another in a thread of its own, so that the next test does not wait for them: a DROP DATABASE
    takes 0.5–2.5 s on the CI's PostgreSQL, a vhost deletion about 1 s, and a test with three
    services did four of them after every test. `close()` waits for all and returns what failed."""

    def __init__(self):
        self.errors: list[str] = []
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, daemon=True, name="mailroom-test-cleanup")
        self._thread.start()

    def later(self, call, *args) -> None:
        self._queue.put((call, args))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            call, args = item
            try:
                call(*args)
            except Exception as exc:  # noqa: BLE001 - reported by close()
                self.errors.append(f"{getattr(call, '__qualname__', call)}{args}: {exc}")

    def close(self) -> list[str]:
        self._queue.put(None)
        self._thread.join()
        return self.errors


def base_amqp_uri() -> tuple[str, object | None]:
    configured = os.environ.get("MAILROOM_TEST_AMQP_URI") or os.environ.get("AMQP_URI")
    if configured:
        return configured, None
    if docker_available():  # pragma: no cover - no Docker engine on the CI machine
        from testcontainers.rabbitmq import RabbitMqContainer

        container = RabbitMqContainer("rabbitmq:3.13-management").start()
        host, port = container.get_container_host_ip(), container.get_exposed_port(5672)
        return f"amqp://guest:guest@{host}:{port}/", container
    return LOCAL_AMQP, None


def postgres_admin_url() -> tuple[str, object | None]:
    configured = os.environ.get("MAILROOM_TEST_POSTGRES_URL")
    if configured:
        return configured, None
    if docker_available():  # pragma: no cover - no Docker engine on the CI machine
        from testcontainers.postgres import PostgresContainer

        container = PostgresContainer("postgres:16").start()
        return container.get_connection_url().replace("+psycopg2", ""), container
    return LOCAL_POSTGRES, None


def query_scalar(database_url: str, sql: str):
    """One value from a service's database (e.g. a row count), on a connection of its own."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(text(sql)).scalar_one()
    finally:
        engine.dispose()
