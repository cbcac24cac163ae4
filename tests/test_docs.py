"""The generated contract documents are up to date with the code (run `make docs` if not), and
they describe every event and every HTTP route; the hand-written docs cite only files that
exist."""

import re
from pathlib import Path

import yaml

from mailroom_cli.docs import asyncapi, openapi, render
from mailroom_shared.events.catalogue import CATALOGUE

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def test_asyncapi_document_is_generated_from_the_catalogue():
    assert (DOCS / "events.asyncapi.yaml").read_text() == render(asyncapi()), "stale: run `make docs`"
    document = yaml.safe_load((DOCS / "events.asyncapi.yaml").read_text())
    assert set(document["components"]["messages"]) == {f"{name}.v{version}" for name, version in CATALOGUE}
    for (name, _version), spec in CATALOGUE.items():
        channel = document["channels"][f"{spec.exchange}/{name}"]
        assert channel["bindings"]["amqp"]["exchange"]["name"] == spec.exchange


def test_openapi_document_is_generated_from_the_services():
    assert (DOCS / "openapi.yaml").read_text() == render(openapi()), "stale: run `make docs`"
    paths = yaml.safe_load((DOCS / "openapi.yaml").read_text())["paths"]
    for expected in ("/api/inboxes", "/api/inboxes/{inbox_id}/conversations", "/api/conversations/{conversation_id}",
                     "/api/contacts/{contact_id}/timeline", "/api/ingest/channels/{address}/messages"):
        assert expected in paths


def _written_docs() -> list[Path]:
    return [REPO / "README.md", *sorted(DOCS.glob("*.md")), *sorted((REPO / "services").glob("*/README.md"))]


def test_docs_cite_only_files_that_exist():
    """A path from the repository's root (`services/…`, `tests/…`, `shared/…`, …) cited in the
    README, docs/ or a service's README names a file or folder that exists: a renamed module or
    test file is caught here, not by a reader. Outputs of a run (bench/results/, var/) are exempt."""
    roots = sorted(p.name for p in REPO.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "var")
    alternatives = "|".join(map(re.escape, roots))
    cited = re.compile(rf"(?<![\w./<-])((?:{alternatives})/[\w./-]*\w)")
    missing = [f"{doc.relative_to(REPO)}: {ref}" for doc in _written_docs()
               for ref in cited.findall(doc.read_text())
               if not ref.startswith("bench/results/") and not (REPO / ref).exists()]
    assert not missing, missing
