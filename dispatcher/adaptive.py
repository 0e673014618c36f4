"""Adaptive chunking: a step that asks for ``chunk_target_s`` gets chunks sized from measured frame times.

The compiler cuts an adaptive step into chunks of ``chunk_min`` frames. Each
time a chunk of the step completes, ``on_chunk_completed`` takes the slowest
seconds per frame of the step's last ``WINDOW`` completed chunks and re-shapes the
*next* pending chunk of the step to ``chunk_target_s / seconds_per_frame``
frames (within ``chunk_min``..``chunk_max``): it absorbs the pending chunks
after it, or, when frames got slower since it was last sized, hands its tail
back as a new pending chunk. Only pending chunks change, so a chunk on the
broker or on an agent never does, and every later chunk is sized from the
latest measurements. Dependents (the steps ``after`` this one) are rewritten
to wait for the chunks that now hold the frames. docs/architecture.md has the
reasoning.
"""
from __future__ import annotations

import logging
from typing import Any

from peewee import fn

from common import frames as framelib
from common import jobtypes
from common.jobtypes.render import resolve_paths
from common.models import BLOCKED, COMPLETED, PENDING, Chunk, Task
from dispatcher.compilers import chunk_params
from dispatcher.context import Context
from dispatcher.steps import step_of

log = logging.getLogger("dispatcher.adaptive")
WINDOW = 3  # completed chunks the frame time is measured over: recent enough to follow a slowdown


def next_size(target_s: float, seconds_per_frame: float, lo: int, hi: int) -> int:
    """Frames per chunk for a target duration (pure)."""
    if seconds_per_frame <= 0:
        return hi
    return max(lo, min(hi, round(target_s / seconds_per_frame)))


def seconds_per_frame(task_id: int, step: str) -> float | None:
    """The slowest per-frame time of the step's last ``WINDOW`` finished chunks; None before the first.

    The slowest, not the mean: a chunk that runs past its target holds an agent
    and costs more on a retry than one that ends early, so sizes shrink at once
    when frames get slower and grow back only when the recent chunks are all fast.
    """
    rows = list(Chunk.select(Chunk.started_at, Chunk.finished_at, Chunk.frame_count)
                .where(Chunk.task == task_id, Chunk.step == step, Chunk.status == COMPLETED,
                       Chunk.started_at.is_null(False), Chunk.finished_at.is_null(False))
                .order_by(Chunk.finished_at.desc()).limit(WINDOW).tuples())
    times = [max(0.0, end - start) / count for start, end, count in rows if count]
    return max(times) if times else None


def on_chunk_completed(ctx: Context, task: Task, chunk: Chunk) -> None:
    """The hook: re-size the step's next pending chunk from what the finished ones measured."""
    step = step_of(ctx, task, chunk)
    if step is None or step.chunk_target_s is None:
        return
    measured = seconds_per_frame(task.id, step.name)
    if measured is None:
        return
    target = float(task.settings[step.chunk_target_s] if isinstance(step.chunk_target_s, str)
                   else step.chunk_target_s)
    size = next_size(target, measured, step.chunk_min, step.chunk_max)
    jobtype = jobtypes.registry(ctx.config.job_types_dir)[task.type]
    reshape(task, jobtype, step, size)
    log.info("task %s step %s: %.3fs per frame measured; next chunk %d frames (target %gs)",
             task.id, step.name, measured, size, target)


def reshape(task: Task, jobtype: jobtypes.JobType, step: jobtypes.Step, size: int) -> None:
    pending = list(Chunk.select()
                   .where(Chunk.task == task.id, Chunk.step == step.name, Chunk.status == PENDING)
                   .order_by(Chunk.index).limit(size + 1))
    if not pending or pending[0].frame_count == size:
        return
    head = pending[0]
    if head.frame_count < size:
        _absorb(task, jobtype, step, head, pending[1:], size)
    else:
        _split(task, jobtype, step, head, size)


def _absorb(task: Task, jobtype: jobtypes.JobType, step: jobtypes.Step, head: Chunk,
            following: list[Chunk], size: int) -> None:
    frames = framelib.expand(head.frames)
    absorbed = []
    for other in following:
        if len(frames) + other.frame_count > size:
            break
        if step.contiguous and other.frames[0][0] != frames[-1] + 1:
            break
        frames += framelib.expand(other.frames)
        absorbed.append(other)
    if not absorbed:
        return
    _set_frames(task, jobtype, step, head, framelib.to_ranges(sorted(frames)))
    gone = {c.index for c in absorbed}
    Chunk.delete().where(Chunk.id.in_([c.id for c in absorbed])).execute()
    _rewrite_dependents(task.id, lambda deps: [head.index if i in gone else i for i in deps])


def _split(task: Task, jobtype: jobtypes.JobType, step: jobtypes.Step, head: Chunk, size: int) -> None:
    frames = framelib.expand(head.frames)
    keep, rest = framelib.to_ranges(frames[:size]), framelib.to_ranges(frames[size:])
    _set_frames(task, jobtype, step, head, keep)
    index = (Chunk.select(fn.MAX(Chunk.index)).where(Chunk.task == task.id).scalar() or 0) + 1
    Chunk.insert(task=task.id, index=index, command=head.command, parser=head.parser,
                 params=_params(task, jobtype, step, rest), frames=rest, frame_count=framelib.count(rest),
                 depends_on=head.depends_on, status=PENDING, priority=head.priority, step=head.step).execute()
    _rewrite_dependents(task.id, lambda deps: deps + [index] if head.index in deps else deps)


def _set_frames(task: Task, jobtype: jobtypes.JobType, step: jobtypes.Step, chunk: Chunk,
                frames: framelib.Ranges) -> None:
    Chunk.update(frames=frames, frame_count=framelib.count(frames),
                 params=_params(task, jobtype, step, frames)).where(Chunk.id == chunk.id).execute()


def _params(task: Task, jobtype: jobtypes.JobType, step: jobtypes.Step,
            frames: framelib.Ranges) -> dict[str, Any]:
    return chunk_params(jobtype, step, resolve_paths(jobtype, task.settings), frames)


def _rewrite_dependents(task_id: int, change: Any) -> None:
    blocked = Chunk.select(Chunk.id, Chunk.depends_on).where(Chunk.task == task_id, Chunk.status == BLOCKED)
    for waiting in blocked:
        deps = sorted(set(change(list(waiting.depends_on))))
        if deps != sorted(waiting.depends_on):
            Chunk.update(depends_on=deps).where(Chunk.id == waiting.id).execute()
