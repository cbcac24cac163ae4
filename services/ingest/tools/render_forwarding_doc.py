"""Renders the label tables of docs/forwarding.md from ingest/domain/forward_labels.json (between the
GENERATED markers; the rest of the page is written by hand). tests/unit/test_forward_labels.py fails when
the page and the data differ.

    python services/ingest/tools/render_forwarding_doc.py
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).parents[3]
TABLE = ROOT / "services" / "ingest" / "ingest" / "domain" / "forward_labels.json"
DOC = ROOT / "docs" / "forwarding.md"
BEGIN = "<!-- BEGIN GENERATED LABEL TABLES (services/ingest/tools/render_forwarding_doc.py) -->"
END = "<!-- END GENERATED LABEL TABLES -->"
FIELDS = ("from", "sender", "reply_to", "date", "subject", "to", "cc")


def _source_key(source: str, keys: dict[str, str]) -> str:
    """Sources are long (file and commit): numbered once, cited by number in the tables."""
    if source not in keys:
        keys[source] = f"S{len(keys) + 1}"
    return keys[source]


def render(table: dict) -> str:
    keys: dict[str, str] = {}
    labels: dict[str, list[dict]] = defaultdict(list)
    separators: dict[str, list[dict]] = defaultdict(list)
    for entry in table["labels"]:
        for language in entry["langs"]:
            labels[language].append(entry)
    for entry in table["separators"]:
        for language in entry["langs"]:
            separators[language].append(entry)
    out = [BEGIN, "", f"{len(table['top_languages'])} UI languages, {len(table['labels'])} label entries and "
           f"{len(table['separators'])} separator entries. A source number cites the file (and commit) the "
           "entry was read from; the list of sources follows the tables.", ""]
    for language in table["top_languages"]:
        name = table["language_names"].get(language, language)
        out += [f"### {name} (`{language}`)", "", "| field | label | clients | source |", "|---|---|---|---|"]
        rows = sorted(labels[language], key=lambda e: (FIELDS.index(e["field"]) if e["field"] in FIELDS else 99,
                                                       e["label"]))
        for entry in rows:
            refs = ", ".join(_source_key(s.strip(), keys) for s in entry["source"].split(";"))
            out.append(f"| {entry['field']} | `{entry['label']}` | {', '.join(entry['clients'])} | {refs} |")
        for entry in sorted(separators[language], key=lambda e: (e["kind"], e["phrase"])):
            refs = ", ".join(_source_key(s.strip(), keys) for s in entry["source"].split(";"))
            kind = "separator (forward)" if entry["kind"] == "forward" else "separator (original message)"
            out.append(f"| {kind} | `{entry['phrase']}` | {', '.join(entry['clients'])} | {refs} |")
        if not separators[language]:
            out.append("| separator | (none found in the sources) | | |")
        out.append("")
    out += ["### Other languages", "",
            "Entries for languages outside the list above (Thunderbird, Roundcube and Android Email locales such as "
            "bs, mk, sq, is, gl, eu, ka, kk, uz, az, km, mn, ps, ku, sw, am, zu) are in the data file and are "
            "matched the same way.", "",
            "### Sources", ""]
    out += [f"* **{key}**: {source}" for source, key in keys.items()]
    out += ["", END]
    return "\n".join(out)


def updated(doc: str, table: dict) -> str:
    before, _, rest = doc.partition(BEGIN)
    _, _, after = rest.partition(END)
    return before + render(table) + after


def main() -> int:
    table = json.loads(TABLE.read_text(encoding="utf-8"))
    DOC.write_text(updated(DOC.read_text(encoding="utf-8"), table), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
