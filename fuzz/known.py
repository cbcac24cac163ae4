"""Bugs fuzzing found that are not fixed yet: fuzz/regressions/known_bugs.json.

Each entry names its reproducer (a file in fuzz/regressions/, replayed by tests/test_fuzzing.py as a
strict xfail), says what the bug is and how to fix it, and lists `signatures`: regular expressions over
`fuzz.target.signature_of()` that recognise the same bug when a fuzzer meets it again. The harness and
the hypothesis tests report such a finding as known instead of failing; once the bug is fixed, its
xfail passes (strict: the test fails) until the entry is removed, and from then on any new input
that hits it fails again.
"""

from __future__ import annotations

import json
import re
from functools import cache

from fuzz.corpus import REGRESSIONS_DIR

KNOWN_BUGS_FILE = REGRESSIONS_DIR / "known_bugs.json"


@cache
def known_bugs() -> dict[str, dict]:
    return json.loads(KNOWN_BUGS_FILE.read_text()) if KNOWN_BUGS_FILE.exists() else {}


@cache
def _patterns() -> list[tuple[re.Pattern, str]]:
    return [(re.compile(pattern), name) for name, bug in known_bugs().items() for pattern in bug.get("signatures", ())]


def known_bug_for(signature: str) -> str | None:
    """The reproducer's name of the known bug this finding is, or None for a new one."""
    for pattern, name in _patterns():
        if pattern.search(signature):
            return name
    return None


def is_known_bug(name: str, signature: str) -> bool:
    """Whether a finding's signature is the one recorded for the reproducer `name`."""
    return any(re.search(pattern, signature) for pattern in known_bugs().get(name, {}).get("signatures", ()))
