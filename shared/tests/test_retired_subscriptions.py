"""Retiring a subscription a release dropped, against the real RabbitMQ (#16): outbound no longer
takes every message_received, but a broker upgraded from the release before still has that queue,
bound, and would copy every inbound message into it for ever. The consuming service unbinds it
when it starts, keeps it while it still holds messages (an older outbound process still drains
it), and deletes it with its retry and dead-letter queues once they are empty."""

import json
import urllib.parse
import uuid
from pathlib import Path

import pytest
import yaml
from amqp import exceptions as amqp_exceptions
from kombu import Connection

from mailroom_shared.messaging import topology
from mailroom_shared.messaging.publishing import ConfirmedBatchPublisher, OutgoingMessage

pytestmark = pytest.mark.integration

[RETIRED] = topology.retired_subscriptions_of("outbound")
OLD_QUEUE = RETIRED.queue_name


def test_the_retired_subscription_is_outbounds_message_received_and_no_longer_in_the_topology():
    assert OLD_QUEUE == "evt-ingest-message_received--outbound.handle_message_received"
    assert RETIRED not in topology.SUBSCRIPTIONS
    assert not [s for s in topology.SUBSCRIPTIONS if s.service == "outbound" and s.event_type == "message_received"]
    assert topology.retired_subscriptions_of("contacts") == []


def declare_previous_release(amqp_uri):
    """What the release before left on the broker: the subscription queue, bound, with its retry
    and dead-letter queues (declared as that release declared them)."""
    with Connection(amqp_uri) as connection:
        topology.declare_topology(connection)
        channel = connection.default_channel
        topology.subscription_queue(RETIRED)(channel).declare()
        for queue in topology.retry_queues(OLD_QUEUE):
            queue(channel).declare()
        topology.dead_letter_queue(OLD_QUEUE)(channel).declare()


def publish_message_received(amqp_uri):
    publisher = ConfirmedBatchPublisher(amqp_uri, confirm_timeout=10)
    try:
        message_id = str(uuid.uuid4())
        assert publisher.publish_batch([OutgoingMessage(
            body=json.dumps({"id": message_id}), exchange="ingest.events", routing_key="message_received",
            message_id=message_id, type="mailroom.message_received.v1", app_id="ingest")]) == (1, None)
    finally:
        publisher.close()


def depth(amqp_uri, name: str) -> int | None:
    with Connection(amqp_uri) as connection:
        channel = connection.connection.channel()
        try:
            return channel.queue_declare(name, passive=True).message_count
        except amqp_exceptions.NotFound:
            return None
        finally:
            if channel.is_open:
                channel.close()


def retire(amqp_uri, service="outbound") -> dict:
    with Connection(amqp_uri) as connection:
        return topology.retire_subscriptions(connection, service)


def take_one(amqp_uri, name: str) -> None:
    with Connection(amqp_uri) as connection:
        channel = connection.connection.channel()
        message = channel.basic_get(name)
        assert message is not None
        channel.basic_ack(message.delivery_tag)
        channel.close()


def test_outbound_unbinds_the_old_queue_keeps_what_it_holds_and_deletes_it_once_empty(amqp_uri):
    declare_previous_release(amqp_uri)
    publish_message_received(amqp_uri)  # an inbound message the old outbound has not read yet
    assert depth(amqp_uri, OLD_QUEUE) == 1

    assert retire(amqp_uri, "contacts") == {}  # not contacts' queue: left alone
    publish_message_received(amqp_uri)
    assert depth(amqp_uri, OLD_QUEUE) == 2

    assert retire(amqp_uri) == {OLD_QUEUE: 2}  # unbound, kept: an old process may still drain it
    publish_message_received(amqp_uri)
    assert depth(amqp_uri, OLD_QUEUE) == 2  # no new copies
    assert depth(amqp_uri, "evt-ingest-message_received--contacts.handle_message_received") == 3

    take_one(amqp_uri, OLD_QUEUE)
    take_one(amqp_uri, OLD_QUEUE)
    assert retire(amqp_uri) == {}  # empty: deleted, with its retry and dead-letter queues
    names = [OLD_QUEUE, topology.dead_letter_queue_name(OLD_QUEUE),
             *(topology.retry_queue_name(OLD_QUEUE, n) for n in range(1, len(topology.RETRY_DELAYS_MS) + 1))]
    assert [depth(amqp_uri, name) for name in names] == [None] * len(names)
    assert retire(amqp_uri) == {}  # nothing left to do: idempotent


