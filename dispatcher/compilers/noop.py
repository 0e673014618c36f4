"""``noop``: chunks that the agent completes in-process, to measure overhead."""
from __future__ import annotations

from typing import Any

from common.frames import split_chunks
from dispatcher.compilers import ChunkSpec


def compile_task(settings: dict[str, Any]) -> list[ChunkSpec]:
    return [ChunkSpec(i, "noop", frames)
            for i, frames in enumerate(split_chunks(settings["frames"], settings["chunk_size"]))]
