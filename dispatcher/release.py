"""Releasing chunks to the broker: in priority order, a bounded number at a time.

Per chunk queue (pool, command) the dispatcher keeps at most
``idle eligible agents + release_ahead`` chunks published but not yet started.
The rest wait in the database, where priority changes still apply. That is
what makes priorities hold on kombu's ``memory://`` transport (no broker
priorities) and keeps the broker's queues short for huge tasks on RabbitMQ.
"""
from __future__ import annotations

import logging
import uuid

from peewee import fn

from common import messages
from common.bus import Publisher
from common.models import (
    DISABLED,
    ENABLED,
    FAILED,
    ONLINE,
    PENDING,
    QUEUED,
    RELEASED,
    RENDERING,
    Attempt,
    Blocklist,
    Chunk,
    Task,
    Worker,
    database_proxy,
)
from dispatcher.context import Context

log = logging.getLogger("dispatcher.release")
ACTIVE = (QUEUED, RENDERING)
SKIP_ALLOWANCE = 20


def release(ctx: Context, publisher: Publisher) -> int:
    """Publish as many pending chunks as the queues have room for; return how many."""
    online = online_workers()
    workers = [w for w in online if w.status == ENABLED]
    disabled = sorted(w.name for w in online if w.status == DISABLED)
    released = dict(
        ((pool, command), n) for pool, command, n in
        Chunk.select(Task.pool, Chunk.command, fn.COUNT(Chunk.id)).join(Task)
        .where(Chunk.status == RELEASED).group_by(Task.pool, Chunk.command).tuples())
    total = 0
    for pool, command in pending_groups(ctx):
        eligible = [w for w in workers if pool in w.pools and command in w.commands]
        idle = sum(1 for w in eligible if w.current_lease is None)
        room = idle + ctx.config.release_ahead - released.get((pool, command), 0)
        if eligible and room > 0:
            total += _release_group(ctx, publisher, pool, command, room, eligible, disabled)
    return total


def online_workers() -> list[Worker]:
    """Online workers with just the columns scheduling needs (no readings to decode)."""
    return list(Worker.select(Worker.id, Worker.name, Worker.status, Worker.pools, Worker.commands,
                              Worker.current_lease).where(Worker.connection == ONLINE))


def pending_by_task(ctx: Context) -> list[tuple[int, str, str]]:
    """(task id, pool, command) for every active task that has pending chunks of that command.

    Asked per active task and command with an indexed EXISTS, so the cost does
    not grow with the number of pending chunks (a 100,000-frame task).
    """
    found = []
    active = Task.select(Task.id, Task.pool).where(Task.status.in_(ACTIVE), Task.compiled).tuples()
    for task_id, pool in active:
        commands = ctx.task_commands.get(task_id)
        if commands is None:
            commands = tuple(c for (c,) in Chunk.select(Chunk.command).where(Chunk.task == task_id)
                             .distinct().tuples())
            ctx.task_commands[task_id] = commands
        for command in commands:
            if Chunk.select().where(Chunk.task == task_id, Chunk.status == PENDING,
                                    Chunk.command == command).exists():
                found.append((task_id, pool, command))
    return found


def pending_groups(ctx: Context) -> list[tuple[str, str]]:
    """The (pool, command) queues that have pending chunks of an active task."""
    return sorted({(pool, command) for _, pool, command in pending_by_task(ctx)})


def _release_group(ctx: Context, publisher: Publisher, pool: str, command: str, room: int,
                   eligible: list[Worker], disabled: list[str]) -> int:
    # Fetch a little more than there is room for: chunks whose every eligible agent is
    # blocklisted for their task are skipped, and the next ones may go instead.
    chunks = (Chunk.select(Chunk, Task).join(Task)
              .where(Chunk.status == PENDING, Chunk.command == command, Task.pool == pool,
                     Task.status.in_(ACTIVE))
              .order_by(Chunk.priority.desc(), Chunk.task, Chunk.index).limit(room + SKIP_ALLOWANCE))
    names = {w.name for w in eligible}
    blocked: dict[int, list[str]] = {}
    count = 0
    for chunk in list(chunks):
        if count >= room:
            break
        task_id = chunk.task.id
        if task_id not in blocked:
            blocked[task_id] = blocked_workers(task_id)
        if names <= set(blocked[task_id]):
            continue  # no eligible agent may take it; tasks.update_waiting_reasons says so
        exclude = sorted(set(disabled) | set(blocked[task_id]) | set(_failed_on(chunk, eligible)))
        if _release_one(ctx, publisher, chunk, pool, exclude):
            count += 1
    return count


def blocked_workers(task_id: int) -> list[str]:
    """Names of the workers blocklisted for a task."""
    return [name for (name,) in Blocklist.select(Worker.name).join(Worker)
            .where(Blocklist.task == task_id, Blocklist.blocked_at.is_null(False)).tuples()]


def _failed_on(chunk: Chunk, eligible: list[Worker]) -> list[str]:
    """Agents this chunk failed on, to skip while another eligible agent exists."""
    if not chunk.failures:
        return []
    names = {name for (name,) in Attempt.select(Worker.name).join(Worker)
             .where(Attempt.chunk == chunk.id, Attempt.outcome == FAILED).tuples()}
    others = [w for w in eligible if w.name not in names]
    return sorted(names) if others else []


def _release_one(ctx: Context, publisher: Publisher, chunk: Chunk, pool: str, exclude: list[str]) -> bool:
    task = chunk.task
    lease = uuid.uuid4().hex
    attempt = chunk.attempts + 1
    with database_proxy.atomic():
        ctx.fence()
        changed = (Chunk.update(status=RELEASED, lease_id=lease, attempts=attempt, worker=None,
                                released_at=ctx.clock())
                   .where(Chunk.id == chunk.id, Chunk.status == PENDING).execute())
        if not changed:
            return False
        # Published inside the transaction: if the broker refuses, nothing is marked released.
        publisher.chunk(messages.ChunkAssign(
            chunk_id=chunk.id, task_id=task.id, lease_id=lease, attempt=attempt,
            command=chunk.command, parser=chunk.parser or task.parser, params=chunk.params,
            frames=chunk.frames, priority=chunk.priority, exclude_agents=exclude,
            stall_timeout_s=task.stall_timeout_s,
        ), pool, chunk.priority)
    log.debug("chunk %s (task %s #%s): pending -> released, lease %s", chunk.id, task.id, chunk.index, lease)
    return True


def waiting_reasons(ctx: Context) -> dict[int, str]:
    """For each active task with pending chunks that no agent may take now: why."""
    workers = [w for w in online_workers() if w.status == ENABLED]
    reasons: dict[int, str] = {}
    for task_id, pool, command in pending_by_task(ctx):
        eligible = {w.name for w in workers if pool in w.pools and command in w.commands}
        if not eligible:
            reasons[task_id] = (f"waiting: no online, enabled agent in pool {pool!r} "
                                f"can run {command!r}")
        elif eligible <= set(blocked_workers(task_id)):
            reasons[task_id] = (f"waiting: every agent in pool {pool!r} that can run {command!r} "
                                f"is blocklisted for this task ({', '.join(sorted(eligible))})")
    return reasons
