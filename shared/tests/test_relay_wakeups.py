"""The outbox relays wake on their own process's commits instead of polling every 0.1–0.2 s
(#16, idle CPU): a commit that recorded events wakes every relay registered in the process, a
rollback or a commit without events wakes none, and a relay pass that published less than a full
batch says there is nothing more (no empty transaction after every wake-up)."""

from __future__ import annotations

import pytest
from sqlalchemy import MetaData, select

from mailroom_shared.db import Database
from mailroom_shared.messaging import outbox as outbox_module
from mailroom_shared.messaging.nameko_adapters import OutboxRelayProvider
from mailroom_shared.messaging.outbox import Outbox, OutboxRelay, on_events_committed, outbox_table


@pytest.fixture
def database(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'outbox.db'}")
    yield database
    database.dispose()


@pytest.fixture
def table(database):
    table = outbox_table(MetaData())
    table.metadata.create_all(database.engine)
    return table


@pytest.fixture
def wakes():
    woken: list[str] = []
    unregister = on_events_committed(lambda: woken.append("woken"))
    yield woken
    unregister()


def record(database, table, count: int = 1) -> None:
    outbox = Outbox(table)
    with database.transaction() as session:
        outbox.record_many(session, [("contact_created", f"c-{n}", contact(n)) for n in range(count)])


def contact(n: int) -> dict:
    return {"contact_id": f"c-{n}", "name": None, "emails": [f"a{n}@x.test"], "created_from": "api"}


def test_a_commit_that_recorded_events_wakes_the_relays_once(database, table, wakes):
    record(database, table, count=3)
    assert wakes == ["woken"]


def test_a_rolled_back_transaction_wakes_nothing_and_leaves_no_mark(database, table, wakes):
    outbox = Outbox(table)
    with pytest.raises(RuntimeError), database.transaction() as session:
        outbox.record(session, "contact_created", "c-1", contact(1))
        raise RuntimeError("the handler failed")
    assert wakes == []
    with database.transaction() as session:  # the next transaction of the same kind records nothing
        session.execute(select(table.c.id)).all()
    assert wakes == []
    with database.sessions() as session:
        assert session.info.get(outbox_module._WRITTEN) is None


def test_a_commit_without_events_wakes_nothing(database, table, wakes):
    with database.transaction() as session:
        session.execute(select(table.c.id)).all()
    assert wakes == []


def test_an_unregistered_relay_is_not_woken(database, table):
    woken = []
    unregister = on_events_committed(lambda: woken.append(1))
    unregister()
    unregister()  # twice is harmless (stop after kill)
    record(database, table)
    assert woken == []


def test_a_failing_waker_does_not_fail_the_commit_or_the_other_relays(database, table, wakes):
    def broken():
        raise RuntimeError("cannot wake")

    unregister = on_events_committed(broken)
    try:
        record(database, table)
    finally:
        unregister()
    assert wakes == ["woken"]
    with database.transaction() as session:
        assert len(session.execute(select(table.c.id)).all()) == 1  # committed all the same


def test_a_relay_pass_says_more_may_wait_only_after_a_full_batch(database, table):
    published = []

    def publish_batch(items):
        published.extend(item[0].event_id for item in items)
        return len(items), None

    provider = relay_provider(database, table, publish_batch, batch_size=2)
    record(database, table, count=3)
    assert provider.work_once() is True  # a full batch: look again at once
    assert provider.work_once() is False  # the last one: nothing was left when it read
    assert len(published) == 3


def relay_provider(database, table, publish_batch, batch_size: int = 200) -> OutboxRelayProvider:
    provider = OutboxRelayProvider("contacts", lambda: table)
    provider.relay = CountingRelay(database, table, publish_batch, batch_size=batch_size)
    provider.poll_interval = 600.0
    return provider


class CountingRelay(OutboxRelay):
    passes = 0

    def relay_once(self) -> int:
        self.passes += 1
        return super().relay_once()


def test_a_wake_up_with_nothing_committed_since_the_last_read_reads_nothing(database, table):
    published = []

    def publish_batch(items):
        published.extend(items)
        return len(items), None

    provider = relay_provider(database, table, publish_batch)
    record(database, table)
    assert provider.work_once() is False
    assert (len(published), provider.relay.passes) == (1, 1)
    # woken again (the kit wakes the relay after every event, as the commit did): no transaction
    assert provider.work_once() is False
    assert provider.relay.passes == 1
    record(database, table, count=2)  # a commit with events: the next wake-up reads
    provider.work_once()
    assert (len(published), provider.relay.passes) == (3, 2)


def test_a_failed_publish_is_tried_again_without_waiting_for_a_commit_or_the_poll(database, table):
    answers = [(0, RuntimeError("broker down")), None]
    published = []

    def publish_batch(items):
        answer = answers.pop(0)
        if answer is not None:
            return answer
        published.extend(items)
        return len(items), None

    provider = relay_provider(database, table, publish_batch)
    record(database, table)
    provider.work_once()
    assert provider.failed_quietly() and published == []
    provider.work_once()  # the worker's backoff has passed: the row goes now
    assert len(published) == 1 and provider.relay.passes == 2


def test_the_poll_reads_even_without_a_commit_in_this_process(database, table):
    published = []
    provider = relay_provider(database, table, lambda items: (published.extend(items) or len(items), None))
    provider.work_once()
    with database.transaction() as session:  # as another process would: no wake-up, no count here
        session.execute(table.insert().values(event_id="e-other", event_type="contact_created", attempts=0,
                                              envelope=Outbox(table).envelope("contact_created", "c-9", contact(9))))
        session.info.pop(outbox_module._WRITTEN, None)
    assert provider.work_once() is False and published == []  # not due yet
    provider.poll_interval = 0.0  # the poll interval has passed
    provider.work_once()
    assert [item[0].event_id for item in published] == ["e-other"]
