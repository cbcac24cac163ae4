"""Fuzz ingest's parse → analyse → forward detection → render_html path (see fuzz/target.py).

    python fuzz/fuzz_parse.py --seconds 600            # what `make fuzz` runs (FUZZ_SECONDS)
    python fuzz/fuzz_parse.py --engine mutate ...      # the fallback loop, without atheris
    python fuzz/fuzz_parse.py --replay FILE...         # run saved inputs once, print time and verdict
    python fuzz/fuzz_parse.py --replay --no-deadline FILE   # the true time of a hang
    python fuzz/fuzz_parse.py --minimise FILE          # shrink a crash (or, with --slower-than, a hang)

Engines: `atheris` (coverage-guided libFuzzer, with a structure-aware custom mutator mixing in
fuzz/corpus.py's mutations) when it is installed, else `mutate` (a seeded mutational loop that keeps an
input when it shows a new outcome feature: a new defect kind, content type, forward signal, ...).

Both start from the CPython email seeds (../shared/corpora/email-seeds/), the project's .eml fixtures
and fuzz/regressions/, copied into `<out>/corpus/` (the working corpus; it grows across runs).

Each input runs under a SIGALRM deadline (`--deadline`, default the service's 10 s). Findings go to
`<out>` (default var/fuzz/):
- `crashes/<signature>.eml` + `.txt`: an exception other than MessageTooComplex, or a broken property;
  one file per distinct signature, the smallest input seen;
- `hangs/<signature>.eml` + `.txt`: an input still running at the deadline (signature: where it was);
- `known/<signature>.eml` + `.txt`: a bug already listed in fuzz/regressions/known_bugs.json (recognised
  by its signature; not counted as a crash or hang unless `--strict`);
- `slowest.eml`: the slowest input that finished; `summary.json`: execs, crashes, hangs, slowest.
The run stops after `--seconds` and exits 1 if it found any new crash or hang.

atheris may print a "Current thread ... (most recent call first)" stack while one slow native call
(e.g. the stdlib's `sum()` of defect lists) delays its 1 s alarm tick: a warning, not a finding.
"""

from __future__ import annotations

import argparse
import faulthandler
import hashlib
import json
import logging
import os
import random
import re
import sys
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz import corpus  # noqa: E402 - stdlib only: safe before instrumentation
from fuzz.known import known_bug_for  # noqa: E402 - stdlib only

try:
    import atheris
except ImportError:  # the fallback loop runs instead
    atheris = None

DEFAULT_OUT = corpus.REPO_ROOT / "var" / "fuzz"
# ingest's ParseLimits.max_seconds; not imported from there because atheris must instrument ingest
# before anything imports it (tests/test_fuzzing.py checks the two agree)
SERVICE_DEADLINE_SECONDS = 10.0
INSTRUMENTED = ("ingest", "email", "mailroom_shared", "fuzz.target")  # not flanker: ply reads its docstrings


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:120] or "unknown"


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()  # noqa: S324 - a file name, not security


