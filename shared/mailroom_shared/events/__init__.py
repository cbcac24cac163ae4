"""The public event contract: envelope and catalogue. See catalogue.py for every event and its versions."""

from mailroom_shared.events.catalogue import (
    CATALOGUE,
    EVENT_NAMES,
    EventSpec,
    VersionRequired,
    spec_for,
    spec_for_type,
    versions,
)
from mailroom_shared.events.envelope import InvalidEvent, build_envelope, envelope_version, parse_envelope

__all__ = ["CATALOGUE", "EVENT_NAMES", "EventSpec", "InvalidEvent", "VersionRequired", "build_envelope",
           "envelope_version", "parse_envelope", "spec_for", "spec_for_type", "versions"]
