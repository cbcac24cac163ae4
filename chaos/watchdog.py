"""`python chaos/watchdog.py --parent PID --root DIR [--keep]`: cleans up after a chaos run that
could not clean up after itself (SIGKILLed, its machine's job cancelled).

Started by chaos/run.py in a session of its own, it waits for the run's process to exit. If the
run left anything behind, it stops it: the private PostgreSQL (`pg_ctl stop -m immediate` on
DIR/pg/data), then every process whose working directory is inside DIR (the private RabbitMQ
node, the service processes, the SMTP listener and relay: the run starts all of them there), and
removes DIR unless --keep. A run that cleaned up normally leaves nothing to do.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def processes_in(root: Path) -> list[int]:
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd == root or root in cwd.parents:
            found.append(int(entry.name))
    return found


def clean(root: Path, keep: bool) -> None:
    data = root / "pg" / "data"
    if (data / "postmaster.pid").exists():
        pg_ctl = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if pg_ctl:
            argv = [str(pg_ctl[-1]), "-D", str(data), "-m", "immediate", "-w", "-t", "20", "stop"]
            if os.geteuid() == 0:
                argv = ["runuser", "-u", "postgres", "--", *argv]
            subprocess.run(argv, capture_output=True, timeout=40, cwd="/")
    for _ in range(3):
        pids = processes_in(root)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
    if not keep:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is for the run, not for us
    while alive(args.parent):
        time.sleep(1)
    if args.root.exists():
        clean(args.root.resolve(), args.keep)


if __name__ == "__main__":
    main()
