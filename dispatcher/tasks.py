"""Task state: compiling submitted tasks, priority, pause/resume, cancel, completion."""
from __future__ import annotations

import itertools
import json
import logging

from common import frames as framelib
from common import messages
from common.errors import CorralError
from common.models import (
    BLOCKED,
    CANCELED,
    CHUNK_FINAL,
    COMPLETED,
    FAILED,
    PAUSED,
    PENDING,
    QUEUED,
    RELEASED,
    RENDERING,
    RUNNING,
    TASK_FINAL,
    Attempt,
    Blocklist,
    Chunk,
    Task,
    database_proxy,
)
from dispatcher import adaptive, changes
from dispatcher.compilers import compile_task
from dispatcher.context import Context
from dispatcher.release import waiting_reasons

log = logging.getLogger("dispatcher.tasks")
# Every chunk status but completed, listed so the (task, status) index can answer.
NOT_COMPLETED = (BLOCKED, PENDING, RELEASED, RUNNING, FAILED, CANCELED)


def on_submitted(ctx: Context, msg: messages.TaskSubmitted) -> None:
    task = Task.get_or_none(Task.id == msg.task_id)
    if task is None:
        log.warning("task %s: submitted but not in the database; ignoring", msg.task_id)
        return
    compile_into_chunks(ctx, task)


def compile_into_chunks(ctx: Context, task: Task) -> None:
    """Compile a recorded task into chunk rows, exactly once."""
    if task.compiled or task.status in TASK_FINAL:
        return
    try:
        specs = compile_task(task.type, task.settings, ctx.config.job_types_dir)
    except (CorralError, KeyError, TypeError, ValueError) as exc:
        fail_task(ctx, task, f"cannot compile task: {exc}")
        return
    insert_chunks(task, specs)
    Task.update(compiled=True).where(Task.id == task.id).execute()
    log.info("task %s: compiled into %d chunks", task.id, len(specs))
    ctx.wake_release()


_CHUNK_COLUMNS = ("task_id", "index", "command", "parser", "params", "frames", "frame_count",
                  "frames_done", "depends_on", "status", "priority", "attempts", "failures", "files",
                  "log_tail", "error", "step")


def insert_chunks(task: Task, specs: list) -> None:
    """Insert compiled chunks with one prepared statement, streamed in slices of 5,000 rows.

    Rows are built as they are inserted (no second copy of a million-chunk task in
    memory), and the JSON of the common shapes (no params, no dependencies, a
    single frame range) is written without the encoder.
    """
    param = database_proxy.obj.param
    columns = ", ".join(f'"{c}"' for c in _CHUNK_COLUMNS)
    sql = (f'INSERT INTO "chunks" ({columns}) '
           f'VALUES ({", ".join([param] * len(_CHUNK_COLUMNS))})')
    dump = json.JSONEncoder(separators=(",", ":")).encode
    rows = ((task.id, spec.index, spec.command, spec.parser, dump(spec.params) if spec.params else "{}",
             _ranges_json(spec.frames), framelib.count(spec.frames), "[]",
             dump(list(spec.depends_on)) if spec.depends_on else "[]",
             BLOCKED if spec.depends_on else PENDING, task.priority, 0, 0, "[]", "", "", spec.step)
            for spec in specs)
    cursor = database_proxy.cursor()
    while True:
        batch = list(itertools.islice(rows, 5000))
        if not batch:
            return
        cursor.executemany(sql, batch)


def _ranges_json(ranges: list) -> str:
    return "[" + ",".join(f"[{int(a)},{int(b)}]" for a, b in ranges) + "]"


def sweep_uncompiled(ctx: Context) -> int:
    """Compile tasks whose ``task.submitted`` message never arrived."""
    tasks = list(Task.select().where(~Task.compiled, Task.status.not_in(TASK_FINAL)).limit(100))
    for task in tasks:
        compile_into_chunks(ctx, task)
    return len(tasks)


def on_update(ctx: Context, msg: messages.TaskUpdate) -> None:
    task = Task.get_or_none(Task.id == msg.task_id)
    if task is None or task.status in TASK_FINAL:
        return
    if msg.priority is not None and msg.priority != task.priority:
        log.info("task %s: priority %s -> %s", task.id, task.priority, msg.priority)
        Task.update(priority=msg.priority).where(Task.id == task.id).execute()
        Chunk.update(priority=msg.priority).where(
            Chunk.task == task.id, Chunk.status.not_in(CHUNK_FINAL)).execute()
    if msg.status == PAUSED and task.status != PAUSED:
        set_status(task, PAUSED)
        ctx.send(messages.ControlHalt(task_id=task.id, action="pause"))
    elif msg.status == QUEUED and task.status == PAUSED:
        started = Chunk.select().where(Chunk.task == task.id, Chunk.started_at.is_null(False)).exists()
        set_status(task, RENDERING if started else QUEUED)
        ctx.send(messages.ControlResume(task_id=task.id))
        ctx.wake_release()


def on_cancel(ctx: Context, msg: messages.TaskCancel) -> None:
    task = Task.get_or_none(Task.id == msg.task_id)
    if task is None or task.status in TASK_FINAL:
        return
    end_task(ctx, task, CANCELED, "canceled by an operator")


def fail_task(ctx: Context, task: Task, error: str) -> None:
    end_task(ctx, task, FAILED, error)


