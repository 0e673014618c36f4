"""The ``noop`` command: every frame is done at once, inside the agent."""
from __future__ import annotations

from agent.executors.base import Command, check_keys
from common.config import Config
from common.messages import ChunkAssign


def prepare(assign: ChunkAssign, config: Config) -> Command:
    check_keys(assign.params, set(), "noop")
    return Command(argv=None, all_done_on_success=True)
