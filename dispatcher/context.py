"""What every state handler gets: config, clock, and an outbox for broker side effects.

Handlers run inside one database transaction. Messages they want sent go to
the outbox and are published only after the transaction commits, so a rolled
back change never leaks a message.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from common import messages
from common.config import Config

log = logging.getLogger("dispatcher")


class Refused(Exception):
    """A message a rule refuses inside the transaction: its changes are undone and it is dead-lettered
    with this reason. The verifier checks against committed rows; a burst applies several messages
    in one transaction, so a rule that depends on an earlier message of the same burst is checked
    again here."""


@dataclasses.dataclass
class Context:
    config: Config
    clock: Callable[[], float] = time.time
    # (message, agent name or None for a broadcast)
    outbox: list[tuple[messages.Message, str | None]] = dataclasses.field(default_factory=list)
    # Set when capacity may have appeared: new chunks, an idle agent, a resume.
    release_wanted: bool = True
    # No agent is judged lost before this time: after the dispatcher (re)connects, heartbeats
    # that queued up while it was away have not been applied yet.
    grace_until: float = 0.0
    # Task id -> the commands its chunks use (fixed once compiled), for releasing.
    task_commands: dict[int, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    # Keys issued to agents in this transaction, for the verifier once it commits.
    issued_keys: dict[str, bytes] = dataclasses.field(default_factory=dict)
    # Agent name -> worker id, filled as workers are looked up (a worker row is never deleted).
    worker_ids: dict[str, int] = dataclasses.field(default_factory=dict)
    # Worker id -> the readings last written for it, so a heartbeat writes only what changed.
    readings: dict[int, tuple[str, str]] = dataclasses.field(default_factory=dict)
    # (agent, pools, commands) of accepted hellos: their queues are declared before the outbox goes.
    joined: list[tuple[str, list[str], list[str]]] = dataclasses.field(default_factory=list)
    # The first statement of every transaction: raises unless this dispatcher is the active one
    # (dispatcher/leader.py). The default, for tests driving handlers directly, checks nothing.
    fence: Callable[[], None] = lambda: None
    # What the transaction changed, for the change events (dispatcher/changes.py): key -> change.
    changed: dict[tuple, dict] = dataclasses.field(default_factory=dict)
    # Set while a task may have chunks left to compile (dispatcher.tasks.compile_some); True at start,
    # so a new leader resumes what the last one left half compiled.
    compile_wanted: bool = True
    # Task id -> its compile in progress (a chunk generator and how far it got): a cache, checked
    # against the task's compiled_upto before each use.
    compiles: dict[int, Any] = dataclasses.field(default_factory=dict)

    def send(self, message: messages.Message, agent: str | None = None) -> None:
        self.outbox.append((message, agent))

    def wake_release(self) -> None:
        self.release_wanted = True

    def mark(self) -> tuple[int, frozenset[str], dict[tuple, dict]]:
        """Where the side effects stand, to undo one event's share of them (a rolled back savepoint)."""
        return len(self.outbox), frozenset(self.issued_keys), dict(self.changed)

    def undo_to(self, mark: tuple[int, frozenset[str], dict[tuple, dict]]) -> None:
        sent, keys, changed = mark
        del self.outbox[sent:]
        for agent in set(self.issued_keys) - keys:
            del self.issued_keys[agent]
        self.changed = changed
        self._forget_cached()

    def rolled_back(self) -> None:
        """The transaction was rolled back: nothing it queued may leak, nothing it cached may stay."""
        self.outbox.clear()
        self.issued_keys.clear()
        self.changed.clear()
        self._forget_cached()
        self.compiles.clear()
        self.release_wanted = True
        self.compile_wanted = True

    def _forget_cached(self) -> None:
        # A rolled back insert or update may be what these remember.
        self.worker_ids.clear()
        self.readings.clear()