def test_a_dead_letter_of_the_old_queue_is_never_deleted_with_it(amqp_uri):
    declare_previous_release(amqp_uri)
    with Connection(amqp_uri) as connection:  # a message_received the old outbound dead-lettered
        connection.Producer().publish({"id": "dead"}, exchange="", serializer="json",
                                      routing_key=topology.dead_letter_queue_name(OLD_QUEUE))
    assert retire(amqp_uri) == {OLD_QUEUE: 1}
    assert depth(amqp_uri, OLD_QUEUE) == 0 and depth(amqp_uri, topology.dead_letter_queue_name(OLD_QUEUE)) == 1


def test_a_broker_that_never_had_the_old_queue_is_left_as_it_is(amqp_uri):
    with Connection(amqp_uri) as connection:
        topology.declare_topology(connection)
    assert retire(amqp_uri) == {}
    assert depth(amqp_uri, OLD_QUEUE) is None


class FakeContainer:
    def __init__(self, amqp_uri, service_name):
        self.config = {"AMQP_URI": amqp_uri}
        self.service_name = service_name
        self.spawned = []

    def spawn_managed_thread(self, fn, identifier=None):
        self.spawned.append(identifier)


def test_the_outbound_service_retires_the_old_queue_when_it_starts_and_checks_again_later(amqp_uri):
    from mailroom_shared.messaging.nameko_adapters import TopologyProvider

    declare_previous_release(amqp_uri)
    for service, gone in (("contacts", False), ("outbound", True)):
        provider = TopologyProvider()
        provider.container = FakeContainer(amqp_uri, service)
        provider.setup()  # what every service does when it starts
        provider.start()
        assert (depth(amqp_uri, OLD_QUEUE) is None) is gone, service
        assert provider.container.spawned == (["topology.retire"] if gone else [])


def test_a_failing_retirement_never_keeps_the_service_from_starting(amqp_uri, monkeypatch):
    from mailroom_shared.messaging.nameko_adapters import TopologyProvider

    def refused(connection, service):
        raise amqp_exceptions.AccessRefused("no configure permission on the old queue")
    monkeypatch.setattr(topology, "retire_subscriptions", refused)
    provider = TopologyProvider()
    provider.container = FakeContainer(amqp_uri, "outbound")
    provider.setup()  # no exception: the topology is declared, the retirement is tried again later
    assert depth(amqp_uri, "evt-ingest-delivery_report_received--outbound.handle_delivery_report_received") == 0


def test_the_manifests_outbound_user_may_retire_it(rabbit_admin, amqp_uri):
    """deploy/k8s/base/rabbitmq/users.yaml's permissions for outbound allow the unbind and delete."""
    users = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "base" / "rabbitmq" / "users.yaml"
    [permissions] = [doc["spec"]["permissions"] for doc in yaml.safe_load_all(users.read_text())
                     if doc and doc["kind"] == "Permission" and doc["metadata"]["name"] == "mailroom-outbound"]
    vhost = urllib.parse.unquote(urllib.parse.urlsplit(amqp_uri).path.lstrip("/"))
    user, password = f"mr-outbound-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    rabbit_admin._api("PUT", f"/api/users/{user}", {"password": password, "tags": ""})
    try:
        rabbit_admin._api("PUT", f"/api/permissions/{urllib.parse.quote(vhost, safe='')}/{user}", permissions)
        base = rabbit_admin.base
        outbound_uri = (f"amqp://{user}:{password}@{base.hostname}:{base.port or 5672}/"
                        f"{urllib.parse.quote(vhost, safe='')}")
        declare_previous_release(amqp_uri)
        publish_message_received(amqp_uri)
        assert retire(outbound_uri) == {OLD_QUEUE: 1}  # unbound
        publish_message_received(amqp_uri)
        take_one(amqp_uri, OLD_QUEUE)
        assert retire(outbound_uri) == {}  # deleted
        assert depth(amqp_uri, OLD_QUEUE) is None
    finally:
        rabbit_admin._api("DELETE", f"/api/users/{user}")
