"""Dead letters against the real RabbitMQ: browsing leaves them in place, replay moves exactly the
chosen ones back to their queue with a fresh retry budget, purge drops them."""

import json
import uuid

import amqp
import pytest
from kombu import Connection

from mailroom_shared.messaging import topology
from mailroom_shared.messaging.dead_letters import (
    ATTEMPT_HEADER,
    ERROR_HEADER,
    FIRST_FAILED_HEADER,
    LAST_FAILED_HEADER,
    REPLAYED_HEADER,
    DeadLetters,
    UnknownQueue,
    resolve_queue,
)

pytestmark = pytest.mark.integration

QUEUE = "evt-ingest-message_received--contacts.handle_message_received"


@pytest.fixture
def broker(amqp_uri):
    with Connection(amqp_uri) as connection:
        topology.declare_topology(connection)
    return amqp_uri


def park(amqp_uri, count: int) -> list[str]:
    """`count` messages in QUEUE's dead-letter queue, as the retrying handler leaves them."""
    ids = []
    with Connection(amqp_uri) as connection:
        channel = connection.connection.channel()
        for n in range(count):
            event_id = str(uuid.uuid4())
            ids.append(event_id)
            body = json.dumps({"id": event_id, "n": n})
            channel.basic_publish(amqp.Message(body, message_id=event_id, type="mailroom.message_received.v1",
                                               content_type="application/json", application_headers={
                                                   ATTEMPT_HEADER: 6, ERROR_HEADER: f"KeyError: 'x{n}'",
                                                   FIRST_FAILED_HEADER: "2026-12-06T10:00:00+00:00",
                                                   LAST_FAILED_HEADER: "2026-12-06T10:12:36+00:00"}),
                                  exchange="", routing_key=QUEUE + ".dlq")
        channel.close()
    return ids


def depth(amqp_uri, name: str) -> int:
    with Connection(amqp_uri) as connection:
        channel = connection.connection.channel()
        try:
            return channel.queue_declare(name, passive=True).message_count
        finally:
            channel.close()


def take_all(amqp_uri, name: str) -> list[amqp.Message]:
    with Connection(amqp_uri) as connection:
        channel = connection.connection.channel()
        messages = []
        while (message := channel.basic_get(name, no_ack=True)) is not None:
            messages.append(message)
        channel.close()
    return messages


def test_browsing_shows_why_and_leaves_every_message_in_place(broker):
    ids = park(broker, 3)
    letters = DeadLetters(broker).browse("contacts.handle_message_received")
    assert [letter.message_id for letter in letters] == ids
    first = letters[0]
    assert first.error == "KeyError: 'x0'" and first.attempts == 6
    assert first.first_failed_at.startswith("2026-12-06T10:00") and first.last_failed_at.startswith("2026-12-06T10:12")
    assert first.envelope() == {"id": ids[0], "n": 0}
    assert depth(broker, QUEUE + ".dlq") == 3
    assert DeadLetters(broker).counts()[QUEUE] == 3


def test_replay_of_one_id_moves_only_that_message_with_a_fresh_retry_budget(broker):
    ids = park(broker, 3)
    assert DeadLetters(broker).replay(QUEUE + ".dlq", message_id=ids[1]) == 1
    replayed = take_all(broker, QUEUE)
    assert [m.properties["message_id"] for m in replayed] == [ids[1]]
    headers = replayed[0].properties["application_headers"]
    assert ATTEMPT_HEADER not in headers and headers[REPLAYED_HEADER] == 1
    assert headers[ERROR_HEADER] == "KeyError: 'x1'"  # why it failed before stays visible
    assert [letter.message_id for letter in DeadLetters(broker).browse(QUEUE)] == [ids[0], ids[2]]


def test_replay_all_then_purge(broker):
    park(broker, 4)
    dead_letters = DeadLetters(broker)
    assert dead_letters.replay(QUEUE, limit=2) == 2
    assert depth(broker, QUEUE) == 2 and depth(broker, QUEUE + ".dlq") == 2
    assert dead_letters.purge(QUEUE) == 2
    assert depth(broker, QUEUE + ".dlq") == 0
    assert dead_letters.replay(QUEUE) == 0


def test_queue_names_are_resolved_or_refused_clearly():
    assert resolve_queue("contacts.handle_message_received") == QUEUE
    assert resolve_queue(QUEUE + ".dlq") == QUEUE
    with pytest.raises(UnknownQueue, match="ambiguous"):
        resolve_queue("handle_message_received")
    with pytest.raises(UnknownQueue, match="no subscription queue"):
        resolve_queue("nothing.here")


def test_the_cli_lists_shows_and_replays(broker, capsys):
    from mailroom_cli.main import main

    ids = park(broker, 2)
    assert main(["dead-letters", "--amqp-uri", broker, "list"]) == 0
    assert f"{QUEUE}  2" in capsys.readouterr().out
    assert main(["dead-letters", "--amqp-uri", broker, "show", "--queue", "contacts.handle_message_received"]) == 0
    shown = capsys.readouterr().out
    assert f"id={ids[0]}" in shown and "attempts=6" in shown and "KeyError: 'x1'" in shown
    assert main(["dead-letters", "--amqp-uri", broker, "replay", "--queue", QUEUE, "--id", ids[0]]) == 0
    assert "replayed 1 message(s)" in capsys.readouterr().out
    assert main(["dead-letters", "--amqp-uri", broker, "replay", "--queue", QUEUE, "--id", "no-such-id"]) == 1
    assert main(["dead-letters", "--amqp-uri", broker, "purge", "--queue", QUEUE, "--all", "--yes"]) == 0
    assert "dropped 1 message(s)" in capsys.readouterr().out
    assert main(["dead-letters", "--amqp-uri", broker, "show", "--queue", "nope"]) == 2
