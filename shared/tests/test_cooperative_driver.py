"""psycopg2 blocks every green thread of a nameko service unless made cooperative (psycogreen).
Proof, in a real eventlet process against the real PostgreSQL: while one green thread waits in
pg_sleep, another keeps running."""

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration

SCRIPT = textwrap.dedent("""
    import eventlet
    eventlet.monkey_patch()
    import sys
    from sqlalchemy import text
    from mailroom_shared.db import make_engine

    engine = make_engine(sys.argv[1])
    ticks = []

    def ticker():
        for _ in range(100):
            ticks.append(1)
            eventlet.sleep(0.01)

    def sleeper():
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_sleep(1)"))
        return len(ticks)

    eventlet.spawn(ticker)
    eventlet.sleep(0)
    print(eventlet.spawn(sleeper).wait())
""")


def test_postgres_queries_yield_to_other_green_threads(make_database):
    url = make_database("coop")
    result = subprocess.run([sys.executable, "-c", SCRIPT, url], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    ticks_during_sleep = int(result.stdout.strip().splitlines()[-1])
    # ~100 ticks fit in the 1 s sleep when the driver yields; a blocking driver allows at most 1.
    assert ticks_during_sleep >= 50
