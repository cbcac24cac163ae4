"""Measure forward detection on the held-out set through the real `mailroom explain --json --trusted`.

    .venv/bin/python services/ingest/tests/forward_heldout/measure.py [--inprocess] [--json OUT]

Prints precision / recall of forward detection, accuracy of the original sender's address (and of the
display name where the expectation names one), and every failure grouped by category.
`--inprocess` runs the same `analyse()` path without a subprocess per file (faster, same code).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).parent
MAILROOM = shutil.which("mailroom") or str(Path(sys.executable).parent / "mailroom")
OFFLINE = {"AMQP_URI": "amqp://nobody:nothing@127.0.0.1:1/", "INGEST_DATABASE_URL": "postgresql://x@127.0.0.1:1/x",
           "PATH": "/usr/bin:/bin"}


def norm_name(name: str | None) -> str | None:
    if name is None:
        return None
    return " ".join(name.strip().strip("\"'«»„“”").split()).casefold()


def run_cli(path: Path) -> dict:
    result = subprocess.run([MAILROOM, "explain", "--json", "--trusted", "--authenticated", str(path)],
                            capture_output=True,
                            env={**os.environ, **OFFLINE}, timeout=60)
    if result.returncode != 0:
        return {"error": result.stderr.decode(errors="replace")[-300:]}
    return json.loads(result.stdout)


def run_inprocess(path: Path) -> dict:
    from ingest.domain.analysis import AnalysisSettings, analyse

    return analyse(path.read_bytes(), AnalysisSettings(), trust_sender=True, authenticated=True).explain()


def judge(exp: dict, doc: dict) -> tuple[bool | None, bool | None, bool | None, str]:
    """(detection ok, email ok, name ok, description); None = not applicable."""
    if "error" in doc:
        return False, False if exp["forward"] else None, None, f"error: {doc['error']}"
    fwd = doc.get("forward")
    got = fwd is not None
    sender = (fwd or {}).get("original_sender") or {}
    got_email = (sender.get("email") or "").lower() or None
    got_name = sender.get("name")
    det_ok = got == exp["forward"]
    email_ok = name_ok = None
    if exp["forward"]:
        email_ok = got and got_email == exp["email"]
        if "name" in exp:
            name_ok = got and norm_name(got_name) == norm_name(exp["name"])
    desc = (f"expected forward={exp['forward']} email={exp['email']} name={exp.get('name')!r}; "
            f"got forward={got} email={got_email} name={got_name!r}"
            + (f" by={fwd.get('detected_by')}" if fwd else ""))
    return det_ok, email_ok, name_ok, desc


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--inprocess", action="store_true")
    parser.add_argument("--json", help="write per-file results to this file")
    args = parser.parse_args()
    expected = json.loads((HERE / "expected.json").read_text(encoding="utf-8"))
    runner = run_inprocess if args.inprocess else run_cli
    names = sorted(expected)
    with ThreadPoolExecutor(max_workers=1 if args.inprocess else 8) as pool:
        docs = dict(zip(names, pool.map(lambda n: runner(HERE / n), names), strict=True))

    tp = fp = fn = tn = 0
    email_total = email_ok_n = name_total = name_ok_n = 0
    failures: dict[str, list[str]] = defaultdict(list)
    per_file = {}
    for name in names:
        exp, doc = expected[name], docs[name]
        det_ok, email_ok, name_ok, desc = judge(exp, doc)
        got = "error" not in doc and doc.get("forward") is not None
        if exp["forward"]:
            tp += got
            fn += not got
            email_total += 1
            email_ok_n += bool(email_ok)
            if name_ok is not None:
                name_total += 1
                name_ok_n += bool(name_ok)
        else:
            fp += got
            tn += not got
        kinds = []
        if not det_ok:
            kinds.append("missed forward" if exp["forward"] else "false positive")
        elif email_ok is False:
            kinds.append("wrong email")
        if name_ok is False and det_ok:
            kinds.append("wrong name")
        for kind in kinds:
            failures[f"{exp['category']} / {kind}"].append(f"{name}: {desc}")
        per_file[name] = {"ok": not kinds, "failures": kinds, "desc": desc}

    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    print(f"files: {len(names)}  (forwards {tp + fn}, negatives {fp + tn})")
    print(f"forward detection: TP={tp} FP={fp} FN={fn} TN={tn}  precision={precision:.3f} recall={recall:.3f}")
    print(f"original-sender email accuracy (on forwards): {email_ok_n}/{email_total} = "
          f"{email_ok_n / max(email_total, 1):.3f}")
    print(f"original-sender name accuracy (where expected): {name_ok_n}/{name_total} = "
          f"{name_ok_n / max(name_total, 1):.3f}")
    overall = sum(1 for v in per_file.values() if v["ok"])
    print(f"files fully correct: {overall}/{len(names)}")
    if failures:
        print("\nFAILURES by category:")
        for key in sorted(failures):
            print(f"\n[{key}] ({len(failures[key])})")
            for line in failures[key]:
                print(f"  - {line}")
    if args.json:
        Path(args.json).write_text(json.dumps(per_file, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