def end_task(ctx: Context, task: Task, status: str, error: str = "") -> None:
    """Finish a task as failed or canceled: no chunk of it runs any more."""
    now = ctx.clock()
    open_chunks = Chunk.select(Chunk.id).where(Chunk.task == task.id, Chunk.status.not_in(CHUNK_FINAL))
    Attempt.update(outcome=CANCELED, finished_at=now).where(
        Attempt.chunk.in_(open_chunks), Attempt.finished_at.is_null()).execute()
    Chunk.update(status=CANCELED, finished_at=now, lease_id=None).where(
        Chunk.task == task.id, Chunk.status.not_in(CHUNK_FINAL)).execute()
    Task.update(status=status, error=error, finished_at=now).where(Task.id == task.id).execute()
    log.info("task %s: %s -> %s%s", task.id, task.status, status, f" ({error})" if error else "")
    ctx.send(messages.ControlHalt(task_id=task.id, action="cancel"))
    ctx.wake_release()


def set_status(task: Task, status: str) -> None:
    log.info("task %s: %s -> %s", task.id, task.status, status)
    Task.update(status=status).where(Task.id == task.id).execute()
    task.status = status


def after_chunk_completed(ctx: Context, task: Task, chunk: Chunk | None) -> None:
    """Unblock chunks that waited for this one; complete the task when all are done.

    ``chunk`` is the one that completed, for adaptive sizing; None when several
    of the task's chunks completed in one burst and only their dependents and
    the task's completion are left to check.
    """
    if chunk is not None:
        adaptive.on_chunk_completed(ctx, task, chunk)
    blocked = list(Chunk.select().where(Chunk.task == task.id, Chunk.status == BLOCKED))
    if blocked:
        done = {c.index for c in Chunk.select(Chunk.index).where(
            Chunk.task == task.id, Chunk.status == COMPLETED)}
        for waiting in blocked:
            if set(waiting.depends_on) <= done:
                Chunk.update(status=PENDING).where(Chunk.id == waiting.id).execute()
                log.info("task %s: chunk %s unblocked", task.id, waiting.index)
                ctx.wake_release()
    remaining = Chunk.select().where(Chunk.task == task.id, Chunk.status.in_(NOT_COMPLETED)).exists()
    if not remaining:
        Task.update(status=COMPLETED, finished_at=ctx.clock()).where(Task.id == task.id).execute()
        log.info("task %s: %s -> completed", task.id, task.status)


def on_blocklist_clear(ctx: Context, msg: messages.TaskBlocklistClear) -> None:
    """Forget a task's blocklist (or one worker's entry): those agents may take its chunks again."""
    query = Blocklist.delete().where(Blocklist.task == msg.task_id)
    if msg.worker_id is not None:
        query = query.where(Blocklist.worker == msg.worker_id)
    cleared = query.execute()
    log.info("task %s: blocklist cleared (%d entries)", msg.task_id, cleared)
    ctx.wake_release()


def update_waiting_reasons(ctx: Context) -> None:
    """Say on each task why its pending chunks cannot be released, and clear it when they can."""
    reasons = waiting_reasons(ctx)
    stale = Task.select(Task.id).where(Task.waiting_reason != "", Task.id.not_in(list(reasons) or [0]))
    for (task_id,) in stale.tuples():
        changes.task(ctx, task_id)
    Task.update(waiting_reason="").where(Task.id.in_(stale)).execute()
    for task_id, reason in reasons.items():
        changed = Task.update(waiting_reason=reason).where(
            Task.id == task_id, Task.waiting_reason != reason).execute()
        if changed:
            changes.task(ctx, task_id)
            log.warning("task %s: %s", task_id, reason)


def on_retry(ctx: Context, msg: messages.TaskRetry) -> None:
    """Run a task's failed chunks again; a failed task also gets back the chunks its failure canceled."""
    task = Task.get_or_none(Task.id == msg.task_id)
    if task is None or task.status in (COMPLETED, CANCELED):
        return
    again = (FAILED, CANCELED) if task.status == FAILED else (FAILED,)
    chunk_ids = [c for (c,) in Chunk.select(Chunk.id).where(
        Chunk.task == task.id, Chunk.status.in_(again)).tuples()]
    if not chunk_ids and task.status != FAILED:
        return
    lost_frames = sum(len(done or []) for (done,) in Chunk.select(Chunk.frames_done).where(
        Chunk.id.in_(chunk_ids)).tuples()) if chunk_ids else 0
    for start in range(0, len(chunk_ids), 500):
        Chunk.update(status=PENDING, failures=0, lease_id=None, worker=None, frames_done=[], files=[],
                     released_at=None, finished_at=None, error="").where(
            Chunk.id.in_(chunk_ids[start:start + 500])).execute()
    _unblock_ready(task)
    update: dict = {Task.frames_done: Task.frames_done - lost_frames}
    if task.status == FAILED:
        started = Chunk.select().where(Chunk.task == task.id, Chunk.started_at.is_null(False)).exists()
        update.update({Task.status: RENDERING if started else QUEUED, Task.error: "", Task.finished_at: None})
        ctx.send(messages.ControlResume(task_id=task.id))
    Task.update(update).where(Task.id == task.id).execute()
    log.info("task %s: retrying %d chunks (%s -> %s)", task.id, len(chunk_ids), task.status,
             update.get(Task.status, task.status))
    ctx.wake_release()


def _unblock_ready(task: Task) -> None:
    """Requeued chunks that depend on unfinished ones wait as blocked, like after compiling."""
    done = {i for (i,) in Chunk.select(Chunk.index).where(
        Chunk.task == task.id, Chunk.status == COMPLETED).tuples()}
    for chunk_id, depends_on in Chunk.select(Chunk.id, Chunk.depends_on).where(
            Chunk.task == task.id, Chunk.status == PENDING).tuples():
        if depends_on and not set(depends_on) <= done:
            Chunk.update(status=BLOCKED).where(Chunk.id == chunk_id).execute()
