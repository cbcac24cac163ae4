"""The public event contract: envelope and catalogue. See catalogue.py for every event type."""

from mailroom_shared.events.catalogue import CATALOGUE, EventSpec, spec_for
from mailroom_shared.events.envelope import build_envelope, parse_envelope

__all__ = ["CATALOGUE", "EventSpec", "build_envelope", "parse_envelope", "spec_for"]
