"""``sleep``: each chunk is a child process that sleeps per frame (demos, fault tests)."""
from __future__ import annotations

from typing import Any

from common.frames import split_chunks
from dispatcher.compilers import ChunkSpec


def compile_task(settings: dict[str, Any]) -> list[ChunkSpec]:
    params = {"seconds_per_frame": settings["seconds_per_frame"]}
    if settings.get("exit_code"):
        params["exit_code"] = settings["exit_code"]
    return [ChunkSpec(i, "sleep", frames, params)
            for i, frames in enumerate(split_chunks(settings["frames"], settings["chunk_size"]))]
