"""Finding CPU-bound work on a service's event loop: one green thread that keeps the loop to
itself holds up every other request, consumer and heartbeat of its process."""

from __future__ import annotations

import logging
import traceback

log = logging.getLogger("mailroom.blocking")

BLOCKED_MARKER = "EVENT LOOP BLOCKED"  # what tests look for in a service's log


def detect_blocking(seconds: float) -> None:
    """Report any stretch of over `seconds` in which one green thread kept the event loop to
    itself (CPU-bound work, a blocking call): every other request, consumer and heartbeat of the
    process waited meanwhile. For tests (MAILROOM_BLOCKING_DETECTION_SECONDS); eventlet's own
    detector raises inside the culprit instead, which changes what is being observed."""
    import eventlet.debug
    import eventlet.hubs.hub

    def report(signum, frame):
        log.error("%s for over %gs at:\n%s", BLOCKED_MARKER, seconds, "".join(traceback.format_stack(frame)))

    eventlet.hubs.hub.alarm_handler = report  # the handler the hub arms before each stretch of work
    eventlet.debug.hub_blocking_detection(True, resolution=seconds)


def stop_detecting_blocking() -> None:
    """Undo detect_blocking (a no-op if it was never started): the hub arms an alarm before each
    stretch of work, and one still armed when the process stops would kill it with SIGALRM."""
    import eventlet.debug

    eventlet.debug.hub_blocking_detection(False)  # and disarms the alarm
