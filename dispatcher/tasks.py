"""Task state: compiling submitted tasks, priority, pause/resume, cancel, completion."""
from __future__ import annotations

import dataclasses
import itertools
import json
import logging
from collections.abc import Iterable, Iterator

import psycopg2.extras
from peewee import PostgresqlDatabase

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
from dispatcher.compilers import ChunkSpec, compile_task
from dispatcher.context import Context
from dispatcher.release import waiting_reasons

log = logging.getLogger("dispatcher.tasks")
# Every chunk status but completed, listed so the (task, status) index can answer.
NOT_COMPLETED = (BLOCKED, PENDING, RELEASED, RUNNING, FAILED, CANCELED)
# Chunks compiled in the burst that brings task.submitted: every event of the burst waits for them.
SUBMIT_WINDOW = 1_000
# Chunks per compile_some call, between bursts: about a tenth of a second of the loop.
WINDOW = 20_000
COMPILE_BATCH = 100  # tasks compile_some looks at per call


def on_submitted(ctx: Context, msg: messages.TaskSubmitted) -> None:
    """Compile the task's first chunks in this burst: most tasks are done here, in one transaction."""
    task = Task.get_or_none(Task.id == msg.task_id)
    if task is None:
        log.warning("task %s: submitted but not in the database; ignoring", msg.task_id)
        return
    compile_window(ctx, task, SUBMIT_WINDOW)
    if not task.compiled:
        ctx.compile_wanted = True


def compile_some(ctx: Context, budget: int = WINDOW) -> bool:
    """Compile up to ``budget`` more chunks of the tasks still compiling; whether any may remain.

    The dispatcher loop calls it in a transaction of its own between bursts, so a
    huge task compiles a window at a time without holding up the farm's events.
    The least compiled task goes first: a small task is not queued behind a huge one.
    """
    if not ctx.compile_wanted:
        return False
    waiting = list(Task.select().where(~Task.compiled, Task.status.not_in(TASK_FINAL))
                   .order_by(Task.compiled_upto, Task.id).limit(COMPILE_BATCH))
    for task in waiting:
        if budget <= 0:
            return True
        budget -= compile_window(ctx, task, budget)
    if len(waiting) == COMPILE_BATCH:
        return True
    # Nothing else is compiling: forget the generators of tasks canceled or deleted half compiled.
    for task_id in set(ctx.compiles) - {t.id for t in waiting if not t.compiled}:
        del ctx.compiles[task_id]
    ctx.compile_wanted = any(not t.compiled for t in waiting)
    return ctx.compile_wanted


def sweep_uncompiled(ctx: Context) -> bool:
    """The safety net: compile tasks whose ``task.submitted`` never arrived, a window per sweep."""
    ctx.compile_wanted = True
    return compile_some(ctx)


@dataclasses.dataclass
class Compiling:
    """A task's compile in progress: its chunk generator, and how many chunks it has given."""

    specs: Iterator[ChunkSpec]
    upto: int
    ahead: list[ChunkSpec] = dataclasses.field(default_factory=list)  # read past the last window

    def take(self, n: int) -> tuple[list[ChunkSpec], bool]:
        """The next ``n`` chunks (or fewer), and whether they are the task's last.

        One chunk more is read to tell, and kept for the next window.
        """
        window = self.ahead + list(itertools.islice(self.specs, n + 1 - len(self.ahead)))
        self.ahead = window[n:]
        del window[n:]
        return window, not self.ahead


