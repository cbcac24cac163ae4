"""Fuzzing ingest's parsing path: hostile mail must never crash or hang the pipeline.

What is fuzzed (fuzz/target.py): `ingest.domain.analysis.analyse()` — parse → classify → forward
detection → attribution — then `render_html()` (nh3 sanitising, full and truncated preview) and
`Analysis.explain()`. The properties every input must keep:

- no exception except `ingest.domain.parsing.MessageTooComplex` (the documented refusal, which the
  service turns into a quarantine with its reason);
- done well before the service's 10 s parse deadline (past it = a hang);
- `message_id` is never empty; each address is None or has exactly one `@`;
- the sanitised HTML has no `<script`, no `on*=` handler and no javascript:/vbscript:/data: URL.

Pieces:
- `fuzz/corpus.py`: finds the seed corpora relative to the repository root (CPython's email fuzzing
  seeds at `../shared/corpora/email-seeds/`, the project's `services/ingest/tests/**/*.eml`, and
  `fuzz/regressions/`) and holds the structure-aware mutations (byte flips, header duplication,
  giant parameter lists, deep nesting, odd charsets, truncation, hostile HTML, splicing).
- `fuzz/target.py`: the path under test, the property checks, the SIGALRM `deadline()` watchdog and
  `signature_of()` (what identifies a finding: the property, or the exception and where it happened).
- `fuzz/fuzz_parse.py`: the harness. atheris (coverage-guided, libFuzzer, with fuzz/corpus.py's
  mutations mixed in as a custom mutator) when installed, else a seeded mutational loop; a SIGALRM
  deadline per input (10 s, the service's) plus a faulthandler backstop for a native call that never
  returns; findings saved under `var/fuzz/` (crashes/, hangs/, known/, slowest.eml, summary.json).
- `fuzz/regressions/`: one file per bug fuzzing found (the minimal reproducer), replayed by
  `tests/test_fuzzing.py`. `known_bugs.json` lists those not fixed yet: what the bug is, where, how
  long it takes, the fix, and the signatures that recognise it (`fuzz/known.py`). Their replays are
  strict xfails; the harness files such findings under known/ instead of failing (`--strict` does
  not). When a fix lands, its xfail passes (and fails, strict) until the entry is removed.
- `tests/test_fuzzing.py`: hypothesis properties (derandomized, no example database: the same
  examples on every run), the seed corpora replayed, the regressions, and a 20 s run of the harness
  in a subprocess (0 crashes, 0 hangs). Under 60 s in all.

Commands:

    make fuzz                                   # FUZZ_SECONDS=600 by default; FUZZ_DEADLINE, FUZZ_ENGINE
    .venv/bin/python fuzz/fuzz_parse.py --seconds 60
    .venv/bin/python fuzz/fuzz_parse.py --replay fuzz/regressions/*.eml
    .venv/bin/python fuzz/fuzz_parse.py --replay --no-deadline var/fuzz/hangs/*.eml   # true time
    .venv/bin/python fuzz/fuzz_parse.py --minimise var/fuzz/crashes/X.eml              # -> X.eml.min
    .venv/bin/python -m pytest tests/test_fuzzing.py
    FUZZ_HYPOTHESIS_SCALE=20 .venv/bin/python -m pytest tests/test_fuzzing.py -k hypothesis  # 20x examples

When a run finds something: minimise it, copy it to `fuzz/regressions/<what>.eml`, and fix the bug
(or, until it is fixed, add the file to `fuzz/regressions/known_bugs.json` with the reason).
"""
