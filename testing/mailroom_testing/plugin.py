"""pytest fixtures: each test gets its own RabbitMQ vhost and its own PostgreSQL databases."""

from __future__ import annotations

import os

import pytest

from mailroom_testing import infra
from mailroom_testing.contracts import bind_tap, check_published_events
from mailroom_testing.stack import Stack
from mailroom_testing.tokens import TEST_ENV, admin_headers


@pytest.fixture(scope="session")
def rabbit_admin():
    base_uri, container = infra.base_amqp_uri()
    management = os.environ.get("MAILROOM_TEST_RABBIT_MANAGEMENT_URL", infra.LOCAL_MANAGEMENT)
    yield infra.RabbitAdmin(base_uri, management)
    if container is not None:  # pragma: no cover
        container.stop()


@pytest.fixture
def amqp_uri(rabbit_admin):
    vhost = rabbit_admin.create_vhost()
    yield rabbit_admin.uri_for(vhost)
    rabbit_admin.delete_vhost(vhost)


@pytest.fixture(scope="session")
def postgres_admin():
    admin_url, container = infra.postgres_admin_url()
    admin = infra.PostgresAdmin(admin_url)
    yield admin
    admin.dispose()
    if container is not None:  # pragma: no cover
        container.stop()


@pytest.fixture
def make_database(postgres_admin):
    created: list[str] = []

    def make(prefix: str) -> str:
        url = postgres_admin.create_database(prefix)
        created.append(url)
        return url

    yield make
    for url in created:
        postgres_admin.drop_database(url)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "unchecked_events(reason): the stack's published events are not checked against "
        "docs/events.asyncapi.yaml after the test (say why)")


@pytest.fixture
def stack_factory(amqp_uri, make_database, tmp_path, request):
    """`stack_factory([ServiceSpec, ...], extra_env={...})` starts those services (one process each).
    Every stack verifies tokens with testing.tokens.TEST_SECRET and sends the test admin's token
    by default (`headers=` of a request overrides it; testing.tokens.auth mints others).

    After the test, every event the stacks published (a tap queue bound to the vhost's events
    exchanges) is validated against its schema in docs/events.asyncapi.yaml; a mismatch fails the
    test (mailroom_testing.contracts; `@pytest.mark.unchecked_events(reason)` opts out)."""
    stacks: list[Stack] = []

    def start(services, extra_env: dict | None = None) -> Stack:
        stack = Stack(services=list(services), amqp_uri=amqp_uri,
                      database_urls={spec.name: make_database(spec.name) for spec in services},
                      workdir=tmp_path / f"stack{len(stacks)}", extra_env={**TEST_ENV, **(extra_env or {})},
                      default_headers=admin_headers())
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
