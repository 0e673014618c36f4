"""What the state handlers count for the farm's metrics (``common/farmstats.py``).

Each function is called once from the handler that makes the transition, inside
its transaction, and adds to ``ctx.counts``; the transaction writes them just
before it commits (``flush``), so the counts agree with the chunk states exactly
and a burst pays one statement for all of its counts.
"""
from __future__ import annotations

from peewee import fn

from common import farmstats
from common.models import COMPLETED, Attempt, Chunk, Task
from dispatcher.context import Context

RELEASED_PHASE, PENDING_PHASE = "released", "pending"


def chunk_started(ctx: Context, chunk: Chunk, task: Task, now: float) -> None:
    """A chunk began running: how long it waited since it was released and since it became pending."""
    rows = []
    if chunk.released_at is not None:
        rows += farmstats.observation(farmstats.WAIT, task.pool, RELEASED_PHASE, now - chunk.released_at)
    rows += farmstats.observation(farmstats.WAIT, task.pool, PENDING_PHASE, now - pending_since(chunk, task))
    farmstats.accumulate(ctx.counts, rows)


def pending_since(chunk: Chunk, task: Task) -> float:
    """When the chunk last became runnable: the end of its previous attempt, else the submission."""
    if chunk.attempts > 1:
        ended = (Attempt.select(fn.MAX(Attempt.finished_at))
                 .where(Attempt.chunk == chunk.id, Attempt.number < chunk.attempts).scalar())
        if ended is not None:
            return float(ended)
    return float(task.created_at)


def chunk_finished(ctx: Context, chunk: Chunk, outcome: str, now: float) -> None:
    """An attempt ended with ``outcome`` (completed, failed, declined, canceled or lost)."""
    rows = farmstats.counter(farmstats.FINISHED, chunk.command, outcome)
    if outcome == COMPLETED and chunk.started_at is not None:
        rows += farmstats.observation(farmstats.DURATION, chunk.command, "", now - chunk.started_at)
    farmstats.accumulate(ctx.counts, rows)


def flush(ctx: Context) -> None:
    """Write what the transaction counted (called last inside it, by ``Applier.transaction``)."""
    if ctx.counts:
        counts, ctx.counts = ctx.counts, {}
        farmstats.add((*key, value) for key, value in counts.items())
