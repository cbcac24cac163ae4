"""A pool of worker processes that run one CPU-bound function with a hard deadline per call.

Why: parsing hostile mail can take unbounded time inside the stdlib parser (a header with 50,000
parameters took 29 s), and a green thread that computes blocks every other green thread of the
service. A call runs in a child process instead: the service's hub only waits on a pipe, and a
call that passes its deadline has its process killed and replaced, so nothing else waits for it
longer than its own deadline. A call that crashes its process (a memory limit, a segfault in a C
extension) fails alone the same way.

Protocol on the child's stdin/stdout: frames of a 4-byte big-endian length and a pickle. The
child is our own code (`python -m ingest.worker_pool module:function`), so pickle is safe here.
Works cooperatively under eventlet (select and subprocess are green once monkey-patched) and
plainly without it (`mailroom explain`, tests).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import pickle
import queue
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 30  # a result larger than this is a bug, not a message
STARTUP_SECONDS = 60.0  # imports on a busy machine


@dataclass(frozen=True)
class Outcome:
    """What one call gave: `value` when `ok`; otherwise `error` says why (`kind` is `raised`,
    `timeout` or `crashed`; for `raised`, `error_type` names the exception class)."""

    ok: bool
    value: Any = None
    kind: str = ""
    error_type: str = ""
    error: str = ""


class WorkerFailed(Exception):
    pass


def _set_nonblocking(fd: int) -> None:
    os.set_blocking(fd, False)


class _Worker:
    """One child process, one call at a time."""

    def __init__(self, target: str, memory_limit_mb: int | None):
        self.process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
            [sys.executable, "-m", "ingest.worker_pool", target, str(memory_limit_mb or 0)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
        self.stdin = self.process.stdin.fileno()
        self.stdout = self.process.stdout.fileno()
        _set_nonblocking(self.stdin)
        _set_nonblocking(self.stdout)
        self.calls = 0
        # a call's deadline counts from when the child can work, not from its imports
        try:
            ready = self._read(_HEADER.unpack(self._read(_HEADER.size, time.monotonic() + STARTUP_SECONDS))[0],
                               time.monotonic() + STARTUP_SECONDS)
        except (TimeoutError, WorkerFailed, OSError) as exc:
            code = self.kill()
            raise WorkerFailed(f"the worker did not start ({_describe_exit(code)}): {exc!r}") from None
        if pickle.loads(ready) != ("ready",):  # noqa: S301 - our own child
            self.kill()
            raise WorkerFailed("the worker did not say it was ready")

    def call(self, payload: Any, deadline: float) -> Outcome:
        """Send one call and wait at most until `deadline` (time.monotonic()) for its answer."""
        self.calls += 1
        request = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self._write(_HEADER.pack(len(request)) + request, deadline)
            size = _HEADER.unpack(self._read(_HEADER.size, deadline))[0]
            if size > MAX_FRAME:
                raise WorkerFailed(f"worker answered a frame of {size} bytes")
            status, *rest = pickle.loads(self._read(size, deadline))  # noqa: S301 - our own child
        except TimeoutError:
            self.kill()
            return Outcome(False, kind="timeout", error="timed out")
        except (WorkerFailed, OSError, EOFError, pickle.UnpicklingError) as exc:
            code = self.kill()
            return Outcome(False, kind="crashed", error=f"worker process died ({_describe_exit(code)}): {exc}")
        if status == "ok":
            return Outcome(True, value=rest[0])
        error_type, message = rest
        return Outcome(False, kind="raised", error_type=error_type, error=message)

    def _write(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            self._wait(self.stdin, deadline, write=True)
            try:
                written = os.write(self.stdin, view)
            except BlockingIOError:
                continue
            except BrokenPipeError as exc:
                raise WorkerFailed("the worker closed its input") from exc
            view = view[written:]

    def _read(self, size: int, deadline: float) -> bytes:
        chunks, remaining = [], size
        while remaining:
            self._wait(self.stdout, deadline, write=False)
            try:
                chunk = os.read(self.stdout, min(remaining, 1 << 20))
            except BlockingIOError:
                continue
            if not chunk:
                raise WorkerFailed("the worker closed its output")
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    @staticmethod
    def _wait(fd: int, deadline: float, *, write: bool) -> None:
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            raise TimeoutError
        readable, writable, _ = select.select([] if write else [fd], [fd] if write else [], [], timeout)
        if not readable and not writable:
            raise TimeoutError

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> int | None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        return self.close(wait=5)

    def close(self, wait: float = 5) -> int | None:
        for pipe in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                pipe.close()
        try:
            return self.process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class WorkerPool:
    """`size` child processes running `target` ("package.module:function"). `run(payload)` and
    `run_many(payloads)` never raise for a failing call: they give an Outcome per payload.

    A worker is replaced after a timeout or a crash, and recycled after `max_calls` calls (bounds
    the memory a long-lived parser process can keep)."""

    def __init__(self, target: str, *, size: int = 2, timeout: float = 10.0, memory_limit_mb: int | None = None,
                 max_calls: int = 1000):
        self.target = target
        self.size = max(1, size)
        self.timeout = timeout
        self.memory_limit_mb = memory_limit_mb
        self.max_calls = max_calls
        self._idle: queue.Queue[_Worker | None] = queue.Queue()
        for _ in range(self.size):
            self._idle.put(None)  # a slot; its process is started on first use
        self._closed = False
        self.replaced = 0  # workers killed for a timeout or a crash, for metrics and tests

    def run(self, payload: Any) -> Outcome:
        worker = self._idle.get()
        try:
            if self._closed:
                raise RuntimeError("the worker pool is closed")
            if worker is None or not worker.alive() or worker.calls >= self.max_calls:
                if worker is not None:
                    worker.close()
                worker = None
                try:
                    worker = _Worker(self.target, self.memory_limit_mb)
                except WorkerFailed as exc:
                    return Outcome(False, kind="crashed", error=str(exc))
            outcome = worker.call(payload, time.monotonic() + self.timeout)
            if outcome.kind in ("timeout", "crashed"):
                self.replaced += 1
                worker = None  # already killed; the slot starts a new process on next use
            if outcome.kind == "timeout":
                outcome = Outcome(False, kind="timeout", error=f"took over {self.timeout:g}s (killed at the limit)")
            return outcome
        finally:
            self._idle.put(worker)

    def run_many(self, payloads: Iterable[Any]) -> list[Outcome]:
        """Run every payload, `size` at a time; outcomes in the payloads' order."""
        payloads = list(payloads)
        if len(payloads) <= 1 or self.size == 1:
            return [self.run(p) for p in payloads]
        outcomes: list[Outcome | None] = [None] * len(payloads)
        spawn, join = _concurrency()

        def work(index: int) -> None:
            outcomes[index] = self.run(payloads[index])

        join([spawn(work, i) for i in range(len(payloads))])
        return outcomes  # type: ignore[return-value]

    def as_completed(self, payloads: Iterable[Any], quiet_after: float = 0.2) -> Iterator[tuple[int, Outcome] | None]:
        """(index, outcome) for every payload as it finishes, `size` at a time, in any order; and
        `None` whenever nothing finished for `quiet_after` seconds (the caller may act on what it
        has instead of waiting for a slow call)."""
        payloads = list(payloads)
        results: queue.Queue[tuple[int, Outcome]] = queue.Queue()
        spawn, _ = _concurrency()
        for index, payload in enumerate(payloads):
            spawn(lambda index=index, payload=payload: results.put((index, self.run(payload))))
        remaining = len(payloads)
        while remaining:
            try:
                item = results.get(timeout=quiet_after)
            except queue.Empty:
                yield None
                continue
            remaining -= 1
            yield item

    def start(self) -> None:
        """Start every worker now instead of on first use (the imports take a moment)."""
        slots = [self._idle.get() for _ in range(self.size)]
        try:
            slots = [slot or _Worker(self.target, self.memory_limit_mb) for slot in slots]
        finally:
            for slot in slots:
                self._idle.put(slot)

    def close(self) -> None:
        self._closed = True
        for _ in range(self.size):
            worker = self._idle.get()
            if worker is not None:
                worker.close()
            self._idle.put(None)


