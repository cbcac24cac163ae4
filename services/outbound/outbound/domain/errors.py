"""The one error of a send request that cannot be sent as given (handlers answer it with a 400
naming the field)."""

from __future__ import annotations


class InvalidEmail(ValueError):
    """A send request that cannot be sent as given: the message says exactly why."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def invalid(exc: Exception) -> InvalidEmail:
    """A rule's own error (HeaderInjection, InvalidRecipient, …) as an InvalidEmail for its field."""
    return InvalidEmail(str(exc), getattr(exc, "field", None))
