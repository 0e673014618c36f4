"""Giving chunks back: requeueing after a failure, a hand-back or a lost agent."""
from __future__ import annotations

import logging

from common.models import PENDING, RELEASED, RUNNING, Attempt, Chunk, Task, Worker
from dispatcher import changes, sql, stats
from dispatcher.context import Context

log = logging.getLogger("dispatcher.leases")


def requeue(ctx: Context, chunk: Chunk) -> None:
    """Put a chunk back to pending for a new lease; its partial frames no longer count."""
    if chunk.frames_done:
        Task.update(frames_done=Task.frames_done - len(chunk.frames_done)).where(
            Task.id == chunk.task.id).execute()
    Chunk.update(status=PENDING, lease_id=None, worker=None, frames_done=[], files=[],
                 released_at=None).where(Chunk.id == chunk.id).execute()
    changes.chunk(ctx, chunk.id, chunk.task_id)
    ctx.wake_release()


def free_worker(ctx: Context, worker_id: int, lease_id: str) -> None:
    """The worker holds no chunk any more (if it still held this lease)."""
    sql.execute("UPDATE workers SET current_task = NULL, current_chunk = NULL, current_lease = NULL, "
                "activity = 'idle' WHERE id = ? AND current_lease = ?", (worker_id, lease_id))
    ctx.wake_release()


def requeue_lost(ctx: Context, worker: Worker, reason: str) -> int:
    """Requeue the chunks a worker was running when it vanished or restarted."""
    lost = list(Chunk.select().where(Chunk.worker == worker.id, Chunk.status == RUNNING))
    for chunk in lost:
        Attempt.update(outcome="lost", finished_at=ctx.clock(), reason=reason).where(
            Attempt.lease_id == chunk.lease_id).execute()
        stats.chunk_finished(ctx, chunk, "lost", ctx.clock())
        log.warning("chunk %s (task %s #%s): running on %s -> pending (%s)",
                    chunk.id, chunk.task.id, chunk.index, worker.name, reason)
        requeue(ctx, chunk)
    Worker.update(current_task=None, current_chunk=None, current_lease=None).where(
        Worker.id == worker.id).execute()
    return len(lost)


_WITHDRAW = ("UPDATE chunks SET status = ?, lease_id = NULL, released_at = NULL, attempts = attempts - 1 "
             "WHERE id = ? AND status = ? AND lease_id = ?")


def withdraw(ctx: Context, leases: list[tuple[int, str]], why: str) -> int:
    """Released chunks whose lease no agent can have taken go back to pending; how many did.

    The withdrawn release does not count as an attempt. A chunk an agent has
    started meanwhile (its lease is not released any more) is left alone, and an
    agent that later reports on a withdrawn lease is stale and told to stop.
    """
    withdrawn = 0
    for chunk_id, lease_id in leases:
        if sql.changed(_WITHDRAW, (PENDING, chunk_id, RELEASED, lease_id)):
            withdrawn += 1
            log.warning("chunk %s: released -> pending (lease %s %s)", chunk_id, lease_id, why)
    if withdrawn:
        ctx.wake_release()
    return withdrawn


def withdraw_stranded(ctx: Context) -> int:
    """Chunks released longer than ``release_timeout_s`` ago and never started go back to pending.

    Their message was lost (a purged or deleted queue, a broker that lost it) or
    has expired unread (its TTL is the same timeout): either way no agent will
    start that lease. The chunk is released again with a new lease; the withdrawn
    release does not count as an attempt, since no agent ever took it.
    """
    cutoff = ctx.clock() - ctx.config.release_timeout_s
    stranded = list(Chunk.select(Chunk.id, Chunk.lease_id).where(
        Chunk.status == RELEASED, Chunk.released_at < cutoff).tuples())
    return withdraw(ctx, stranded, f"not started within {ctx.config.release_timeout_s:.0f}s: message lost "
                                   "or expired")
