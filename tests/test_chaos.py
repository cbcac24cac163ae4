"""The chaos suite at a small N (`make chaos` runs it at 2,000): every service in its own process on
a private PostgreSQL cluster and a private RabbitMQ node (chaos/infra.py; the shared servers are
never restarted), 150 emails from concurrent SMTP clients while each service process is SIGKILLed
once and restarted, the broker and the database are restarted once each and the broker closes every
client connection once; then 40 replies while
outbound is killed and its SMTP relay restarted. Nothing may be lost or doubled."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.runs_long]

REPO = Path(__file__).resolve().parents[1]


def _missing_servers() -> str | None:
    if not Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists():
        return "rabbitmq-server is not installed (the chaos run starts a private node)"
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        return "PostgreSQL's initdb is not installed (the chaos run starts a private cluster)"
    if os.geteuid() == 0 and not shutil.which("runuser"):
        return "runuser is missing (PostgreSQL must run as the postgres user)"
    return None


def run_chaos(out: Path, timeout: float) -> tuple[int, str]:
    """chaos/run.py at a small N; on timeout it gets SIGTERM and time to stop its servers."""
    process = subprocess.Popen(
        [sys.executable, str(REPO / "chaos" / "run.py"), "--emails", "150", "--clients", "6", "--seed", "3",
         "--send-seconds", "60", "--replies", "40", "--quiesce-timeout", "150", "--json", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=120)
    return process.returncode, output


@pytest.mark.timeout(600)
@pytest.mark.skipif(_missing_servers() is not None, reason=_missing_servers() or "")
def test_nothing_is_lost_or_doubled_while_processes_broker_and_database_restart(tmp_path):
    out = tmp_path / "chaos.json"
    code, output = run_chaos(out, timeout=420)
    context = f"exit {code}\n{output[-8000:]}"
    assert out.exists(), f"no result: {context}"
    result = json.loads(out.read_text())
    assert "error" not in result, context
    # every fault happened, during the send, and its target came back
    kinds = sorted((f["kind"], f["target"]) for f in result["faults"])
    killed = {target for kind, target in kinds if kind == "kill"}
    assert killed >= {"ingest", "smtp", "contacts", "conversations", "outbound"}, context
    assert [k for k in kinds if k[0] != "kill"] == [
        ("postgres_restart", "postgres"), ("rabbitmq_close_connections", "rabbitmq"),
        ("rabbitmq_restart", "rabbitmq")], context
    assert all(f["error"] is None and f["back_at_s"] is not None for f in result["faults"]), context
    assert result["quiescent"], context
    assert result["sent"] == 150 and result["accepted"] == 150, context
    assert result["stored"] == result["accepted"], context
    assert result["lost"] == 0, context
    assert result["duplicated"] == 0, context
    assert result["details"]["timeline_missing"] == 0, context
    assert result["details"]["resent_stored_once"] == result["resent_duplicates"], context
    outbound = result["outbound"]
    assert outbound["accepted"] > 0 and outbound["not_delivered"] == 0, context
    assert outbound["duplicated"] == 0, context
    assert outbound["relay_duplicates"] <= outbound["relay_duplicates_allowed"], context
    assert outbound["relay_duplicates_outside_fault_windows"] == 0, context
    assert code == 0, context
