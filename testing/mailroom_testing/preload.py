"""Service processes for the tests, forked from a process that has imported the services once.

Starting a service process is mostly importing: about 1.1 s of the 1.5 s of CPU a service takes to
start here goes to eventlet, nameko, SQLAlchemy, marshmallow, flanker and the service's own modules,
and the suite starts several hundred stacks of three to five services. A test stack made with
`Stack(preloaded=True)` (the pytest plugin's stacks) asks this preloader instead: one process per
pytest worker that ran `mailroom_shared.service_process`'s imports (eventlet's monkey patching
first, as in production) and the five services' modules, then forks a service process per request.
The forked process runs exactly `mailroom-service --config FILE MODULE` (service_process.main) in
its own session, environment, working directory and log file, as Stack's subprocesses do; what it
skips is the imports. Production, `make run`, the benchmarks and the chaos run start services as
fresh processes, never from here.

The forked process is made the pytest worker's own child (the worker is a child subreaper: the
preloader forks twice and the middle process exits, so the service is re-parented to the worker),
so the tests wait for it, signal its process group and read its exit code as for a subprocess, and
the kernel kills it if the worker dies (PR_SET_PDEATHSIG, set once it is the worker's child).

What a fork must not share is renewed in the child: eventlet's hub (its epoll descriptor was
created by the monkey patching, in the preloader) is closed and a new one made; `random` is reseeded
by CPython's own fork hook. Nothing at import opens a connection, starts a thread or reads the
environment (settings are read when a service starts), which is what makes this safe; the preloader
checks that it has no other thread before every fork.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import signal
import subprocess
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # linux/prctl.h
PR_SET_CHILD_SUBREAPER = 36
SERVICE_MODULES = ("ingest.service", "contacts.service", "conversations.service", "outbound.service",
                   "notifier.service")
_prctl = None
if sys.platform.startswith("linux"):
    _prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl


def die_with_parent(parent_pid: int):
    """A preexec_fn: the kernel SIGKILLs the child when the thread that started it ends, so a
    pytest (or a run) killed by a timeout, SIGKILL or Ctrl-C leaves no service process behind
    (each runs in a session of its own, out of reach of the terminal's signals)."""
    def preexec() -> None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl: nobody would kill us
            os._exit(1)
    return preexec


def child_guard():
    """die_with_parent for a process this thread starts, or None where it cannot apply.
    PR_SET_PDEATHSIG fires when the starting *thread* ends, not the process: only processes
    started by the main thread get it (chaos/run.py restarts killed ones from a fault thread; its
    watchdog cleans those up)."""
    if _prctl is None or threading.current_thread() is not threading.main_thread():
        return None
    return die_with_parent(os.getpid())


class ForkedProcess:
    """What Stack needs of a subprocess.Popen, for a service process the preloader forked (a child
    of this process once re-parented: os.waitpid works on it)."""

    def __init__(self, pid: int, args: list[str]):
        self.pid = pid
        self.args = args
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Preloader:
    """The pytest worker's side: starts the preloading process and asks it for service processes."""

    def __init__(self):
        if _prctl is None:
            raise RuntimeError("the preloader needs Linux (PR_SET_CHILD_SUBREAPER)")
        if _prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
        self._lock = threading.Lock()
        # unbuffered as Stack's processes are (PYTHONUNBUFFERED): the forked ones inherit its sys.stdout
        self._process = subprocess.Popen([sys.executable, "-m", "mailroom_testing.preload", str(os.getpid())],
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True,
                                         preexec_fn=child_guard())
        ready = self._process.stdout.readline()
        if ready != b"ready\n":
            self._process.kill()
            raise RuntimeError(f"the service preloader did not start (it said {ready!r})")

    def spawn(self, args: list[str], env: dict[str, str], cwd: str, log_path: str) -> ForkedProcess:
        """`mailroom-service ARGS` in a new session with that environment, working directory and
        log file (stdout and stderr appended to it)."""
        request = json.dumps({"args": args, "env": env, "cwd": str(cwd), "log": str(log_path)}) + "\n"
        with self._lock:
            if self._process.poll() is not None:
                raise RuntimeError(f"the service preloader ended (exit {self._process.returncode})")
            self._process.stdin.write(request.encode())
            self._process.stdin.flush()
            answer = json.loads(self._process.stdout.readline() or b'{"error": "the preloader ended"}')
        if "error" in answer:
            raise RuntimeError(f"the service preloader could not start {args}: {answer['error']}")
        return ForkedProcess(answer["pid"], ["mailroom-service", *args])


_preloader: Preloader | None = None
_preloader_lock = threading.Lock()


def preloader() -> Preloader:
    """This process's preloader, started on first use."""
    global _preloader
    with _preloader_lock:
        if _preloader is None:
            _preloader = Preloader()
        return _preloader


# --- the preloading process --------------------------------------------------------------------


def _serve(parent: int) -> None:  # pragma: no cover - runs in the preloading process
    import warnings

    import eventlet

    eventlet.monkey_patch()  # as service_process does, before anything imports socket or threading
    import posix  # the unpatched calls: this process never runs eventlet's hub
    from importlib import import_module

    # eventlet warns at every fork; this process forks on purpose, before any green thread runs
    warnings.filterwarnings("ignore", message="Using fork", category=DeprecationWarning)
    service_process = import_module("mailroom_shared.service_process")
    for module in SERVICE_MODULES:
        import_module(module)
    requests = sys.stdin.buffer
    posix.write(1, b"ready\n")
    while line := requests.readline():
        request = json.loads(line)
        try:
            if threading.active_count() != 1:
                raise RuntimeError(f"the preloader has {threading.active_count()} threads: a fork would lose them")
            pid = _fork_service(posix, parent, service_process, request)
            answer = {"pid": pid}
        except Exception as exc:  # answered, not fatal: the next request may succeed
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        posix.write(1, json.dumps(answer).encode() + b"\n")


def _fork_service(posix, parent: int, service_process, request: dict) -> int:  # pragma: no cover
    read_end, write_end = posix.pipe()
    middle = posix.fork()
    if middle == 0:  # the middle process: forks the service, says its pid, exits
        try:
            posix.close(read_end)
            pid = posix.fork()
            if pid == 0:
                posix.close(write_end)
                _run_service(posix, parent, service_process, request)
            posix.write(write_end, str(pid).encode())
        finally:
            posix._exit(0)
    posix.close(write_end)
    chunks = []
    while chunk := posix.read(read_end, 64):
        chunks.append(chunk)
    posix.close(read_end)
    posix.waitpid(middle, 0)  # once it is reaped, the service has been re-parented to `parent`
    if not chunks:
        raise RuntimeError("the middle process did not fork the service")
    return int(b"".join(chunks))


def _run_service(posix, parent: int, service_process, request: dict) -> None:  # pragma: no cover
    code = 1
    try:
        posix.setsid()
        log = posix.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        devnull = posix.open(os.devnull, os.O_RDONLY)
        posix.dup2(devnull, 0)
        posix.dup2(log, 1)
        posix.dup2(log, 2)
        posix.close(log)
        posix.close(devnull)
        # wait to be the pytest worker's child (the middle process exits at once), then die with it
        deadline = time.monotonic() + 10
        while posix.getppid() != parent and time.monotonic() < deadline:
            posix.sched_yield()
        die_with_parent(parent)()
        import eventlet.hubs

        eventlet.hubs.get_hub().poll.close()  # the preloader's epoll: a new hub for this process
        eventlet.hubs.use_hub()
        os.environ.clear()
        os.environ.update(request["env"])
        posix.chdir(request["cwd"])
        sys.argv = ["mailroom-service", *request["args"]]
        code = service_process.main(request["args"])  # exits by itself once stopped
    except SystemExit as exc:  # argparse's errors
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        posix._exit(code if isinstance(code, int) else 1)


if __name__ == "__main__":  # pragma: no cover
    _serve(int(sys.argv[1]))
