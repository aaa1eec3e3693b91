"""A small thread-safe cache whose entries expire: store facts that change only when a run
stores more (how many images have vectors, which model embedded most)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Value = TypeVar("Value")


class Expiring(Generic[Value]):
    """``get(key, compute)``: the value computed for ``key`` at most ``seconds`` ago, else
    ``compute()`` (outside the lock: two threads may compute the same key once each). None
    is not kept: what is not stored yet is looked for again on the next call."""

    def __init__(self, seconds: float, max_entries: int | None = None) -> None:
        self.seconds = seconds
        self.max_entries = max_entries  # the oldest go first past it
        self._values: dict[Hashable, tuple[float, Value]] = {}
        self._lock = threading.Lock()

    def peek(self, key: Hashable) -> Value | None:
        """The value kept for ``key`` if it is fresh, else None."""
        with self._lock:
            cached = self._values.get(key)
        if cached is not None and time.monotonic() - cached[0] < self.seconds:
            return cached[1]
        return None

    def put(self, key: Hashable, value: Value) -> None:
        """Keep ``value`` for ``key`` from now."""
        with self._lock:
            self._values.pop(key, None)
            self._values[key] = (time.monotonic(), value)
            while self.max_entries is not None and len(self._values) > self.max_entries:
                del self._values[next(iter(self._values))]

    def get(self, key: Hashable, compute: Callable[[], Value]) -> Value:
        cached = self.peek(key)
        if cached is not None:
            return cached
        value = compute()
        if value is not None:
            self.put(key, value)
        return value
