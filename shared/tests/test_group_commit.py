"""Group commit of idempotent event handlers (ProcessedEvents.run_once), against the real
PostgreSQL: concurrent calls share transactions, yet each keeps its own outcome."""

import threading
import uuid

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, event, func, insert, select

from mailroom_shared.db import Database
from mailroom_shared.messaging.idempotency import ProcessedEvents, processed_events_table

pytestmark = pytest.mark.integration


@pytest.fixture
def setup(make_database):
    database = Database(make_database("groupcommit"))
    metadata = MetaData()
    effects = Table("effects", metadata, Column("id", Integer, primary_key=True, autoincrement=True),
                    Column("event_id", String(64), nullable=False, unique=True))
    processed = ProcessedEvents(processed_events_table(metadata), max_batch=32)
    metadata.create_all(database.engine)
    commits = []
    event.listen(database.engine, "commit", lambda _conn: commits.append(1))
    yield database, effects, processed, commits
    database.dispose()


def envelope(event_id: str | None = None) -> dict:
    return {"source": "test", "id": event_id or str(uuid.uuid4())}


def effect(effects, event_id: str, gate: threading.Event | None = None, fail: bool = False):
    def change(session):
        if gate is not None:
            gate.wait(5)
        if fail:
            raise ValueError(f"cannot handle {event_id}")
        session.execute(insert(effects).values(event_id=event_id))
    return change


def stored(database, effects) -> list[str]:
    with database.transaction() as session:
        return sorted(session.execute(select(effects.c.event_id)).scalars())


def run_concurrently(calls) -> dict:
    """Start `calls` (name -> function) in threads; name -> ('ok', value) | ('error', exc)."""
    outcomes: dict = {}

    def run(name, function):
        try:
            outcomes[name] = ("ok", function())
        except Exception as exc:
            outcomes[name] = ("error", exc)

    threads = [threading.Thread(target=run, args=item) for item in calls.items()]
    for thread in threads:
        thread.start()
    return outcomes, threads


def queued_behind_a_slow_transaction(database, effects, processed, calls: dict) -> dict:
    """Run `calls` while a first event ("first") holds its transaction open, so that all of them
    queue up and then run as one batch; name -> outcome, "first" included."""
    gate = threading.Event()
    outcomes, threads = run_concurrently({"first": lambda: processed.run_once(
        database, envelope("first"), "h", effect(effects, "first", gate))})
    committer = processed._committer(database)
    while not committer._leading:
        threading.Event().wait(0.001)
    more, more_threads = run_concurrently(calls)
    while len(committer._queue) < len(calls):
        threading.Event().wait(0.01)
    gate.set()
    for thread in threads + more_threads:
        thread.join(10)
    return {**outcomes, **more}


def test_calls_arriving_during_a_transaction_share_the_next_one(setup):
    database, effects, processed, commits = setup
    outcomes = queued_behind_a_slow_transaction(database, effects, processed, {
        f"e{n}": (lambda n=n: processed.run_once(database, envelope(f"e{n}"), "h", effect(effects, f"e{n}")))
        for n in range(10)})
    assert all(result == ("ok", True) for result in outcomes.values()), outcomes
    assert len(commits) == 2  # 11 events, 2 transactions: the first alone, then the 10 queued ones
    assert stored(database, effects) == sorted(["first"] + [f"e{n}" for n in range(10)])


def test_one_failing_event_fails_only_its_own_caller(setup):
    database, effects, processed, _commits = setup
    outcomes = queued_behind_a_slow_transaction(database, effects, processed, {
        f"e{n}": (lambda n=n: processed.run_once(database, envelope(f"e{n}"), "h",
                                                 effect(effects, f"e{n}", fail=(n == 3))))
        for n in range(6)})
    assert outcomes["e3"][0] == "error" and "cannot handle e3" in str(outcomes["e3"][1])
    assert {name: result for name, result in outcomes.items() if name != "e3"} == {
        name: ("ok", True) for name in ["first", "e0", "e1", "e2", "e4", "e5"]}
    assert stored(database, effects) == ["e0", "e1", "e2", "e4", "e5", "first"]
    # e3 was not recorded as processed: its retry will run it
    assert processed.run_once(database, envelope("e3"), "h", effect(effects, "e3")) is True


def test_a_duplicate_delivery_in_the_same_batch_runs_once(setup):
    database, effects, processed, _commits = setup
    same = envelope("twice")
    outcomes = queued_behind_a_slow_transaction(database, effects, processed, {
        "a": lambda: processed.run_once(database, same, "h", effect(effects, "twice")),
        "b": lambda: processed.run_once(database, same, "h", effect(effects, "twice")),
        "other handler": lambda: processed.run_once(database, same, "h2", lambda session: None),
    })
    assert sorted([outcomes["a"], outcomes["b"]]) == [("ok", False), ("ok", True)]
    assert outcomes["other handler"] == ("ok", True)  # another handler of the same event claims on its own
    assert stored(database, effects) == ["first", "twice"]


def test_an_event_already_processed_is_skipped(setup):
    database, effects, processed, _commits = setup
    once = envelope()
    assert processed.run_once(database, once, "h", effect(effects, "x")) is True
    assert processed.run_once(database, once, "h", effect(effects, "y")) is False
    with database.transaction() as session:
        assert session.execute(select(func.count()).select_from(effects)).scalar_one() == 1


def test_batch_size_one_commits_every_event_alone(make_database):
    database = Database(make_database("groupcommit"))
    metadata = MetaData()
    processed = ProcessedEvents(processed_events_table(metadata), max_batch=1)
    metadata.create_all(database.engine)
    commits = []
    event.listen(database.engine, "commit", lambda _conn: commits.append(1))
    try:
        outcomes, threads = run_concurrently({n: (lambda: processed.run_once(database, envelope(), "h",
                                                                           lambda session: None))
                                              for n in range(8)})
        for thread in threads:
            thread.join(10)
        assert all(result == ("ok", True) for result in outcomes.values())
        assert len(commits) == 8
    finally:
        database.dispose()


def test_a_caller_killed_while_queued_does_not_strand_the_others(setup):
    """A queued worker that dies (nameko kills workers when a container goes down) gives up its
    place, and the lead if it had just been given it: the calls behind it still run."""
    from mailroom_shared.messaging.idempotency import _Call

    database, effects, processed, _commits = setup
    committer = processed._committer(database)
    promoted, behind = _Call(envelope("doomed"), "h", lambda s: None), _Call(envelope("after"), "h", lambda s: None)
    committer._leading = True
    committer._queue.extend([promoted, behind])
    promoted.lead = True  # its predecessor handed it the lead; it is killed before it takes it
    committer._abandon(promoted)
    assert list(committer._queue) == [behind]
    assert behind.lead and behind.done.is_set()  # the lead passed on
    committer._lead()  # what `behind`'s worker does when it wakes
    assert behind.error is None and behind.ran is True
    assert not committer._leading  # nothing left: the next call leads at once

    queued = _Call(envelope("queued"), "h", lambda s: None)
    committer._queue.append(queued)
    committer._abandon(queued)  # not promoted: simply leaves the queue
    assert list(committer._queue) == []
