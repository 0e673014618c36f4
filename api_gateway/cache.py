"""A short-lived, per-process memo for the read endpoints a dashboard polls hardest.

Worker lists and task counts change every few seconds at most (heartbeats are
5 s apart); serving them up to ``ttl_s`` old keeps their cost flat however
many clients poll. When a value expires, one request recomputes it while the
others are still served the previous value (never older than the time one
recomputation takes), so a crowd of pollers does not recompute it all at once.
Bounded: at most ``max_entries`` keys are kept.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any


class Memo:
    def __init__(self, ttl_s: float, max_entries: int = 256,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self._lock = threading.Lock()
        self._entries: dict[Hashable, tuple[float, Any]] = {}
        self._refreshing: set[Hashable] = set()

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        if self.ttl_s <= 0:
            return compute()  # memo turned off (CORRAL_API_CACHE=0)
        now = self.clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] > now:
                return entry[1]
            if entry is not None and key in self._refreshing:
                return entry[1]  # someone is recomputing it: the previous value will do
            self._refreshing.add(key)
        try:
            value = compute()
        finally:
            with self._lock:
                self._refreshing.discard(key)
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = (now + self.ttl_s, value)
        return value
