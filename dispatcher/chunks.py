"""Chunk state: applying agents' started, progress and finished reports.

Every report names the lease it is about. A report whose lease is not the
chunk's current lease is stale (an earlier delivery of the chunk, or an agent
presumed dead) and changes nothing but the history of its own attempt. Reports
are cumulative, so applying one twice changes nothing either.
"""
from __future__ import annotations

import dataclasses
import json
import logging

from common import frames as framelib
from common import messages
from common.models import (
    BLOCKED,
    CHUNK_FINAL,
    COMPLETED,
    FAILED,
    QUEUED,
    RELEASED,
    RENDERING,
    RUNNING,
    Blocklist,
    Chunk,
    Task,
)
from dispatcher import sql, stats, steps, tasks
from dispatcher.context import Context, Refused
from dispatcher.leases import free_worker, requeue
from dispatcher.workers import known_worker_id, worker_id

log = logging.getLogger("dispatcher.chunks")
MAX_FILES = 10_000
ChunkReport = messages.ChunkStarted | messages.ChunkProgress | messages.ChunkFinished
_dump = json.JSONEncoder(separators=(",", ":")).encode

# The hot path (started, progress, completed) is hand-written SQL: a handful of
# statements per event and no query building. Rare paths (failures, hand-backs)
# load the peewee model and share the code in leases.py and tasks.py.
_LIVE = ('SELECT c.id, c.task_id, c."index", c.status, c.lease_id, c.worker_id, c.attempts, c.frames, '
         "c.frames_done, c.files, c.log_tail, c.command, c.released_at, c.started_at, c.step, t.pool, "
         "t.created_at, t.type, t.status "
         "FROM chunks c JOIN tasks t ON t.id = c.task_id WHERE c.id = ?")
_START_CHUNK = "UPDATE chunks SET status = ?, worker_id = ?, started_at = ? WHERE id = ?"
_START_ATTEMPT = ("INSERT INTO attempts (chunk_id, number, lease_id, worker_id, outcome, started_at, reason, "
                  "log_tail) VALUES (?, ?, ?, ?, ?, ?, '', '') ON CONFLICT DO NOTHING")
_TASK_RENDERING = "UPDATE tasks SET status = ? WHERE id = ? AND status = ?"
_WORKER_BUSY = ("UPDATE workers SET current_task = ?, current_chunk = ?, current_lease = ?, activity = ? "
                "WHERE id = ?")
_FRAMES = "UPDATE chunks SET frames_done = ?, files = ?, log_tail = ? WHERE id = ?"
_COMPLETED = ("UPDATE chunks SET frames_done = ?, files = ?, log_tail = ?, status = ?, finished_at = ?, "
              "lease_id = NULL WHERE id = ?")
