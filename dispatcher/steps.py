"""What the dispatcher asks of a chunk's job-type step after compiling: its retry limit."""
from __future__ import annotations

from common import jobtypes
from common.models import Chunk, Task
from dispatcher.context import Context


def step_of(ctx: Context, task: Task, chunk: Chunk) -> jobtypes.Step | None:
    """The declaration of the step a chunk belongs to (None for chunks from before job-type files)."""
    jobtype = jobtypes.registry(ctx.config.job_types_dir).get(task.type)
    if jobtype is None or not chunk.step:
        return None
    return jobtype.step(chunk.step)


def max_retries(ctx: Context, task: Task, chunk: Chunk) -> int:
    """The step's own ``retries`` when its file declares them, else the task's ``max_retries``."""
    step = step_of(ctx, task, chunk)
    return step.retries if step is not None and step.retries is not None else task.max_retries
