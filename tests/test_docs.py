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


# --- every setting the code reads is documented -----------------------------------------------------

ENV_HELPERS = r"env_(?:int|float|bool|str|list|path|choice|secret)|os\.environ\.get|os\.getenv"
_NAME = r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+"
_DEF = re.compile(r"^\s*def (\w+)\((\w+)", re.M)
_CONSTANT = re.compile(rf"""^(\w+)\s*(?::\s*\w+\s*)?=\s*["']({_NAME})["']""", re.M)


def _settings_sources() -> list[Path]:
    """The code that reads the environment: the services, the shared library and the CLI (not their
    tests, not the test package)."""
    files = [*REPO.glob("services/*/*/**/*.py"), *REPO.glob("shared/mailroom_shared/**/*.py"),
             *REPO.glob("cli/mailroom_cli/**/*.py")]
    return sorted(f for f in files if "tests" not in f.relative_to(REPO).parts)


def environment_variables_read() -> dict[str, str]:
    """Every environment variable the code reads → the first file reading it. A read is a call of
    one of mailroom_shared.config's helpers (or `os.environ.get`/`getenv`), or of a function of the
    same file that hands its first parameter to one (ingest's `_first("INGEST_SMTP_HOST", …)`), whose
    first argument is a literal name, a module constant holding one (`MAILBOXES_FILE`), or an
    f-string (`f"{service.upper()}_DATABASE_URL"`, kept as a pattern: `{…}` matches `<SERVICE>`)."""
    found: dict[str, str] = {}
    for path in _settings_sources():
        text = path.read_text()
        wrappers = [name for name, param in _DEF.findall(text)
                    if re.search(rf"\b(?:{ENV_HELPERS})\(\s*{re.escape(param)}\b", text)]
        readers = "|".join([ENV_HELPERS, *map(re.escape, wrappers)])
        constants = dict(_CONSTANT.findall(text))
        calls = re.compile(rf"""(?<![\w.])(?:\w+\.)*(?:{readers})\(\s*(?:(f?)(["'])([^"'\n]*)\2|(\w+)\s*[,)])""")
        for fstring, _quote, literal, identifier in calls.findall(text) + re.findall(
                r"""os\.environ\[\s*(f?)(["'])([^"'\n]*)\2()\s*\]""", text):
            name = constants.get(identifier) if identifier else literal
            if not name:
                continue
            if fstring:
                name = re.sub(r"\{[^}]*\}", "{}", name)
            if re.fullmatch(r"[A-Z0-9_{}]+", name) and re.search("[A-Z]", name):
                found.setdefault(name, str(path.relative_to(REPO)))
    return found


def configuration_table_variables() -> set[str]:
    """The variables named (in backquotes) in the first column of the README's configuration table."""
    section = (REPO / "README.md").read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([^`]+)`", line.split("|")[1]))
    return names


def test_environment_variables_are_found():
    """The scan itself works: settings read in each of its ways are found."""
    read = environment_variables_read()
    for expected in ("INGEST_TRUSTED_AUTHSERV_IDS",  # config.env_list("…")
                     "INGEST_SMTP_HOST",  # a wrapper in ingest/settings.py: _first("…", …)
                     "INGEST_MAILBOXES_FILE",  # a constant: config.env_path(MAILBOXES_FILE)
                     "MAILROOM_JWT_SECRET",  # os.environ.get("…")
                     "MAILROOM_METRICS_PORT", "OUTBOUND_SMTP_TIMEOUT", "{}_DATABASE_URL"):
        assert expected in read, expected


def test_every_environment_variable_is_in_the_readme_configuration_table():
    """A setting added to the code without a row in the README's configuration table fails here
    (name, default, meaning: defaults as the code has them)."""
    documented = configuration_table_variables()
    missing = []
    for name, where in sorted(environment_variables_read().items()):
        pattern = re.compile(re.escape(name).replace(r"\{\}", "{}").replace("{}", r"(?:<[A-Z]+>|[A-Z0-9]+)"))
        if not any(pattern.fullmatch(row) for row in documented):
            missing.append(f"{name} (read in {where})")
    assert not missing, "not in README.md's configuration table: " + ", ".join(missing)