# A chunk that ended before any chunk.started: its attempt and its final row in one statement each.
_ENDED_ATTEMPT = ("INSERT INTO attempts (chunk_id, number, lease_id, worker_id, outcome, started_at, "
                  "finished_at, exit_code, reason, log_tail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                  "ON CONFLICT DO NOTHING")
_ENDED_CHUNK = ("UPDATE chunks SET status = ?, worker_id = ?, started_at = ?, finished_at = ?, "
                "frames_done = ?, files = ?, log_tail = ?, lease_id = NULL WHERE id = ?")
_ATTEMPT_ENDED = ("UPDATE attempts SET outcome = ?, finished_at = ?, exit_code = ?, reason = ?, log_tail = ? "
                  "WHERE lease_id = ?")
_HAS_BLOCKED = "SELECT 1 FROM chunks WHERE task_id = ? AND status = ? LIMIT 1"
_OPEN = ", ".join("?" * len(tasks.NOT_COMPLETED))
_TASK_DONE = ("UPDATE tasks SET status = ?, finished_at = ? WHERE id = ? AND NOT EXISTS "
              f"(SELECT 1 FROM chunks WHERE task_id = ? AND status IN ({_OPEN}))")


@dataclasses.dataclass(frozen=True)
class TaskRef:
    """What the metrics and the step lookup read of a chunk's task."""

    id: int
    pool: str
    created_at: float
    type: str


@dataclasses.dataclass
class LiveChunk:
    """The columns of a chunk the hot path reads; JSON columns stay text until needed."""

    id: int
    task_id: int
    index: int
    status: str
    lease_id: str | None
    worker_id: int | None
    attempts: int
    frames: str
    frames_done: str
    files: str
    log_tail: str
    command: str
    released_at: float | None
    started_at: float | None
    step: str
    task_pool: str
    task_created_at: float
    task_type: str
    task_status: str

    @property
    def task(self) -> TaskRef:
        """What the metrics (dispatcher/stats.py) read of the chunk's task."""
        return TaskRef(self.task_id, self.task_pool, self.task_created_at, self.task_type)

    def model(self) -> Chunk:
        """The full peewee row, for the rare paths."""
        return Chunk.get_by_id(self.id)


def load(msg: ChunkReport) -> LiveChunk | None:
    """The chunk a report names, whatever its lease."""
    row = sql.one(_LIVE, (msg.chunk_id,))
    return LiveChunk(*row) if row is not None else None


def current_chunk(ctx: Context, msg: ChunkReport, chunk: LiveChunk | None = None) -> LiveChunk | None:
    """The chunk a report is about, if the report's lease is still the live one."""
    if chunk is None:
        chunk = load(msg)
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
    worker = worker_id(ctx, msg.agent)
    if chunk.status == RUNNING:
        if chunk.worker_id != worker:
            # The same delivery reached a second agent (the first died before its ack).
            ctx.send(messages.ControlAbort(chunk_id=chunk.id, lease_id=msg.lease_id,
                                           reason="chunk already running elsewhere"), msg.agent)
        return
    mark_running(ctx, chunk, worker, msg.agent)


def task_started(ctx: Context, chunk: LiveChunk, worker: int, now: float) -> None:
    """The chunk's task is rendering (said at once, it is rare) and was last worked on by ``worker``."""
    if chunk.task_status == QUEUED and sql.changed(_TASK_RENDERING, (RENDERING, chunk.task_id, QUEUED)):
        log.info("task %s: queued -> rendering", chunk.task_id)
    chunk.task_status = RENDERING
    ctx.task_delta(chunk.task_id).started(worker, now)


def mark_running(ctx: Context, chunk: LiveChunk, worker: int, agent: str, started_at: float | None = None,
                 busy: bool = True) -> None:
    """Open the chunk's attempt on ``worker``; ``busy=False`` when the report that opens it also ends it."""
    now = ctx.clock() if started_at is None else started_at
    stats.chunk_started(ctx, chunk, chunk.task, now)
    sql.execute(_START_CHUNK, (RUNNING, worker, now, chunk.id))
    chunk.status, chunk.worker_id, chunk.started_at = RUNNING, worker, now
    sql.execute(_START_ATTEMPT, (chunk.id, chunk.attempts, chunk.lease_id, worker, RUNNING, now))
    task_started(ctx, chunk, worker, now)
    if not busy:
        return
    frames = framelib.format_ranges(json.loads(chunk.frames))
    activity = f"task {chunk.task_id} chunk {chunk.index} frames {frames}"
    sql.execute(_WORKER_BUSY, (chunk.task_id, chunk.id, chunk.lease_id, activity, worker))
    log.info("chunk %s (task %s #%s): released -> running on %s, attempt %s",
             chunk.id, chunk.task_id, chunk.index, agent, chunk.attempts)


_OWNER = ("SELECT w.name FROM attempts a JOIN workers w ON w.id = a.worker_id "
          "WHERE a.lease_id = ?")
_NAME = "SELECT name FROM workers WHERE id = ?"


def check_owner(ctx: Context, msg: ChunkReport, chunk: LiveChunk | None) -> None:
    """Refuse a report on an attempt another agent runs (the verifier's rule, dispatcher/identity.py).

    Checked here, inside the transaction, so it sees the attempts an earlier
    chunk.started of the same burst opened. For a report on the live lease the
    chunk row answers (a released chunk has no attempt yet; a running one is its
    worker's); only reports on other leases look the attempt up.
    """
    if ctx.config.insecure_agents:
        return
    if chunk is not None and chunk.lease_id == msg.lease_id and chunk.status in (RELEASED, RUNNING):
        if chunk.status == RELEASED or chunk.worker_id == known_worker_id(ctx, msg.agent):
            return
        row = sql.one(_NAME, (chunk.worker_id,))
    else:
        row = sql.one(_OWNER, (msg.lease_id,))
    if row is not None and row[0] != msg.agent:
        raise Refused(f"agent {msg.agent!r} reports on chunk {msg.chunk_id}, which agent {row[0]!r} runs")


def on_progress(ctx: Context, msg: messages.ChunkProgress) -> None:
    loaded = load(msg)
    check_owner(ctx, msg, loaded)
    chunk = current_chunk(ctx, msg, loaded)
    if chunk is None:
        return
    if chunk.status == RELEASED:
        mark_running(ctx, chunk, worker_id(ctx, msg.agent), msg.agent)
    done, files, added = _merge(chunk, msg.frames_done, msg.files)
    sql.execute(_FRAMES, (done, files, msg.log_tail or chunk.log_tail, chunk.id))
    _count_frames(ctx, chunk, added)


def _merge(chunk: LiveChunk, frames_done: list[int], files: list[str]) -> tuple[str, str, list[int]]:
    """The chunk's frames and files with a report merged in (as JSON), and the frames it adds."""
    wanted = set(framelib.expand(json.loads(chunk.frames)))
    old = set(json.loads(chunk.frames_done))
    added = sorted((set(frames_done) & wanted) - old)
    done = _dump(sorted(old.union(added))) if added else chunk.frames_done
    merged = _dump(list(dict.fromkeys(json.loads(chunk.files) + files))[:MAX_FILES]) if files else chunk.files
    return done, merged, added


def _count_frames(ctx: Context, chunk: LiveChunk, added: list[int]) -> None:
    """Move the task's counters by the frames a report added (written once per task per burst)."""
    if added:
        ctx.task_delta(chunk.task_id).frames(len(added), added[-1])


def on_finished(ctx: Context, msg: messages.ChunkFinished) -> None:
    loaded = load(msg)
    check_owner(ctx, msg, loaded)
    chunk = current_chunk(ctx, msg, loaded)
    if chunk is not None and chunk.status == RELEASED and msg.outcome == COMPLETED:
        # No chunk.started came first (the agent folded it into this report, or it was lost).
        finish_unstarted(ctx, chunk, msg)
        return
    ended = (msg.outcome, msg.finished_at, msg.exit_code, msg.reason[:2000], msg.log_tail, msg.lease_id)
    if chunk is not None and chunk.status == RELEASED and msg.outcome == FAILED:
        # Open the attempt this report ends. The worker was never busy with it.
        mark_running(ctx, chunk, worker_id(ctx, msg.agent), msg.agent,
                     started_at=msg.started_at if msg.started_at is not None else msg.finished_at, busy=False)
    sql.execute(_ATTEMPT_ENDED, ended)
    # The agent no longer holds the lease, whether or not it is still the chunk's (a canceled task).
    sender = known_worker_id(ctx, msg.agent)
    if sender is not None:
        free_worker(ctx, sender, msg.lease_id)
    if chunk is None:
        return
    stats.chunk_finished(ctx, chunk, msg.outcome, ctx.clock())
    if msg.outcome == COMPLETED:
        complete(ctx, chunk, msg)
    elif msg.outcome == FAILED:
        fail_attempt(ctx, chunk.model(), msg.reason or "failed", msg.log_tail)
    else:  # declined or canceled by the agent: hand back without blame
        log.info("chunk %s: %s by %s (%s)", chunk.id, msg.outcome, msg.agent, msg.reason)
        requeue(ctx, chunk.model())


def finish_unstarted(ctx: Context, chunk: LiveChunk, msg: messages.ChunkFinished) -> None:
    """A released chunk whose one report says it ran and completed: open and end its attempt at once.

    The hot path of chunks shorter than a confirm round trip: two statements for
    the chunk, the task's counters added to the burst's (``Context.task_delta``).
    The worker was never marked busy with it, so there is nothing to free.
    """
    worker = worker_id(ctx, msg.agent)
    started = msg.started_at if msg.started_at is not None else msg.finished_at
    stats.chunk_started(ctx, chunk, chunk.task, started)
    sql.execute(_ENDED_ATTEMPT, (chunk.id, chunk.attempts, chunk.lease_id, worker, COMPLETED, started,
                                 msg.finished_at, msg.exit_code, msg.reason[:2000], msg.log_tail))
    done, files, added = _merge(chunk, msg.frames_done, msg.files)
    sql.execute(_ENDED_CHUNK, (COMPLETED, worker, started, msg.finished_at, done, files,
                               msg.log_tail or chunk.log_tail, chunk.id))
    chunk.status, chunk.worker_id, chunk.started_at = COMPLETED, worker, started
    task_started(ctx, chunk, worker, started)
    _count_frames(ctx, chunk, added)
    stats.chunk_finished(ctx, chunk, COMPLETED, ctx.clock())
    log.info("chunk %s (task %s #%s): released -> completed on %s, attempt %s", chunk.id, chunk.task_id,
             chunk.index, msg.agent, chunk.attempts)
    ctx.wake_release()  # the agent is free for its next chunk
    after_completed(ctx, chunk)


def count_failure(ctx: Context, task: Task, worker_id: int) -> None:
    """Count a worker's failure on a task; at the task's threshold it is blocklisted."""
    entry, _ = Blocklist.get_or_create(task=task.id, worker=worker_id)
    failures = entry.failures + 1
    blocked_at = entry.blocked_at
    if blocked_at is None and failures >= task.blocklist_threshold > 0:
        blocked_at = ctx.clock()
        log.warning("task %s: worker %s blocklisted after %d failed chunks", task.id, worker_id, failures)
    Blocklist.update(failures=failures, blocked_at=blocked_at).where(Blocklist.id == entry.id).execute()


def complete(ctx: Context, chunk: LiveChunk, msg: messages.ChunkFinished) -> None:
    done, files, added = _merge(chunk, msg.frames_done, msg.files)
    tail = msg.log_tail or chunk.log_tail
    sql.execute(_COMPLETED, (done, files, tail, COMPLETED, msg.finished_at, chunk.id))
    _count_frames(ctx, chunk, added)
    log.info("chunk %s (task %s #%s): running -> completed", chunk.id, chunk.task_id, chunk.index)
    after_completed(ctx, chunk)


def after_completed(ctx: Context, chunk: LiveChunk) -> None:
    """A chunk completed: adaptive sizing now; its task's dependents and completion once per burst."""
    step = steps.step_of(ctx, chunk.task, chunk)  # type: ignore[arg-type]
    if step is not None and step.chunk_target_s is not None:
        flush_tasks(ctx)  # the general path reads and writes the task's rows itself
        tasks.after_chunk_completed(ctx, Task.get_by_id(chunk.task_id), chunk.model())
    else:
        ctx.finishing.add(chunk.task_id)


_TASK_DELTA = ("UPDATE tasks SET frames_done = frames_done + ?, "
               "frame_current = CASE WHEN ? IS NULL THEN frame_current "
               "WHEN frame_current IS NULL OR frame_current < ? THEN ? ELSE frame_current END, "
               "worker_id = COALESCE(?, worker_id), "
               "waiting_reason = CASE WHEN ? IS NULL THEN waiting_reason ELSE '' END, "
               "started_at = COALESCE(started_at, ?) WHERE id = ?")


def flush_tasks(ctx: Context) -> None:
    """Write what the events so far did to their tasks: one UPDATE per task, then completion checks.

    Called by the burst's transaction after its events (before releasing) and
    before anything that reads task rows itself (``Applier``).
    """
    deltas, ctx.deltas = ctx.deltas, {}
    for task_id, d in deltas.items():
        sql.execute(_TASK_DELTA, (d.frames_done, d.top, d.top, d.top, d.worker, d.worker, d.started_at,
                                  task_id))
    finishing, ctx.finishing = ctx.finishing, set()
    for task_id in sorted(finishing):
        if sql.one(_HAS_BLOCKED, (task_id, BLOCKED)):
            # Waiting dependents: the general path unblocks them.
            tasks.after_chunk_completed(ctx, Task.get_by_id(task_id), None)
        elif sql.changed(_TASK_DONE, (COMPLETED, ctx.clock(), task_id, task_id, *tasks.NOT_COMPLETED)):
            log.info("task %s: -> completed", task_id)


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
