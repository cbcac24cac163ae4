"""The notifier has no HTTP API yet (only /health/notifier)."""

from apispec import APISpec

OPERATIONS: list = []


def register(spec: APISpec) -> None:
    """Nothing to add yet."""
