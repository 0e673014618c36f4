"""Releasing chunks to the broker: in priority order, a bounded number at a time.

Per chunk queue (pool, command) the dispatcher keeps at most
``idle eligible agents + release_ahead`` chunks published but not yet started.
The rest wait in the database, where priority changes still apply. That is
what makes priorities hold on kombu's ``memory://`` transport (no broker
priorities) and keeps the broker's queues short for huge tasks on RabbitMQ.
"""
from __future__ import annotations

import collections
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
    Chunk,
    Task,
    Worker,
    database_proxy,
)
from dispatcher.context import Context

log = logging.getLogger("dispatcher.release")
ACTIVE = (QUEUED, RENDERING)


def release(ctx: Context, publisher: Publisher) -> int:
    """Publish as many pending chunks as the queues have room for; return how many."""
    online = list(Worker.select().where(Worker.connection == ONLINE))
    workers = [w for w in online if w.status == ENABLED]
    disabled = sorted(w.name for w in online if w.status == DISABLED)
    released = dict(
        ((pool, command), n) for pool, command, n in
        Chunk.select(Task.pool, Chunk.command, fn.COUNT(Chunk.id)).join(Task)
        .where(Chunk.status == RELEASED).group_by(Task.pool, Chunk.command).tuples())
    groups = (Chunk.select(Task.pool, Chunk.command).join(Task)
              .where(Chunk.status == PENDING, Task.status.in_(ACTIVE)).distinct().tuples())
    total = 0
    for pool, command in list(groups):
        eligible = [w for w in workers if pool in w.pools and command in w.commands]
        idle = sum(1 for w in eligible if w.current_lease is None)
        room = idle + ctx.config.release_ahead - released.get((pool, command), 0)
        if eligible and room > 0:
            total += _release_group(ctx, publisher, pool, command, room, eligible, disabled)
    return total


def _release_group(ctx: Context, publisher: Publisher, pool: str, command: str, room: int,
                   eligible: list[Worker], disabled: list[str]) -> int:
    chunks = (Chunk.select(Chunk, Task).join(Task)
              .where(Chunk.status == PENDING, Chunk.command == command, Task.pool == pool,
                     Task.status.in_(ACTIVE))
              .order_by(Chunk.priority.desc(), Chunk.task, Chunk.index).limit(room))
    count = 0
    for chunk in list(chunks):
        exclude = disabled + _failed_on(chunk, eligible)
        if _release_one(ctx, publisher, chunk, pool, exclude):
            count += 1
    return count


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
        ), pool, chunk.priority)
    log.debug("chunk %s (task %s #%s): pending -> released, lease %s", chunk.id, task.id, chunk.index, lease)
    return True


def waiting_without_agents() -> dict[tuple[str, str], int]:
    """Pending chunks per (pool, command) that no online enabled agent can take."""
    workers = list(Worker.select().where(Worker.connection == ONLINE, Worker.status == ENABLED))
    counts: dict[tuple[str, str], int] = collections.Counter()
    rows = (Chunk.select(Task.pool, Chunk.command, fn.COUNT(Chunk.id)).join(Task)
            .where(Chunk.status == PENDING, Task.status.in_(ACTIVE))
            .group_by(Task.pool, Chunk.command).tuples())
    for pool, command, n in rows:
        if not any(pool in w.pools and command in w.commands for w in workers):
            counts[(pool, command)] = n
    return counts
