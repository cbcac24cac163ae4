"""A value read again at most every few seconds: for small, rarely changing tables (inbox
addresses, trusted senders) that hot paths would otherwise query once per message."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Expiring(Generic[T]):
    """`get(load)` returns the value loaded at most `ttl` seconds ago, calling `load()` when it is
    older (or was never loaded, or `forget()` was called)."""

    def __init__(self, ttl: float, empty: T):
        self.ttl = ttl
        self._lock = threading.Lock()
        self._value = empty
        self._loaded_at: float | None = None

    def get(self, load: Callable[[], T]) -> T:
        loaded_at = self._loaded_at
        if loaded_at is not None and time.monotonic() - loaded_at <= self.ttl:
            return self._value
        value = load()
        with self._lock:
            self._value, self._loaded_at = value, time.monotonic()
        return value

    def forget(self) -> None:
        with self._lock:
            self._loaded_at = None
