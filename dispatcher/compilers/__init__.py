"""Task compilers: one pure function per task type, settings in, chunks out.

A compiler does no I/O. It receives settings already validated by
``common.jobtypes`` and returns the exact chunk list, so its tests can assert it.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from common.frames import Ranges


@dataclasses.dataclass(frozen=True)
class ChunkSpec:
    """One chunk as a compiler describes it."""

    index: int
    command: str
    frames: Ranges
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    parser: str | None = None  # None: the task's parser
    depends_on: tuple[int, ...] = ()


Compiler = Callable[[dict[str, Any]], list[ChunkSpec]]


def _registry() -> dict[str, Compiler]:
    from dispatcher.compilers import blender_render, noop, sleep

    return {"noop": noop.compile_task, "sleep": sleep.compile_task,
            "blender_render": blender_render.compile_task}


COMPILERS: dict[str, Compiler] = _registry()


def compile_task(task_type: str, settings: dict[str, Any]) -> list[ChunkSpec]:
    return COMPILERS[task_type](settings)
