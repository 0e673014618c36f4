"""What every state handler gets: config, clock, and an outbox for broker side effects.

Handlers run inside one database transaction. Messages they want sent go to
the outbox and are published only after the transaction commits, so a rolled
back change never leaks a message.
"""
from __future__ import annotations

import dataclasses
import logging
import time
import typing
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
class TaskDelta:
    """What a transaction's chunk reports did to one task, written in one UPDATE (chunks.flush_tasks)."""

    frames_done: int = 0  # frames added
    top: int | None = None  # the highest frame added
    worker: int | None = None  # the worker that last started one of its chunks
    started_at: float | None = None  # the earliest start, for a task that had none

    def started(self, worker: int, at: float) -> None:
        self.worker = worker
        self.started_at = at if self.started_at is None else min(self.started_at, at)

    def frames(self, count: int, top: int) -> None:
        self.frames_done += count
        self.top = top if self.top is None else max(self.top, top)


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
    # (agent, pools, commands) of accepted hellos and pool changes: their queues are declared before
    # the outbox goes.
    joined: list[tuple[str, list[str], list[str]]] = dataclasses.field(default_factory=list)
    # The first statement of every transaction: raises unless this dispatcher is the active one
    # (dispatcher/leader.py). The default, for tests driving handlers directly, checks nothing.
    fence: Callable[[], None] = lambda: None
    # What the transaction changed, for the change events (dispatcher/changes.py): key -> change.
    changed: dict[tuple, dict] = dataclasses.field(default_factory=dict)
    # Farm statistics the transaction counted (common/farmstats.py), written just before its commit.
    counts: dict[tuple[str, str, str, float], float] = dataclasses.field(default_factory=dict)
    # Task id -> what this transaction's chunk reports added to the task, not written yet.
    deltas: dict[int, TaskDelta] = dataclasses.field(default_factory=dict)
    # Tasks with a chunk completed in this transaction: dependents and completion checked once each.
    finishing: set[int] = dataclasses.field(default_factory=set)
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

    def task_delta(self, task_id: int) -> TaskDelta:
        found = self.deltas.get(task_id)
        if found is None:
            found = self.deltas[task_id] = TaskDelta()
        return found

    def mark(self) -> Mark:
        """Where the side effects stand, to undo one event's share of them (a rolled back savepoint)."""
        return Mark(len(self.outbox), frozenset(self.issued_keys), dict(self.changed), dict(self.counts),
                    {k: dataclasses.replace(v) for k, v in self.deltas.items()}, set(self.finishing))

    def undo_to(self, mark: Mark) -> None:
        del self.outbox[mark.sent:]
        for agent in set(self.issued_keys) - mark.keys:
            del self.issued_keys[agent]
        self.changed, self.counts = mark.changed, mark.counts
        self.deltas, self.finishing = mark.deltas, mark.finishing
        self._forget_cached()

    def rolled_back(self) -> None:
        """The transaction was rolled back: nothing it queued may leak, nothing it cached may stay."""
        self.outbox.clear()
        self.issued_keys.clear()
        self.changed.clear()
        self.counts.clear()
        self.deltas.clear()
        self.finishing.clear()
        self._forget_cached()
        self.compiles.clear()
        self.release_wanted = True
        self.compile_wanted = True

    def _forget_cached(self) -> None:
        # A rolled back insert or update may be what these remember.
        self.worker_ids.clear()
        self.readings.clear()


class Mark(typing.NamedTuple):
    """What ``Context.mark`` remembers, for ``undo_to``."""

    sent: int  # the outbox's length
    keys: frozenset[str]
    changed: dict[tuple, dict]
    counts: dict[tuple[str, str, str, float], float]
    deltas: dict[int, TaskDelta]
    finishing: set[int]
