"""The delivery workers' threads claim only when there is reason to (#16): every claim is a
transaction, and waking every thread for each queued email made an empty claim per idle thread
(the outbound bench counted about two claims per reply). A queued item wakes one thread, which
claims it and no more; a backlog found by the poll is taken by all the threads; work committed
while every thread is busy is taken as soon as one is free, not at the next poll."""

from __future__ import annotations

import eventlet
import pytest

from mailroom_shared.messaging.nameko_adapters import ConcurrentWorker


class _Container:
    def __init__(self):
        self.threads = []

    def spawn_managed_thread(self, fn, identifier=None):
        self.threads.append(eventlet.spawn(fn))


class Worker(ConcurrentWorker):
    """Claims from an in-memory queue; a claim that finds an item "sends" it for `send_seconds`."""

    identifier = "test.worker"

    def __init__(self, threads: int, poll_interval: float, send_seconds: float = 0.0):
        super().__init__()
        self.container = _Container()
        self.poll_interval = poll_interval
        self.thread_count = threads
        self.send_seconds = send_seconds
        self.queue: list[str] = []
        self.sent: list[tuple[str, int]] = []
        self.claims = 0
        self.empty_claims = 0
        self.in_flight = 0
        self.most_in_flight = 0

    def threads(self) -> int:
        return self.thread_count

    def work_once(self) -> bool:
        self.claims += 1
        if not self.queue:
            self.empty_claims += 1
            return False
        item = self.queue.pop(0)
        with self.busy():
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            eventlet.sleep(self.send_seconds)
            self.in_flight -= 1
        self.sent.append((item, id(eventlet.getcurrent())))
        return True

    def commit(self, *items: str) -> None:
        """As a handler does: the items are committed, then the worker is woken."""
        for item in items:
            self.queue.append(item)
            self.wake()


def settle(worker: Worker, until, timeout: float = 5.0) -> None:
    deadline = eventlet.hubs.get_hub().clock() + timeout
    while not until():
        assert eventlet.hubs.get_hub().clock() < deadline, (worker.sent, worker.claims)
        eventlet.sleep(0.01)
    eventlet.sleep(0.05)  # anything a wrong wake-up would still do


@pytest.fixture
def started():
    workers: list[Worker] = []

    def start(*args, **kwargs) -> Worker:
        worker = Worker(*args, **kwargs)
        worker.start()
        workers.append(worker)
        eventlet.sleep(0.05)  # the first thread's look at start (one empty claim), the rest asleep
        return worker

    yield start
    for worker in workers:
        worker.stop()
        for thread in worker.container.threads:
            thread.wait()


def test_one_queued_email_wakes_one_thread_which_claims_it_and_makes_no_empty_claim(started):
    worker = started(threads=4, poll_interval=60)
    assert (worker.claims, worker.empty_claims) == (1, 1)  # the look at start
    for n in range(3):
        worker.commit(f"reply {n}")
        settle(worker, lambda n=n: len(worker.sent) == n + 1)
    assert [item for item, _ in worker.sent] == ["reply 0", "reply 1", "reply 2"]
    assert (worker.claims, worker.empty_claims) == (4, 1)  # before: 4 threads woken, 4 empty claims per reply


def test_work_committed_while_every_thread_is_busy_is_taken_when_one_is_free_not_at_the_poll(started):
    worker = started(threads=2, poll_interval=60, send_seconds=0.1)
    worker.commit("a", "b")
    eventlet.sleep(0.02)
    assert worker.in_flight == 2
    worker.commit("c")  # nobody idle to wake
    settle(worker, lambda: len(worker.sent) == 3, timeout=5)  # the poll would be in 60 s
    assert sorted(item for item, _ in worker.sent) == ["a", "b", "c"]
    assert worker.empty_claims == 1  # the look at start only


def test_a_backlog_the_poll_finds_is_taken_by_all_the_threads(started):
    worker = started(threads=4, poll_interval=0.2, send_seconds=0.05)
    worker.queue.extend(f"left by another process {n}" for n in range(20))  # no wake-up here
    settle(worker, lambda: len(worker.sent) == 20)
    assert worker.most_in_flight == 4
    assert len({thread for _, thread in worker.sent}) == 4
    claims = worker.claims
    eventlet.sleep(0.5)  # idle: only the first thread polls, every 0.2 s
    assert worker.claims - claims <= 3


def test_stopping_wakes_every_thread_and_waits_for_the_item_in_flight(started):
    worker = started(threads=3, poll_interval=60, send_seconds=0.2)
    worker.commit("in flight")
    eventlet.sleep(0.05)
    worker.stop()
    assert [item for item, _ in worker.sent] == ["in flight"]
    for thread in worker.container.threads:
        thread.wait()  # all three ended
