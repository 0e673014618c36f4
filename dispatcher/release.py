"""Releasing chunks to the broker: in priority order, a bounded number at a time.

Per chunk queue (pool, command) the dispatcher keeps at most
``idle eligible agents + release_ahead`` chunks published but not yet started.
The rest wait in the database, where priority changes still apply. That is
what makes priorities hold on kombu's ``memory://`` transport (no broker
priorities) and keeps the broker's queues short for huge tasks on RabbitMQ.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import typing
import uuid

from common import messages
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
    Worker,
)
from dispatcher import fleet, sql
from dispatcher.context import Context

log = logging.getLogger("dispatcher.release")
ACTIVE = (QUEUED, RENDERING)
SKIP_ALLOWANCE = 20
# (assignment, pool, task priority): what Publisher.chunk_message takes
Assignment = tuple[messages.ChunkAssign, str, int]


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A pending chunk as the release query reads it (JSON columns still text)."""

    id: int
    task_id: int
    index: int
    command: str
    parser: str | None
    params: str
    frames: str
    priority: int
    attempts: int
    failures: int
    task_parser: str
    stall_timeout_s: int


# Release runs once per burst: its queries are hand-written like the hot handlers' (dispatcher/sql.py).
_RELEASED = ("SELECT t.pool, c.command, COUNT(*) FROM chunks c JOIN tasks t ON t.id = c.task_id "
             "WHERE c.status = ? GROUP BY t.pool, c.command")
_ACTIVE = f"SELECT id, pool FROM tasks WHERE status IN ({', '.join('?' * len(ACTIVE))}) AND compiled"
_COMMANDS = "SELECT DISTINCT command FROM chunks WHERE task_id = ?"
_HAS_PENDING = "SELECT 1 FROM chunks WHERE task_id = ? AND status = ? AND command = ? LIMIT 1"
_BLOCKED = ("SELECT w.name FROM blocklist b JOIN workers w ON w.id = b.worker_id "
            "WHERE b.task_id = ? AND b.blocked_at IS NOT NULL")


def release(ctx: Context) -> list[Assignment]:
    """Mark as many pending chunks released as the queues have room for; their assignments.

    Runs inside the caller's transaction (the burst's, usually). The caller
    publishes the assignments only after the commit, without waiting for the
    broker's confirms; a chunk whose message the broker refuses or loses with
    its connection has its lease withdrawn (``leases.withdraw``), and one lost
    with the dispatcher itself is withdrawn after ``release_timeout_s``
    (``leases.withdraw_stranded``). See "Releasing" in docs/architecture.md.
    """
    groups = pending_groups(ctx)
    if not groups:  # the common case of an idle farm: no need to read every online worker
        return []
    online = online_workers()
    workers = [w for w in online if w.status == ENABLED and fleet.takes_chunks(w)]
    # Disabled, asleep and stopping agents decline what reaches them anyway.
    disabled = sorted(w.name for w in online if w.status == DISABLED or not fleet.takes_chunks(w))
    released = {(pool, command): n for pool, command, n in sql.execute(_RELEASED, (RELEASED,)).fetchall()}
    batch: list[Assignment] = []
    for pool, command in groups:
        eligible = [w for w in workers if pool in w.pools and command in w.commands]
        idle = sum(1 for w in eligible if w.current_lease is None)
        room = idle + ctx.config.release_ahead - released.get((pool, command), 0)
        if eligible and room > 0:
            batch += _release_group(ctx, pool, command, room, eligible, disabled)
    return batch


class Online(typing.NamedTuple):
    """An online worker as scheduling sees it."""

    id: int
    name: str
    status: str
    pools: tuple[str, ...]
    commands: tuple[str, ...]
    current_lease: str | None
    asleep: bool
    pending_action: str | None


@functools.lru_cache(maxsize=1024)
def _names(raw: str | None) -> tuple[str, ...]:
    # A farm has few distinct pool and command lists: each is parsed once.
    return tuple(json.loads(raw)) if raw else ()


def online_workers() -> list[Online]:
    """Online workers with just the columns scheduling needs, read as plain rows.

    Run by every release and every waiting-reason check: at 10,000 agents a
    peewee model per row was most of the dispatcher's time between heartbeats.
    """
    rows = sql.execute("SELECT id, name, status, pools, commands, current_lease, asleep, pending_action "
                       "FROM workers WHERE connection = ?", (ONLINE,)).fetchall()
    return [Online(wid, name, status, _names(pools), _names(commands), lease, bool(asleep), action or None)
            for wid, name, status, pools, commands, lease, asleep, action in rows]


def pending_by_task(ctx: Context) -> list[tuple[int, str, str]]:
    """(task id, pool, command) for every active task that has pending chunks of that command.

    Asked per active task and command with an indexed EXISTS, so the cost does
    not grow with the number of pending chunks (a 100,000-frame task).
    """
    found = []
    for task_id, pool in sql.execute(_ACTIVE, ACTIVE).fetchall():
        commands = ctx.task_commands.get(task_id)
        if commands is None:
            commands = tuple(c for (c,) in sql.execute(_COMMANDS, (task_id,)).fetchall())
            ctx.task_commands[task_id] = commands
        for command in commands:
            if sql.one(_HAS_PENDING, (task_id, PENDING, command)):
                found.append((task_id, pool, command))
    return found