class Run:
    """Book-keeping shared by both engines: verdicts, artefacts, the summary."""

    def __init__(self, target, out: Path, seconds: float, deadline: float, engine: str, seeds: dict,
                 use_known: bool = True, backstop: float | None = None) -> None:
        self.target = target
        self.out = out
        self.seconds = seconds
        self.deadline = deadline
        self.engine = engine
        self.seeds = seeds
        self.started = time.monotonic()
        self.execs = 0
        self.refused = 0
        self.crashes = 0
        self.hangs = 0
        self.crash_sigs: dict[str, dict] = {}
        self.hang_sigs: dict[str, dict] = {}
        self.known_sigs: dict[str, dict] = {}
        self.known: dict[str, int] = {}  # reproducer name in known_bugs.json -> times met
        self.known_bug_for = known_bug_for if use_known else (lambda signature: None)
        self.slowest = (0.0, b"", 0.0)  # wall seconds, input, CPU seconds
        self.last_report = self.started
        out.mkdir(parents=True, exist_ok=True)
        # The SIGALRM deadline cannot stop a native call that never returns to Python: faulthandler's
        # watchdog thread (no GIL needed) ends the process at `backstop` seconds instead, and the
        # input, written before each run, is picked up as a hang by the next run.
        self.backstop = backstop
        self.current_input = out / "current-input.eml"
        self.native_log_path = out / "native-hang.txt"
        self._adopt_native_hang()
        self.native_log = self.native_log_path.open("w") if backstop else None

    def _adopt_native_hang(self) -> None:
        log = self.native_log_path.read_text() if self.native_log_path.exists() else ""
        if self.current_input.exists() and log.strip():
            self.hangs += 1
            data = self.current_input.read_bytes()
            self._record(self.hang_sigs, "hangs", f"native-{_sha1(data)[:12]}", data,
                         f"a previous run was ended by its backstop on this input:\n{log}")
        self.current_input.unlink(missing_ok=True)
        self.native_log_path.unlink(missing_ok=True)

    def expired(self) -> bool:
        return time.monotonic() - self.started >= self.seconds

    def one(self, data: bytes):
        """Run one input; returns the Outcome, or None when it crashed or hung."""
        self.execs += 1
        started = time.perf_counter()
        outcome = None
        if self.backstop:
            self.current_input.write_bytes(data)
            faulthandler.dump_traceback_later(self.backstop, exit=True, file=self.native_log)
        try:
            outcome = self.target.run_one(data, deadline_seconds=self.deadline)
        except (self.target.Hang, Exception) as exc:  # all but MessageTooComplex (handled in run_one)
            elapsed = time.perf_counter() - started
            raw_signature = self.target.signature_of(exc)
            signature = _slug(raw_signature)
            detail = (f"{'hang: still running after' if isinstance(exc, self.target.Hang) else 'failed after'} "
                      f"{elapsed:.2f}s\n\n{traceback.format_exc()}")
            known = self.known_bug_for(raw_signature)
            if known is not None:
                self.known[known] = self.known.get(known, 0) + 1
                self._record(self.known_sigs, "known", signature, data, f"known bug: {known}\n{detail}")
            elif isinstance(exc, self.target.Hang):
                self.hangs += 1
                self._record(self.hang_sigs, "hangs", signature, data, detail)
            else:
                self.crashes += 1
                self._record(self.crash_sigs, "crashes", signature, data, detail)
        finally:
            if self.backstop:
                faulthandler.cancel_dump_traceback_later()
        if outcome is not None:
            if outcome.refused:
                self.refused += 1
            if outcome.seconds > self.slowest[0]:
                self.slowest = (outcome.seconds, data, outcome.cpu_seconds)
        if time.monotonic() - self.last_report > 10:
            self.last_report = time.monotonic()
            self.write_summary()
            print(f"[fuzz] {self.status()}", file=sys.stderr, flush=True)
        return outcome

    def _record(self, seen: dict, folder: str, signature: str, data: bytes, detail: str) -> None:
        known = seen.get(signature)
        if known is not None and known["size"] <= len(data):
            known["count"] += 1
            return
        (self.out / folder).mkdir(parents=True, exist_ok=True)
        path = self.out / folder / f"{signature}.eml"
        path.write_bytes(data)
        path.with_suffix(".txt").write_text(f"signature: {signature}\nsize: {len(data)}\n\n{detail}")
        seen[signature] = {"file": str(path), "size": len(data), "count": (known or {}).get("count", 0) + 1}
        if known is None:
            label = {"crashes": "CRASH", "hangs": "HANG", "known": "known bug"}[folder]
            print(f"[fuzz] {label}: {signature} ({len(data)} bytes) -> {path}", file=sys.stderr, flush=True)

    def status(self) -> str:
        elapsed = time.monotonic() - self.started
        return (f"{self.engine}: {self.execs} execs in {elapsed:.0f}s ({self.execs / max(elapsed, 1e-9):.0f}/s), "
                f"crashes {self.crashes} ({len(self.crash_sigs)} distinct), hangs {self.hangs} "
                f"({len(self.hang_sigs)} distinct), known bugs met {sum(self.known.values())}, "
                f"refused {self.refused}, slowest {self.slowest[0]:.3f}s")

    def summary(self) -> dict:
        elapsed = time.monotonic() - self.started
        slowest_file = self.out / "slowest.eml"
        if self.slowest[1]:
            slowest_file.write_bytes(self.slowest[1])
        return {
            "engine": self.engine, "seconds": round(elapsed, 1), "deadline_seconds": self.deadline,
            "execs": self.execs, "execs_per_second": round(self.execs / max(elapsed, 1e-9), 1),
            "crashes": self.crashes, "hangs": self.hangs, "refused_message_too_complex": self.refused,
            "distinct_crashes": self.crash_sigs, "distinct_hangs": self.hang_sigs,
            "known_bugs_met": self.known, "known_signatures": self.known_sigs,
            "slowest": {"seconds": round(self.slowest[0], 4), "cpu_seconds": round(self.slowest[2], 4),
                        "size": len(self.slowest[1]),
                        "file": str(slowest_file) if self.slowest[1] else None},
            "seeds": self.seeds,
        }

    def write_summary(self) -> dict:
        summary = self.summary()
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary

    def finish(self) -> int:
        self.current_input.unlink(missing_ok=True)
        if self.native_log is not None:
            self.native_log.close()
            self.native_log_path.unlink(missing_ok=True)
        summary = self.write_summary()
        print(f"[fuzz] done: {self.status()}", file=sys.stderr)
        print(json.dumps(summary, indent=2), flush=True)
        return 1 if self.crashes or self.hangs else 0


