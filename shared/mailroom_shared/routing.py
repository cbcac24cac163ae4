"""Which service answers which HTTP path. Each service runs its own HTTP server (nameko binds
one per service process); in production an ingress routes by these prefixes, locally the
`mailroom run` proxy and the test stack do. deploy/ mirrors this table (tests/test_deploy.py)."""

from __future__ import annotations

import re

ROUTES: tuple[tuple[str, str], ...] = (
    (r"^/health/(?P<service>[a-z]+)$", "{service}"),
    (r"^/api/ingest(/|$)", "ingest"),
    (r"^/api/contacts(/|$)", "contacts"),
    (r"^/api/outbound(/|$)", "outbound"),
    (r"^/api/notifier(/|$)", "notifier"),
    (r"^/api/(webhooks|slack)(/|$)", "notifier"),
    (r"^/slack(/|$)", "notifier"),
    (r"^/api/(inboxes|conversations|messages)(/|$)", "conversations"),
    (r"^/api/channels(/|$)", "conversations"),  # chat and form connectors (docs/channels.md)
)
_COMPILED = [(re.compile(pattern), target) for pattern, target in ROUTES]


def service_for_path(path: str) -> str | None:
    for pattern, target in _COMPILED:
        match = pattern.match(path)
        if match:
            return target.format(**match.groupdict())
    return None