def _concurrency() -> tuple[Callable, Callable]:
    """Green threads in an eventlet-patched process (a real thread would block the hub on its
    GIL-free waits just the same, but green ones are what the rest of the service uses)."""
    try:
        from eventlet import patcher
    except ImportError:  # pragma: no cover - eventlet is a dependency
        patcher = None
    if patcher is not None and patcher.is_monkey_patched("thread"):
        import eventlet

        return eventlet.spawn, lambda threads: [t.wait() for t in threads]

    def spawn(func, *args):
        thread = threading.Thread(target=func, args=args, daemon=True)
        thread.start()
        return thread

    return spawn, lambda threads: [t.join() for t in threads]


# --- the child ------------------------------------------------------------------------------------

def _limit_memory(megabytes: int) -> None:
    if not megabytes:
        return
    import resource

    limit = megabytes * 1024 * 1024
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _read_exactly(stream, size: int) -> bytes | None:
    """`size` bytes, or None at end of input (a pipe hands out what it has, not what was asked)."""
    chunks, remaining = [], size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _write_all(stream, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[stream.write(view):]


def serve(target: str, memory_limit_mb: int = 0) -> None:
    """The child's loop: read a call, run it, answer; exit when the parent closes stdin."""
    module_name, _, function_name = target.partition(":")
    function = getattr(importlib.import_module(module_name), function_name)
    requests = os.fdopen(os.dup(0), "rb", buffering=0)
    answers = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # whatever the function prints goes to stderr, never into a frame
    _limit_memory(memory_limit_mb)
    ready = pickle.dumps(("ready",))
    _write_all(answers, _HEADER.pack(len(ready)) + ready)
    while True:
        header = _read_exactly(requests, _HEADER.size)
        if header is None:
            return
        body = _read_exactly(requests, _HEADER.unpack(header)[0])
        if body is None:
            return
        try:
            answer = ("ok", function(pickle.loads(body)))  # noqa: S301 - from our own parent
        except MemoryError:
            answer = ("raised", "MemoryError", "the message needs more memory than a parser worker may use")
        except Exception as exc:
            answer = ("raised", type(exc).__name__, str(exc)[:2000])
        try:
            frame = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            frame = pickle.dumps(("raised", type(exc).__name__, f"unpicklable result: {exc}"[:2000]))
        _write_all(answers, _HEADER.pack(len(frame)) + frame)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when a worker stops
    serve(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)
