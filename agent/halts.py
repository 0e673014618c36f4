"""The tasks this agent must not run chunks of (``ControlHalt`` until ``ControlResume``)."""
from __future__ import annotations

import collections
import threading

MAX_HALTED = 10_000


class HaltSet:
    """A bounded, thread-safe set of halted task ids; the oldest halt is forgotten first.

    Bounded because halts of finished tasks are never resumed: the dispatcher
    stops releasing their chunks, so only recent ids matter.
    """

    def __init__(self, limit: int = MAX_HALTED) -> None:
        self.limit = limit
        self._ids: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._lock = threading.Lock()

    def add(self, task_id: int) -> None:
        with self._lock:
            self._ids[task_id] = None
            self._ids.move_to_end(task_id)
            while len(self._ids) > self.limit:
                self._ids.popitem(last=False)

    def discard(self, task_id: int) -> None:
        with self._lock:
            self._ids.pop(task_id, None)

    def __contains__(self, task_id: object) -> bool:
        with self._lock:
            return task_id in self._ids

    def __len__(self) -> int:
        with self._lock:
            return len(self._ids)
