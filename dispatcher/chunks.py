"""Chunk state: applying agents' started, progress and finished reports.

Every report names the lease it is about. A report whose lease is not the
chunk's current lease is stale (an earlier delivery of the chunk, or an agent
presumed dead) and changes nothing but the history of its own attempt. Reports
are cumulative, so applying one twice changes nothing either.
"""
from __future__ import annotations

import logging

from common import frames as framelib
from common import messages
from common.models import (
    CHUNK_FINAL,
    COMPLETED,
    FAILED,
    QUEUED,
    RELEASED,
    RENDERING,
    RUNNING,
    Attempt,
    Blocklist,
    Chunk,
    Task,
    Worker,
)
from dispatcher import stats, steps, tasks
from dispatcher.context import Context
from dispatcher.leases import free_worker, requeue
from dispatcher.workers import worker_named

log = logging.getLogger("dispatcher.chunks")
MAX_FILES = 10_000
ChunkReport = messages.ChunkStarted | messages.ChunkProgress | messages.ChunkFinished


def current_chunk(ctx: Context, msg: ChunkReport) -> Chunk | None:
    """The chunk a report is about, if the report's lease is still the live one."""
    chunk = Chunk.get_or_none(Chunk.id == msg.chunk_id)
    if chunk is None or chunk.lease_id != msg.lease_id or chunk.status in CHUNK_FINAL:
        log.info("chunk %s: stale %s from %s (lease %s); telling it to stop",
                 msg.chunk_id, msg.kind, msg.agent, msg.lease_id)
        if not isinstance(msg, messages.ChunkFinished):
            ctx.send(messages.ControlAbort(chunk_id=msg.chunk_id, lease_id=msg.lease_id,
                                           reason="stale lease"), msg.agent)
        return None
    return chunk


def on_started(ctx: Context, msg: messages.ChunkStarted) -> None:
    chunk = current_chunk(ctx, msg)
    if chunk is None:
        return
    worker = worker_named(ctx, msg.agent)
    if chunk.status == RUNNING:
        if chunk.worker_id != worker.id:
            # The same delivery reached a second agent (the first died before its ack).
            ctx.send(messages.ControlAbort(chunk_id=chunk.id, lease_id=msg.lease_id,
                                           reason="chunk already running elsewhere"), msg.agent)
        return
    mark_running(ctx, chunk, worker)


def mark_running(ctx: Context, chunk: Chunk, worker: Worker) -> None:
    now = ctx.clock()
    stats.chunk_started(chunk, chunk.task, now)
    Chunk.update(status=RUNNING, worker=worker.id, started_at=now).where(Chunk.id == chunk.id).execute()
    chunk.status, chunk.worker = RUNNING, worker
    Attempt.insert(chunk=chunk.id, number=chunk.attempts, lease_id=chunk.lease_id, worker=worker.id,
                   started_at=now, outcome=RUNNING).on_conflict_ignore().execute()
    task = chunk.task
    changes = {Task.worker: worker.id, Task.waiting_reason: ""}
    if task.status == QUEUED:
        changes[Task.status] = RENDERING
        log.info("task %s: queued -> rendering", task.id)
    if task.started_at is None:
        changes[Task.started_at] = now
    Task.update(changes).where(Task.id == task.id).execute()
    activity = f"task {task.id} chunk {chunk.index} frames {framelib.format_ranges(chunk.frames)}"
    Worker.update(current_task=task.id, current_chunk=chunk.id, current_lease=chunk.lease_id,
                  activity=activity).where(Worker.id == worker.id).execute()
    log.info("chunk %s (task %s #%s): released -> running on %s, attempt %s",
             chunk.id, task.id, chunk.index, worker.name, chunk.attempts)


def on_progress(ctx: Context, msg: messages.ChunkProgress) -> None:
    chunk = current_chunk(ctx, msg)
    if chunk is None:
        return
    if chunk.status == RELEASED:
        mark_running(ctx, chunk, worker_named(ctx, msg.agent))
    record_frames(chunk, msg.frames_done, msg.files, msg.log_tail)


