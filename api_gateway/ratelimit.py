"""Limiting failed authentications per client address, in bounded memory.

Each address has a bucket of ``burst`` failures that refills at ``rate_per_s``.
A failure takes one; with the bucket empty, every authenticated request from
that address answers 429 until it has refilled enough for one more try. Only
``max_clients`` addresses are remembered (least recently failed go first), so a
flood of addresses costs a fixed amount of memory. Limits are per process:
under gunicorn with N workers an address gets up to N times the rate.
"""
from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

MAX_CLIENTS = 10_000


class FailureLimiter:
    def __init__(self, rate_per_s: float, burst: int, max_clients: int = MAX_CLIENTS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self.max_clients = max_clients
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # addr -> (level, at)

    def _level(self, address: str, now: float) -> float:
        level, at = self._buckets.get(address, (self.burst, now))
        return min(self.burst, level + (now - at) * self.rate_per_s)

    def retry_after_s(self, address: str) -> int:
        """0 when ``address`` may try to authenticate now, else whole seconds to wait."""
        with self._lock:
            if address not in self._buckets:
                return 0
            level = self._level(address, self.clock())
        if level >= 1.0:
            return 0
        return max(1, math.ceil((1.0 - level) / self.rate_per_s))

    def failed(self, address: str) -> None:
        """Record one failed authentication from ``address``."""
        with self._lock:
            now = self.clock()
            level = max(0.0, self._level(address, now) - 1.0)
            self._buckets[address] = (level, now)
            self._buckets.move_to_end(address)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)
