"""The label tables as data (ingest/domain/forward_labels.json): a source on every entry, the 40+ most used UI
languages covered, every From label read by the detector, and docs/forwarding.md in step with the data."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from ingest.domain import forwards
from ingest.domain.model import Address
from ingest.domain.parsing import parse_message

ROOT = Path(__file__).parents[4]
TABLE = json.loads((ROOT / "services/ingest/ingest/domain/forward_labels.json").read_text(encoding="utf-8"))


def _renderer():
    spec = importlib.util.spec_from_file_location("render_forwarding_doc",
                                                  ROOT / "services/ingest/tools/render_forwarding_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_entry_has_a_source_and_clients() -> None:
    for entry in TABLE["labels"] + TABLE["separators"]:
        assert entry["source"].strip() and entry["clients"] and entry["langs"], entry


def test_at_least_40_ui_languages_have_from_date_and_subject_labels() -> None:
    fields: dict[str, set[str]] = {}
    for entry in TABLE["labels"]:
        for language in entry["langs"]:
            fields.setdefault(language, set()).add(entry["field"])
    covered = [lang for lang in TABLE["top_languages"] if {"from", "date", "subject"} <= fields.get(lang, set())]
    assert len(covered) >= 40, sorted(set(TABLE["top_languages"]) - set(covered))
    for required in ("ar", "he", "fa", "hi", "bn", "ta", "th", "vi", "id", "cs", "pl", "hu", "ro", "el", "hr",
                     "sl", "sr"):
        assert required in covered


@pytest.mark.parametrize("language", TABLE["top_languages"])
def test_every_from_label_of_a_language_starts_a_block(language: str) -> None:
    """A Gmail-style forward (separator not localised, only the From label) with each of the language's
    From labels gives the original sender."""
    for entry in TABLE["labels"]:
        if entry["field"] != "from" or language not in entry["langs"]:
            continue
        raw = ("From: Alex <alex@team.example>\nSubject: Fwd: Order 55\nMessage-ID: <l@x>\n"
               "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
               "---------- Forwarded message ---------\n"
               f"{entry['label']}: Dana Roe <dana@roe.example>\nDate: Mon, Mar 3, 2025 at 9:00 AM\n"
               "Subject: Order 55\nTo: <alex@team.example>\n\nbody\n").encode()
        info = forwards.detect_forward(parse_message(raw))
        assert info is not None and info.original_sender == Address("Dana Roe", "dana@roe.example"), entry


def test_the_page_renders_the_data() -> None:
    renderer = _renderer()
    page = (ROOT / "docs/forwarding.md").read_text(encoding="utf-8")
    assert renderer.render(TABLE) in page, "run services/ingest/tools/render_forwarding_doc.py"
