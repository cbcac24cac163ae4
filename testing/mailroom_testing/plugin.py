"""pytest fixtures: each test gets its own RabbitMQ vhost and its own PostgreSQL databases."""

from __future__ import annotations

import os

import pytest

from mailroom_testing import infra
from mailroom_testing.contracts import bind_tap, check_published_events
from mailroom_testing.stack import Stack
from mailroom_testing.tokens import TEST_ENV, admin_headers

POLL_ENV = {"OUTBOUND_POLL_SECONDS": "0.2", "NOTIFIER_POLL_SECONDS": "0.2"}
# service processes forked from one that imported the services once (mailroom_testing.preload):
# ~1.1 s of CPU less per service started; MAILROOM_TEST_PRELOAD=0 starts each from scratch
PRELOADED = os.environ.get("MAILROOM_TEST_PRELOAD", "1") != "0"


@pytest.fixture(scope="session")
def rabbit_admin():
    base_uri, container = infra.base_amqp_uri()
    management = os.environ.get("MAILROOM_TEST_RABBIT_MANAGEMENT_URL", infra.LOCAL_MANAGEMENT)
    yield infra.RabbitAdmin(base_uri, management)
    if container is not None:  # pragma: no cover
        container.stop()


@pytest.fixture(scope="session")
def background_cleanup(rabbit_admin, postgres_admin):
    """Where tests' vhosts and databases are deleted, behind the tests (infra.BackgroundCleanup);
    it finishes before the servers' session fixtures end."""
    cleanup = infra.BackgroundCleanup()
    yield cleanup
    errors = cleanup.close()
    if errors:
        raise RuntimeError(f"{len(errors)} test vhost(s)/database(s) could not be deleted:\n" + "\n".join(errors[:20]))


@pytest.fixture
def amqp_uri(rabbit_admin, background_cleanup):
    vhost = rabbit_admin.create_vhost()
    yield rabbit_admin.uri_for(vhost)
    background_cleanup.later(rabbit_admin.delete_vhost, vhost)


@pytest.fixture(scope="session")
def postgres_admin():
    admin_url, container = infra.postgres_admin_url()
    admin = infra.PostgresAdmin(admin_url)
    yield admin
    admin.dispose()
    if container is not None:  # pragma: no cover
        container.stop()


@pytest.fixture(scope="session")
def migrated_templates(postgres_admin):
    """Each service's database migrated to head once a session (infra.MigratedTemplates)."""
    templates = infra.MigratedTemplates(postgres_admin)
    yield templates
    templates.drop()


@pytest.fixture
def make_database(postgres_admin, background_cleanup):
    """`make_database(prefix)`: an empty database, dropped after the test; `template=URL` copies
    that database instead."""
    created: list[str] = []

    def make(prefix: str, template: str | None = None) -> str:
        url = postgres_admin.create_database(prefix, template)
        created.append(url)
        return url

    yield make
    for url in created:
        background_cleanup.later(postgres_admin.drop_database, url)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "unchecked_events(reason): the stack's published events are not checked against "
        "docs/events.asyncapi.yaml after the test (say why)")
    config.addinivalue_line(
        "markers", "runs_long: a test file that takes minutes (the chaos run): started before the others")


def _start_order(item) -> int:
    if item.get_closest_marker("runs_long"):
        return 0
    return 1 if item.get_closest_marker("integration") else 2


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """The longest files first, then those that start servers, then the unit tests (a stable sort
    by file: a file's tests stay together and in their order). `make test` hands whole files to
    its workers in this order (--dist loadfile): a long file started last kept one worker busy
    alone at the end, and short files at the end fill the gaps instead."""
    order: dict[str, int] = {}
    for item in items:
        path = str(item.path)
        order[path] = min(order.get(path, 2), _start_order(item))
    items.sort(key=lambda item: order[str(item.path)])


@pytest.fixture
def stack_factory(amqp_uri, make_database, migrated_templates, tmp_path, request):
    """`stack_factory([ServiceSpec, ...], extra_env={...})` starts those services (one process each).
    Every stack verifies tokens with testing.tokens.TEST_SECRET and sends the test admin's token
    by default (`headers=` of a request overrides it; testing.tokens.auth mints others).

    After the test, every event the stacks published (a tap queue bound to the vhost's events
    exchanges) is validated against its schema in docs/events.asyncapi.yaml; a mismatch fails the
    test (mailroom_testing.contracts; `@pytest.mark.unchecked_events(reason)` opts out)."""
    stacks: list[Stack] = []

    def start(services, extra_env: dict | None = None) -> Stack:
        # due retries looked for every 0.2 s, not every second (a test that sets them keeps its own)
        stack = Stack(services=list(services), amqp_uri=amqp_uri,
                      # copies of databases migrated once a session: at head already
                      database_urls={spec.name: make_database(spec.name, migrated_templates.template_for(
                          spec.name, spec.migrations)) for spec in services},
                      workdir=tmp_path / f"stack{len(stacks)}", extra_env={**TEST_ENV, **POLL_ENV, **(extra_env or {})},
                      default_headers=admin_headers(), migrate_on_start=False, preloaded=PRELOADED)
        if not stacks:
            bind_tap(amqp_uri)  # before anything publishes
        stacks.append(stack)
        return stack.start()

    yield start
    for stack in stacks:
        stack.stop()
    if stacks and request.node.get_closest_marker("unchecked_events") is None:
        checked, problems = check_published_events(amqp_uri)
        request.node.user_properties.append(("events_checked_against_asyncapi", checked))
        if problems:
            pytest.fail(f"{len(problems)} problem(s) in the {checked} events the stack published, against "
                        "the AsyncAPI document (docs/events.asyncapi.yaml as generated now):\n"
                        + "\n".join(problems[:20]), pytrace=False)