# --------------------------------------------------------------------------------------------
# engines


def _seed_inputs(out: Path) -> tuple[Path, dict, list[bytes]]:
    seeds, fixtures, regressions = corpus.seed_files(), corpus.fixture_files(), corpus.regression_files()
    working = out / "corpus"
    corpus.materialise(working, seeds + fixtures + regressions)
    counts = {"cpython_email_seeds": len(seeds), "project_fixtures": len(fixtures), "regressions": len(regressions),
              "cpython_seeds_dir": str(corpus.seeds_dir()), "cpython_seeds_missing": corpus.seeds_missing_reason()}
    if counts["cpython_seeds_missing"]:
        print(f"[fuzz] warning: {counts['cpython_seeds_missing']}", file=sys.stderr)
    return working, counts, corpus.read_all(seeds + fixtures + regressions)


def _quiet_logs() -> None:
    # flanker logs a warning for every unlexable address: millions of lines in a fuzzing run
    logging.disable(logging.WARNING)


def run_atheris(args, out: Path) -> int:
    working, counts, seed_data = _seed_inputs(out)
    _quiet_logs()
    # atheris' "RegEx" hook breaks ply's lexer (flanker's address parser); "str" comparisons are fine
    atheris.enabled_hooks.add("str")
    with atheris.instrument_imports(include=list(INSTRUMENTED)):
        from fuzz import target
    run = Run(target, out, args.seconds, args.deadline, "atheris", counts, use_known=not args.strict,
              backstop=args.deadline * 2 + 5)
    structured = args.structured

    def test_one_input(data: bytes) -> None:
        if run.expired():
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(run.finish())  # libFuzzer's own exit skips Python's: end here, summary written
        run.one(data)

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if rng.random() < structured:
            return corpus.mutate(data, rng, max_size=max_size, others=seed_data, max_params=args.max_params)
        return atheris.Mutate(data, max_size)

    # Our SIGALRM deadline replaces atheris' alarm while an input runs and hands it back after; atheris'
    # own -timeout then covers the rest (the mutator), a native hang inside an input is Run's backstop.
    libfuzzer_args = [sys.argv[0], str(working), f"-max_len={args.max_len}", f"-timeout={int(args.deadline * 3) + 10}",
                      f"-seed={args.seed}", f"-max_total_time={int(args.seconds) + 300}", "-len_control=0",
                      f"-artifact_prefix={out}/libfuzzer-", f"-rss_limit_mb={args.rss_limit_mb}",
                      "-print_final_stats=1"]
    print(f"[fuzz] atheris {' '.join(libfuzzer_args[1:])}", file=sys.stderr, flush=True)
    atheris.Setup(libfuzzer_args, test_one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()
    return run.finish()  # not reached: libFuzzer exits


def _features(outcome) -> set[str]:
    """What made an input interesting for the fallback loop (a cheap stand-in for coverage)."""
    if outcome is None:
        return set()
    if outcome.refused:
        return {"refused:" + re.sub(r"\d+", "N", outcome.refused)}
    analysis = outcome.analysis
    parsed = analysis.parsed
    features = {"defect:" + re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "_", defect)[:60] for defect in parsed.defects}
    features |= {"type:" + attachment.content_type for attachment in parsed.attachments}
    features |= {"reason:" + reason.split(":")[0] for reason in analysis.classification.reasons}
    if analysis.forward is not None:
        features.add("forward:" + analysis.forward.detected_by)
    features.add(f"shape:{bool(parsed.text)}{bool(parsed.html)}{len(parsed.attachments) > 0}"
                 f"{parsed.sender is not None}{len(parsed.embedded_messages) > 0}")
    return features


def run_mutate(args, out: Path) -> int:
    working, counts, seed_data = _seed_inputs(out)
    _quiet_logs()
    from fuzz import target

    rng = random.Random(args.seed)
    # inputs longer than --max-len are cut, as libFuzzer does with its corpus
    pool = [path.read_bytes()[: args.max_len] for path in sorted(working.iterdir()) if path.is_file()] or [b""]
    seen: set[str] = set()
    run = Run(target, out, args.seconds, args.deadline, "mutate", counts, use_known=not args.strict,
              backstop=args.deadline * 2 + 5)
    for data in pool:  # the corpus first, as libFuzzer does
        if run.expired():
            break
        seen |= _features(run.one(data))
    while not run.expired():
        parent = rng.choice(pool[-200:]) if rng.random() < 0.3 else rng.choice(pool)
        child = corpus.mutate(parent, rng, max_size=args.max_len, others=seed_data, max_params=args.max_params)
        new = _features(run.one(child)) - seen
        if new:
            seen |= new
            if len(pool) < 20_000:
                pool.append(child)
                (working / f"mut-{_sha1(child)}").write_bytes(child)
    return run.finish()


