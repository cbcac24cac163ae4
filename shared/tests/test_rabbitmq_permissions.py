"""The per-service RabbitMQ permissions the manifests give (deploy/k8s/base/rabbitmq/users.yaml)
hold against the real broker and the real code: with them a service declares the whole topology
(as it does at start), publishes its own events, consumes its own queues and parks a failed
message in its retry queue, and is refused publishing another service's events or reading
another service's queue."""

from __future__ import annotations

import urllib.parse
import uuid
from pathlib import Path

import amqp
import pytest
import yaml
from kombu import Connection, Exchange, Producer

from mailroom_shared.messaging import topology

pytestmark = pytest.mark.integration

USERS = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "base" / "rabbitmq" / "users.yaml"


def permissions_of(service: str) -> dict:
    for doc in yaml.safe_load_all(USERS.read_text()):
        if doc and doc["kind"] == "Permission" and doc["metadata"]["name"] == f"mailroom-{service}":
            return doc["spec"]["permissions"]
    raise KeyError(service)


@pytest.fixture
def service_uri(rabbit_admin, amqp_uri):
    """amqp_uri's vhost, as a user holding exactly the manifest's permissions of a service."""
    vhost = urllib.parse.unquote(urllib.parse.urlsplit(amqp_uri).path.lstrip("/"))
    created = []

    def make(service: str) -> str:
        user, password = f"mr-{service}-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
        rabbit_admin._api("PUT", f"/api/users/{user}", {"password": password, "tags": ""})
        created.append(user)
        rabbit_admin._api("PUT", f"/api/permissions/{urllib.parse.quote(vhost, safe='')}/{user}",
                          permissions_of(service))
        base = rabbit_admin.base
        return f"amqp://{user}:{password}@{base.hostname}:{base.port or 5672}/{urllib.parse.quote(vhost, safe='')}"

    yield make
    for user in created:
        rabbit_admin._api("DELETE", f"/api/users/{user}")


def publish(uri: str, exchange: str, routing_key: str) -> None:
    # confirm_publish: wait for the broker's answer, so a refusal raises here
    with Connection(uri, transport_options={"confirm_publish": True}) as connection:
        channel = connection.channel()
        Producer(channel).publish({"x": 1}, exchange=Exchange(exchange, type="topic", durable=True, passive=True),
                                  routing_key=routing_key, declare=[])


def get_one(uri: str, queue: str) -> None:
    with Connection(uri) as connection:
        connection.channel().basic_get(queue)


@pytest.mark.parametrize("service", ["contacts", "conversations"])
def test_a_service_can_do_its_work_and_nothing_of_another(service_uri, service):
    uri = service_uri(service)
    with Connection(uri) as connection:  # what every service does at start
        topology.declare_topology(connection)
    publish(uri, f"{service}.events", "anything")
    own = next(sub for sub in topology.SUBSCRIPTIONS if sub.service == service)
    get_one(uri, own.queue_name)
    # a failed message goes to its retry queue through the default exchange
    with Connection(uri, transport_options={"confirm_publish": True}) as connection:
        Producer(connection.channel()).publish({"x": 1}, exchange="", routing_key=topology.retry_queue_name(
            own.queue_name, 1))
    other_service = next(p for p in topology.PRODUCERS if p != service)
    with pytest.raises(amqp.exceptions.AccessRefused):
        publish(uri, f"{other_service}.events", "anything")
    foreign = next(sub for sub in topology.SUBSCRIPTIONS if sub.service != service)
    with pytest.raises(amqp.exceptions.AccessRefused):
        get_one(uri, foreign.queue_name)