def record_frames(chunk: Chunk, frames_done: list[int], files: list[str], log_tail: str) -> None:
    """Merge reported frames into the chunk and move the task's counters by the difference."""
    wanted = set(framelib.expand(chunk.frames))
    old = set(chunk.frames_done)
    new = old | (set(frames_done) & wanted)
    merged_files = list(dict.fromkeys(chunk.files + files))[:MAX_FILES]
    Chunk.update(frames_done=sorted(new), files=merged_files, log_tail=log_tail or chunk.log_tail).where(
        Chunk.id == chunk.id).execute()
    chunk.frames_done = sorted(new)
    added = len(new) - len(old)
    if added:
        task = chunk.task
        top = max(new)
        changes = {Task.frames_done: Task.frames_done + added}
        if task.frame_current is None or top > task.frame_current:
            changes[Task.frame_current] = top
        Task.update(changes).where(Task.id == task.id).execute()


def on_finished(ctx: Context, msg: messages.ChunkFinished) -> None:
    _close_attempt(msg)
    # The agent no longer holds the lease, whether or not it is still the chunk's (a canceled task).
    sender = Worker.get_or_none(Worker.name == msg.agent)
    if sender is not None:
        free_worker(ctx, sender, msg.lease_id)
    chunk = current_chunk(ctx, msg)
    if chunk is None:
        return
    worker = sender or worker_named(ctx, msg.agent)
    if chunk.status == RELEASED and msg.outcome in (COMPLETED, FAILED):
        mark_running(ctx, chunk, worker)
        _close_attempt(msg)
    stats.chunk_finished(chunk, msg.outcome, ctx.clock())
    if msg.outcome == COMPLETED:
        complete(ctx, chunk, msg)
    elif msg.outcome == FAILED:
        fail_attempt(ctx, chunk, msg.reason or "failed", msg.log_tail)
    else:  # declined or canceled by the agent: hand back without blame
        log.info("chunk %s: %s by %s (%s)", chunk.id, msg.outcome, msg.agent, msg.reason)
        requeue(ctx, chunk)


def _close_attempt(msg: messages.ChunkFinished) -> None:
    Attempt.update(outcome=msg.outcome, finished_at=msg.finished_at, exit_code=msg.exit_code,
                   reason=msg.reason[:2000], log_tail=msg.log_tail).where(
        Attempt.lease_id == msg.lease_id).execute()


def count_failure(ctx: Context, task: Task, worker_id: int) -> None:
    """Count a worker's failure on a task; at the task's threshold it is blocklisted."""
    entry, _ = Blocklist.get_or_create(task=task.id, worker=worker_id)
    failures = entry.failures + 1
    blocked_at = entry.blocked_at
    if blocked_at is None and failures >= task.blocklist_threshold > 0:
        blocked_at = ctx.clock()
        log.warning("task %s: worker %s blocklisted after %d failed chunks", task.id, worker_id, failures)
    Blocklist.update(failures=failures, blocked_at=blocked_at).where(Blocklist.id == entry.id).execute()


def complete(ctx: Context, chunk: Chunk, msg: messages.ChunkFinished) -> None:
    record_frames(chunk, msg.frames_done, msg.files, msg.log_tail)
    Chunk.update(status=COMPLETED, finished_at=msg.finished_at, lease_id=None).where(
        Chunk.id == chunk.id).execute()
    log.info("chunk %s (task %s #%s): running -> completed", chunk.id, chunk.task.id, chunk.index)
    tasks.after_chunk_completed(ctx, Task.get_by_id(chunk.task.id), chunk)


def fail_attempt(ctx: Context, chunk: Chunk, reason: str, log_tail: str) -> None:
    """Count a failure: retry the chunk, or fail it and its task when out of retries."""
    failures = chunk.failures + 1
    task = Task.get_by_id(chunk.task.id)
    Chunk.update(failures=failures, error=reason[:2000], log_tail=log_tail).where(
        Chunk.id == chunk.id).execute()
    chunk.failures = failures
    if chunk.worker_id is not None:
        count_failure(ctx, task, chunk.worker_id)
    retries = steps.max_retries(ctx, task, chunk)
    if failures > retries:
        Chunk.update(status=FAILED, finished_at=ctx.clock(), lease_id=None).where(
            Chunk.id == chunk.id).execute()
        frames = framelib.format_ranges(chunk.frames) or "none"
        tasks.fail_task(ctx, task, f"chunk {chunk.index} (frames {frames}) failed "
                                   f"{failures} times; last: {reason}")
        return
    log.warning("chunk %s (task %s #%s): attempt failed (%s); retry %d of %d",
                chunk.id, task.id, chunk.index, reason, failures, retries)
    requeue(ctx, chunk)