def compile_window(ctx: Context, task: Task, budget: int) -> int:
    """Insert the task's next ``budget`` chunks; mark it compiled with its last. Return how many.

    Resumable and exactly once: ``compiled_upto`` (how many chunks are in the
    database) is written in the same transaction as those chunks, and a window
    starts from it, so a window that rolls back, a redelivered ``task.submitted``
    or a new leader goes on where the last commit ended.
    """
    if task.compiled or task.status in TASK_FINAL:
        return 0
    try:
        window, last = _compiling(ctx, task).take(budget)
    except (CorralError, KeyError, TypeError, ValueError) as exc:
        ctx.compiles.pop(task.id, None)
        fail_task(ctx, task, f"cannot compile task: {exc}")
        return 0
    insert_chunks(task, window)
    task.compiled_upto += len(window)
    task.compiled = last
    Task.update(compiled_upto=task.compiled_upto, compiled=task.compiled).where(Task.id == task.id).execute()
    if task.compiled:
        ctx.compiles.pop(task.id, None)
        log.info("task %s: compiled into %d chunks", task.id, task.compiled_upto)
        ctx.wake_release()
    else:
        ctx.compiles[task.id].upto = task.compiled_upto
    return len(window)


def _compiling(ctx: Context, task: Task) -> Compiling:
    """The task's chunk generator, positioned at ``compiled_upto``.

    The one kept from the last window is used only if it stopped where the
    database says; otherwise (a rollback, another leader's windows) the task is
    compiled again from the start and the chunks already inserted are skipped:
    the compiler gives the same chunks for the same settings.
    """
    held = ctx.compiles.get(task.id)
    if held is None or held.upto != task.compiled_upto:
        specs = compile_task(task.type, task.settings, ctx.config.job_types_dir)
        held = ctx.compiles[task.id] = Compiling(itertools.islice(specs, task.compiled_upto, None),
                                                 task.compiled_upto)
    return held


def insert_chunks(task: Task, specs: Iterable[ChunkSpec]) -> None:
    """Insert compiled chunks with one prepared statement; the columns every new chunk shares
    are literals in it, so a row carries only what differs.

    psycopg2's ``executemany`` sends one statement per row (a round trip each: 0.2 ms per
    chunk); on PostgreSQL the rows go as multi-row VALUES, a thousand per statement.
    """
    db = database_proxy.obj
    if isinstance(db, PostgresqlDatabase):
        values = _INSERT_VALUES.replace("?", "%s")
        psycopg2.extras.execute_values(db.cursor(), _INSERT_INTO + " VALUES %s", _rows(task, specs),
                                       template=values, page_size=1000)
    else:
        db.cursor().executemany(f"{_INSERT_INTO} VALUES {_INSERT_VALUES}", _rows(task, specs))


_INSERT_INTO = ('INSERT INTO "chunks" ("task_id", "index", "command", "parser", "params", "frames", '
                '"frame_count", "depends_on", "status", "priority", "step", "frames_done", "files", '
                '"attempts", "failures", "log_tail", "error")')
_INSERT_VALUES = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '[]', '[]', 0, 0, '', '')"


def _rows(task: Task, specs: Iterable[ChunkSpec]) -> Iterator[tuple]:
    """One row per chunk. The chunks of a step share one params dict and one dependency tuple, so
    each is encoded once per step, not once per chunk (``last``: the object and its JSON)."""
    task_id, priority = task.id, task.priority
    last: dict[str, tuple[object, str]] = {"params": (None, ""), "depends": (None, "")}
    for index, command, frames, params, parser, depends_on, step in specs:
        if params is not last["params"][0]:
            last["params"] = (params, _dump(params))
        if depends_on is not last["depends"][0]:
            last["depends"] = (depends_on, _dump(depends_on))
        frames_text, count = _frames_json(frames)
        yield (task_id, index, command, parser, last["params"][1], frames_text, count, last["depends"][1],
               BLOCKED if depends_on else PENDING, priority, step)


_dump = json.JSONEncoder(separators=(",", ":")).encode


def _frames_json(ranges: framelib.Ranges) -> tuple[str, int]:
    """A chunk's frames as JSON, and how many: most chunks are one range, written without the encoder."""
    if len(ranges) == 1:
        first, last = ranges[0]
        return f"[[{first},{last}]]", last - first + 1
    return "[" + ",".join(f"[{a},{b}]" for a, b in ranges) + "]", framelib.count(ranges)


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
