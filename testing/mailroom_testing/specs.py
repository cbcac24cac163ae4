"""Where each service's nameko module and migrations are, for tests that start services.

Paths only: importing this module imports no service code.
"""

from pathlib import Path

from mailroom_testing.stack import ServiceSpec

REPO = Path(__file__).resolve().parents[2]


def spec(name: str) -> ServiceSpec:
    return ServiceSpec(name=name, module=f"{name}.service", migrations=REPO / "services" / name / name / "migrations")


INGEST, CONTACTS, CONVERSATIONS, OUTBOUND, NOTIFIER = (
    spec(n) for n in ("ingest", "contacts", "conversations", "outbound", "notifier"))
