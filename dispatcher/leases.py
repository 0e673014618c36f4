"""Giving chunks back: requeueing after a failure, a hand-back or a lost agent."""
from __future__ import annotations

import logging

from common.models import PENDING, RELEASED, RUNNING, Attempt, Chunk, Task, Worker
from dispatcher import stats
from dispatcher.context import Context

log = logging.getLogger("dispatcher.leases")


def requeue(ctx: Context, chunk: Chunk) -> None:
    """Put a chunk back to pending for a new lease; its partial frames no longer count."""
    if chunk.frames_done:
        Task.update(frames_done=Task.frames_done - len(chunk.frames_done)).where(
            Task.id == chunk.task.id).execute()
    Chunk.update(status=PENDING, lease_id=None, worker=None, frames_done=[], files=[],
                 released_at=None).where(Chunk.id == chunk.id).execute()
    ctx.wake_release()


def free_worker(ctx: Context, worker: Worker, lease_id: str) -> None:
    Worker.update(current_task=None, current_chunk=None, current_lease=None, activity="idle").where(
        Worker.id == worker.id, Worker.current_lease == lease_id).execute()
    ctx.wake_release()


def requeue_lost(ctx: Context, worker: Worker, reason: str) -> int:
    """Requeue the chunks a worker was running when it vanished or restarted."""
    lost = list(Chunk.select().where(Chunk.worker == worker.id, Chunk.status == RUNNING))
    for chunk in lost:
        Attempt.update(outcome="lost", finished_at=ctx.clock(), reason=reason).where(
            Attempt.lease_id == chunk.lease_id).execute()
        stats.chunk_finished(chunk, "lost", ctx.clock())
        log.warning("chunk %s (task %s #%s): running on %s -> pending (%s)",
                    chunk.id, chunk.task.id, chunk.index, worker.name, reason)
        requeue(ctx, chunk)
    Worker.update(current_task=None, current_chunk=None, current_lease=None).where(
        Worker.id == worker.id).execute()
    return len(lost)


def withdraw_stranded(ctx: Context) -> int:
    """Chunks released longer than ``release_timeout_s`` ago and never started go back to pending.

    Their message was lost (a purged or deleted queue, a broker that lost it) or
    has expired unread (its TTL is the same timeout): either way no agent will
    start that lease. The chunk is released again with a new lease; the withdrawn
    release does not count as an attempt, since no agent ever took it.
    """
    cutoff = ctx.clock() - ctx.config.release_timeout_s
    stranded = list(Chunk.select(Chunk.id, Chunk.lease_id, Chunk.released_at).where(
        Chunk.status == RELEASED, Chunk.released_at < cutoff))
    for chunk in stranded:
        Chunk.update(status=PENDING, lease_id=None, released_at=None, attempts=Chunk.attempts - 1).where(
            Chunk.id == chunk.id, Chunk.status == RELEASED, Chunk.lease_id == chunk.lease_id).execute()
        log.warning("chunk %s: released -> pending (lease %s not started within %.0fs: message lost "
                    "or expired)", chunk.id, chunk.lease_id, ctx.config.release_timeout_s)
    if stranded:
        ctx.wake_release()
    return len(stranded)