# --------------------------------------------------------------------------------------------
# replay and minimise


def replay(paths: list[Path], deadline: float | None) -> int:
    _quiet_logs()
    from fuzz import target

    failed = 0
    for path in paths:
        data = path.read_bytes()
        started = time.perf_counter()
        try:
            outcome = target.run_one(data, deadline_seconds=deadline)
            verdict = f"refused: {outcome.refused}" if outcome.refused else "ok"
        except target.Hang as exc:
            failed += 1
            verdict = f"HANG ({exc})"
        except Exception as exc:
            failed += 1
            verdict = f"CRASH {type(exc).__name__}: {str(exc)[:300]}"
        print(f"{time.perf_counter() - started:8.3f}s  {len(data):8d} bytes  {path}: {verdict}", flush=True)
    return 1 if failed else 0


def _failure(target, data: bytes, slower_than: float | None) -> str | None:
    """The finding's signature (fuzz.target.signature_of), or None when the input passes."""
    try:
        target.run_one(data, deadline_seconds=slower_than)
    except target.Hang as exc:
        return target.signature_of(exc) if slower_than is not None else None
    except Exception as exc:
        return None if slower_than is not None else target.signature_of(exc)
    return None


def minimise(path: Path, slower_than: float | None, seconds: float) -> int:
    """Greedy chunk removal keeping the same failure signature; writes `<path>.min`."""
    _quiet_logs()
    from fuzz import target

    data = path.read_bytes()
    wanted = _failure(target, data, slower_than)
    if wanted is None:
        print(f"{path}: does not fail, nothing to minimise", file=sys.stderr)
        return 1
    stop = time.monotonic() + seconds
    chunk = max(1, len(data) // 2)
    while chunk >= 1 and time.monotonic() < stop:
        position, shrunk = 0, False
        while position < len(data) and time.monotonic() < stop:
            candidate = data[:position] + data[position + chunk:]
            if candidate != data and _failure(target, candidate, slower_than) == wanted:
                data, shrunk = candidate, True
            else:
                position += chunk
        if not shrunk:
            chunk //= 2
    result = path.with_name(path.name + ".min")
    result.write_bytes(data)
    print(f"{wanted}: {path.stat().st_size} -> {len(data)} bytes: {result}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("FUZZ_SECONDS", 600)))
    parser.add_argument("--deadline", type=float, default=float(os.environ.get("FUZZ_DEADLINE", 0) or 0) or None,
                        help="per-input hang deadline in seconds (default: the service's parse deadline, 10)")
    parser.add_argument("--engine", choices=("auto", "atheris", "mutate"),
                        default=os.environ.get("FUZZ_ENGINE", "auto"))
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("FUZZ_OUT", DEFAULT_OUT)))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("FUZZ_SEED", 1)))
    parser.add_argument("--max-len", type=int, default=65_536)
    parser.add_argument("--max-params", type=int, default=20_000,
                        help="cap of the giant-parameter mutation (above ~35,000 the known stdlib hang repeats)")
    parser.add_argument("--structured", type=float, default=0.3,
                        help="share of mutations done by fuzz/corpus.py's structure-aware mutators (atheris)")
    parser.add_argument("--rss-limit-mb", type=int, default=3072)
    parser.add_argument("--strict", action="store_true",
                        help="count the bugs listed in fuzz/regressions/known_bugs.json as crashes and hangs too")
    parser.add_argument("--replay", action="store_true", help="run the given files once and report")
    parser.add_argument("--minimise", action="store_true", help="shrink the given failing file")
    parser.add_argument("--slower-than", type=float, default=None, help="with --minimise: keep inputs this slow")
    parser.add_argument("--no-deadline", action="store_true", help="with --replay: measure the true time")
    parser.add_argument("files", nargs="*", type=Path)
    args = parser.parse_args(argv)
    if args.deadline is None:
        args.deadline = SERVICE_DEADLINE_SECONDS

    if args.replay:
        return replay(args.files, None if args.no_deadline else args.deadline)
    if args.minimise:
        return sum(minimise(path, args.slower_than, args.seconds) for path in args.files)
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if atheris is not None else "mutate"
    if engine == "atheris" and atheris is None:
        parser.error("atheris is not installed (pip install atheris), use --engine mutate")
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"[fuzz] engine {engine}, {args.seconds:g}s, deadline {args.deadline:g}s per input, out {args.out}",
          file=sys.stderr, flush=True)
    return run_atheris(args, args.out) if engine == "atheris" else run_mutate(args, args.out)


if __name__ == "__main__":
    sys.exit(main())
