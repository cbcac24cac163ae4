"""The parser worker pool: answers, a hard deadline (the worker is killed and replaced), crashes and
memory limits that fail one call alone, large payloads both ways, and a green event loop that keeps
running while a call waits."""

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ingest.worker_pool import WorkerPool

TARGETS = Path(__file__).parent / "pool_targets"


@pytest.fixture
def pool(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", f"{TARGETS}:{':'.join(sys.path)}")
    made = []

    def make(**options) -> WorkerPool:
        made.append(WorkerPool("pool_target_functions:work", **{"size": 2, "timeout": 2.0, **options}))
        return made[-1]

    yield make
    for one in made:
        one.close()


def test_answers_errors_and_stdout_noise(pool):
    workers = pool()
    assert workers.run(("echo", {"a": [1, 2]})).value == {"a": [1, 2]}
    failed = workers.run(("raise", "boom"))
    assert (failed.ok, failed.kind, failed.error_type, failed.error) == (False, "raised", "ValueError", "boom")
    assert workers.run(("print", "still framed")).value == "still framed"
    assert workers.replaced == 0


def test_a_call_over_the_deadline_is_killed_and_the_worker_replaced(pool):
    workers = pool(timeout=0.5, size=1)
    workers.start()
    started = time.monotonic()
    outcome = workers.run(("sleep", 30))
    assert time.monotonic() - started < 5
    assert (outcome.ok, outcome.kind) == (False, "timeout")
    assert "took over 0.5s (killed at the limit)" in outcome.error
    assert workers.replaced == 1
    assert workers.run(("echo", "next")).value == "next"


def test_a_crash_or_a_memory_limit_fails_one_call_alone(pool):
    workers = pool(size=1, memory_limit_mb=300)
    crashed = workers.run(("die", None))
    assert crashed.kind == "crashed" and "exit code 3" in crashed.error
    too_big = workers.run(("allocate", 600_000_000))
    assert too_big.error_type == "MemoryError"
    assert workers.run(("echo", "fine")).value == "fine"


def test_large_payloads_and_results_cross_the_pipe_whole(pool):
    workers = pool()
    big = b"x" * 30_000_000
    assert workers.run(("echo", big)).value == big


def test_as_completed_yields_each_outcome_and_quiet_ticks_while_one_is_slow(pool):
    workers = pool(size=2, timeout=10)
    workers.start()
    items = list(workers.as_completed([("sleep", 1.5), ("echo", 1), ("echo", 2), ("echo", 3)], quiet_after=0.2))
    finished = [item for item in items if item is not None]
    assert sorted(index for index, _ in finished) == [0, 1, 2, 3]
    assert finished[-1][0] == 0  # the slow one last: the others did not wait for it
    assert None in items[items.index(finished[-2]):]  # quiet ticks came while it ran


def test_the_event_loop_keeps_running_while_a_call_waits():
    """Under eventlet (as in the service) a call waits on a green pipe: other green threads run."""
    script = textwrap.dedent(f"""
        import eventlet; eventlet.monkey_patch()
        import sys, time
        sys.path.insert(0, {str(TARGETS)!r})
        from ingest.worker_pool import WorkerPool
        pool = WorkerPool("pool_target_functions:work", size=1, timeout=5)
        pool.start()
        ticks = []
        def tick():
            for _ in range(20):
                ticks.append(time.monotonic()); eventlet.sleep(0.05)
        ticker = eventlet.spawn(tick)
        assert pool.run(("sleep", 1.0)).value == "slept"
        ticker.wait()
        print(max(b - a for a, b in zip(ticks, ticks[1:])))
        pool.close()
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            env={"PYTHONPATH": f"{TARGETS}:{':'.join(sys.path)}", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert float(result.stdout.strip().splitlines()[-1]) < 0.5  # never blocked for the 1 s call


def test_a_parser_worker_starts_without_the_database_layer_or_dkimpy():
    """A worker is started for every ingest process and again after every kill (deadline, memory),
    so it imports only what analysing a message needs: SQLAlchemy (the service's side of the full
    message page) and dkimpy/dnspython (only with INGEST_VERIFY_DKIM) wait until they are used."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, ingest.analyser; "
         "print(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'dkim', 'dns'}))"],
        capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    assert loaded == "[]"
