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

from common import messages
from common.config import Config

log = logging.getLogger("dispatcher")


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
    # (agent, pools, commands) of accepted hellos: their queues are declared before the outbox goes.
    joined: list[tuple[str, list[str], list[str]]] = dataclasses.field(default_factory=list)
    # The first statement of every transaction: raises unless this dispatcher is the active one
    # (dispatcher/leader.py). The default, for tests driving handlers directly, checks nothing.
    fence: Callable[[], None] = lambda: None
    # What the transaction changed, for the change events (dispatcher/changes.py): key -> change.
    changed: dict[tuple, dict] = dataclasses.field(default_factory=dict)

    def send(self, message: messages.Message, agent: str | None = None) -> None:
        self.outbox.append((message, agent))

    def wake_release(self) -> None:
        self.release_wanted = True
