"""The OPERATIONS table of the notifier's HTTP API: empty, its only route is /health/notifier."""

from apispec import APISpec

OPERATIONS: list = []


def register(spec: APISpec) -> None:
    """Nothing to add yet."""