def pending_groups(ctx: Context) -> list[tuple[str, str]]:
    """The (pool, command) queues that have pending chunks of an active task."""
    return sorted({(pool, command) for _, pool, command in pending_by_task(ctx)})


_CANDIDATES = (
    'SELECT c.id, c.task_id, c."index", c.command, c.parser, c.params, c.frames, c.priority, c.attempts, '
    "c.failures, t.parser, t.stall_timeout_s FROM chunks c JOIN tasks t ON t.id = c.task_id "
    f"WHERE c.status = ? AND c.command = ? AND t.pool = ? AND t.compiled "
    f"AND t.status IN ({', '.join('?' * len(ACTIVE))}) "
    'ORDER BY c.priority DESC, c.task_id, c."index" LIMIT ?')
_MARK_RELEASED = ("UPDATE chunks SET status = ?, lease_id = ?, attempts = ?, worker_id = NULL, "
                  "released_at = ? WHERE id = ? AND status = ?")


def _release_group(ctx: Context, pool: str, command: str, room: int, eligible: list[Online],
                   disabled: list[str]) -> list[Assignment]:
    # Fetch a little more than there is room for: chunks whose every eligible agent is
    # blocklisted for their task are skipped, and the next ones may go instead.
    rows = sql.execute(_CANDIDATES, (PENDING, command, pool, *ACTIVE, room + SKIP_ALLOWANCE)).fetchall()
    names = {w.name for w in eligible}
    blocked: dict[int, list[str]] = {}
    chosen: list[Assignment] = []
    for row in rows:
        if len(chosen) >= room:
            break
        chunk = Candidate(*row)
        if chunk.task_id not in blocked:
            blocked[chunk.task_id] = blocked_workers(chunk.task_id)
        if names <= set(blocked[chunk.task_id]):
            continue  # no eligible agent may take it; tasks.update_waiting_reasons says so
        exclude = sorted(set(disabled) | set(blocked[chunk.task_id]) | set(_failed_on(chunk, eligible)))
        assign = _mark_released(ctx, chunk, exclude)
        if assign is not None:
            chosen.append((assign, pool, chunk.priority))
    return chosen


def blocked_workers(task_id: int) -> list[str]:
    """Names of the workers blocklisted for a task."""
    return [name for (name,) in sql.execute(_BLOCKED, (task_id,)).fetchall()]


def _failed_on(chunk: Candidate, eligible: list[Online]) -> list[str]:
    """Agents this chunk failed on, to skip while another eligible agent exists."""
    if not chunk.failures:
        return []
    names = {name for (name,) in Attempt.select(Worker.name).join(Worker)
             .where(Attempt.chunk == chunk.id, Attempt.outcome == FAILED).tuples()}
    others = [w for w in eligible if w.name not in names]
    return sorted(names) if others else []


def _mark_released(ctx: Context, chunk: Candidate, exclude: list[str]) -> messages.ChunkAssign | None:
    """Give the chunk a new lease; the assignment to publish, or None if it is no longer pending."""
    lease = uuid.uuid4().hex
    attempt = chunk.attempts + 1
    if not sql.changed(_MARK_RELEASED, (RELEASED, lease, attempt, ctx.clock(), chunk.id, PENDING)):
        return None
    log.debug("chunk %s (task %s #%s): pending -> released, lease %s", chunk.id, chunk.task_id, chunk.index,
              lease)
    return messages.ChunkAssign(
        chunk_id=chunk.id, task_id=chunk.task_id, lease_id=lease, attempt=attempt, command=chunk.command,
        parser=chunk.parser or chunk.task_parser, params=json.loads(chunk.params),
        frames=json.loads(chunk.frames), priority=chunk.priority, exclude_agents=exclude,
        stall_timeout_s=chunk.stall_timeout_s)


def waiting_reasons(ctx: Context) -> dict[int, str]:
    """For each active task with pending chunks that no agent may take now: why."""
    pending = pending_by_task(ctx)
    if not pending:
        return {}
    enabled = [w for w in online_workers() if w.status == ENABLED]
    workers = [w for w in enabled if fleet.takes_chunks(w)]
    reasons: dict[int, str] = {}
    for task_id, pool, command in pending:
        eligible = {w.name for w in workers if pool in w.pools and command in w.commands}
        if not eligible:
            reasons[task_id] = fleet.unavailable_reason(enabled, pool, command) or (
                f"waiting: no online, enabled agent in pool {pool!r} can run {command!r}")
        elif eligible <= set(blocked_workers(task_id)):
            reasons[task_id] = (f"waiting: every agent in pool {pool!r} that can run {command!r} "
                                f"is blocklisted for this task ({', '.join(sorted(eligible))})")
    return reasons
