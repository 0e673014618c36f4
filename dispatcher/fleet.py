"""Operator control of workers: pools at runtime, stop/restart actions, sleep schedules.

The dispatcher is the authority for all three, so they hold for an agent that is
offline when the operator sets them (docs/operations.md):

- ``pools``: stored as the operator's choice; scheduling uses it at once and the
  agent is told (``control.pools``) now and after every hello, so it re-subscribes.
- ``action``: stored as the worker's ``pending_action``; a worker with one takes
  no more chunks. The agent is told (``control.stop``) now if online and after
  every hello. A goodbye clears it; so does a hello from a *new* agent process
  when the action was ``restart`` (the restart has happened).
- ``sleep_schedule``: the dispatcher judges the window on its own clock every
  tick (``check_schedules``), keeps the verdict in ``asleep`` (release
  eligibility reads it), and tells the agent (``control.sleep``) when it changes.
  A chunk already running when a window opens is left to finish.
"""
from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable
from typing import Any

from common import messages, schedule
from common.models import ONLINE, Worker, database_proxy
from dispatcher.context import Context

log = logging.getLogger("dispatcher.fleet")


def takes_chunks(worker: Worker) -> bool:
    """Whether release may count on this (online, enabled) worker: awake and not leaving."""
    return not worker.asleep and not worker.pending_action


def unavailable_reason(workers: Iterable[Worker], pool: str, command: str) -> str:
    """Why the enabled, online agents of ``pool`` that run ``command`` take none: asleep or leaving."""
    able = [w for w in workers if pool in w.pools and command in w.commands]
    if not able or any(takes_chunks(w) for w in able):
        return ""
    asleep = sorted(w.name for w in able if w.asleep)
    leaving = sorted(f"{w.name} ({w.pending_action})" for w in able if w.pending_action and not w.asleep)
    parts = ([f"asleep by its sleep schedule ({', '.join(asleep)})"] if asleep else []) + (
        [f"stopping ({', '.join(leaving)})"] if leaving else [])
    return f"waiting: every agent in pool {pool!r} that can run {command!r} is {' or '.join(parts)}"


# ---------------------------------------------------------------- operator changes


def on_update(ctx: Context, worker: Worker, msg: messages.WorkerUpdate) -> None:
    """Apply the operator-control part of a ``worker.update``."""
    if msg.pools is not None or msg.pools_reset:
        _set_pools(ctx, worker, msg.pools)
    if msg.action in messages.WORKER_ACTIONS:
        _set_action(ctx, worker, msg.action)
    elif msg.action_clear and worker.pending_action:
        Worker.update(pending_action=None).where(Worker.id == worker.id).execute()
        log.info("worker %s: pending action %s withdrawn", worker.name, worker.pending_action)
        ctx.wake_release()
    if msg.sleep_schedule is not None or msg.sleep_schedule_clear:
        _set_schedule(ctx, worker, msg.sleep_schedule)


def _set_pools(ctx: Context, worker: Worker, pools: list[str] | None) -> None:
    effective = pools if pools is not None else (worker.agent_pools or worker.pools)
    Worker.update(operator_pools=pools, pools=effective).where(Worker.id == worker.id).execute()
    log.info("worker %s: pools %s -> %s (%s)", worker.name, ",".join(worker.pools), ",".join(effective),
             "set by the operator" if pools is not None else "the agent's own again")
    if worker.connection == ONLINE:
        tell_pools(ctx, worker.name, effective, worker.commands)
    ctx.wake_release()


def tell_pools(ctx: Context, agent: str, pools: list[str], commands: list[str]) -> None:
    """Tell an agent its pools, with their chunk queues declared before the message goes.

    Agents declare nothing (they may lack the permission): an agent moved to a
    pool no agent was in before would otherwise find its queue missing.
    """
    ctx.joined.append((agent, list(pools), list(commands or [])))
    ctx.send(messages.ControlPools(agent=agent, pools=pools), agent)


def _set_action(ctx: Context, worker: Worker, action: str) -> None:
    Worker.update(pending_action=action).where(Worker.id == worker.id).execute()
    if worker.connection == ONLINE:
        log.info("worker %s: %s requested; telling the agent", worker.name, action)
        ctx.send(messages.ControlStop(agent=worker.name, mode=action), worker.name)
    else:
        log.info("worker %s: %s requested while it is offline; pending until it says hello",
                 worker.name, action)


def _set_schedule(ctx: Context, worker: Worker, stored: dict[str, Any] | None) -> None:
    asleep = _asleep(stored, ctx.clock())
    Worker.update(sleep_schedule=stored, asleep=asleep).where(Worker.id == worker.id).execute()
    log.info("worker %s: sleep schedule %s -> %s", worker.name, _describe(worker.sleep_schedule),
             _describe(stored))
    _tell_sleep(ctx, worker, asleep, was=bool(worker.asleep), stored=stored)


def _tell_sleep(ctx: Context, worker: Worker, asleep: bool, was: bool, stored: dict[str, Any] | None) -> None:
    if asleep != was:
        log.info("worker %s: %s -> %s (sleep schedule)", worker.name, _state(was), _state(asleep))
        if not asleep:
            ctx.wake_release()
    if worker.connection == ONLINE:
        ctx.send(messages.ControlSleep(agent=worker.name, asleep=asleep,
                                       reason=_describe(stored) if asleep else ""), worker.name)


# ---------------------------------------------------------------- agent lifecycle


def after_hello(ctx: Context, before: Worker, msg: messages.AgentHello) -> None:
    """Bring a (re)connected agent in line with what the operator set, possibly while it was away.

    ``before`` is the worker row as it was before the hello was applied.
    """
    new_process = bool(before.boot_id) and before.boot_id != msg.boot_id
    changes: dict[Any, Any] = {}
    if before.operator_pools is None or new_process or before.agent_pools is None:
        changes[Worker.agent_pools] = msg.pools  # a new process's hello carries its own pools
    if before.operator_pools is not None:
        changes[Worker.pools] = before.operator_pools
        if sorted(msg.pools) != sorted(before.operator_pools):
            tell_pools(ctx, msg.agent, before.operator_pools, msg.commands)
    action = before.pending_action
    if action == "restart" and new_process:
        log.info("worker %s: restart done (new agent process)", msg.agent)
        changes[Worker.pending_action] = None
    elif action:
        ctx.send(messages.ControlStop(agent=msg.agent, mode=action), msg.agent)
    if before.sleep_schedule:
        asleep = _asleep(before.sleep_schedule, ctx.clock())
        changes[Worker.asleep] = asleep
        ctx.send(messages.ControlSleep(agent=msg.agent, asleep=asleep,
                                       reason=_describe(before.sleep_schedule) if asleep else ""), msg.agent)
    if changes:
        Worker.update(changes).where(Worker.id == before.id).execute()


def remind(ctx: Context, worker_id: int) -> None:
    """Re-send the operator's settings to an agent that came back by heartbeat, without a hello.

    An agent judged lost while its connection held (a long pause, a network cut
    shorter than the broker's heartbeat) never says hello again, yet may have
    missed what was set while it counted as offline.
    """
    worker = Worker.get_or_none(Worker.id == worker_id)
    if worker is None:
        return
    if worker.operator_pools is not None:
        tell_pools(ctx, worker.name, worker.operator_pools, worker.commands)
    if worker.pending_action:
        ctx.send(messages.ControlStop(agent=worker.name, mode=worker.pending_action), worker.name)
    if worker.sleep_schedule:
        ctx.send(messages.ControlSleep(agent=worker.name, asleep=bool(worker.asleep),
                                       reason=_describe(worker.sleep_schedule) if worker.asleep else ""),
                 worker.name)


def after_goodbye(ctx: Context, worker: Worker) -> None:
    """The agent left: whatever action was pending has happened."""
    if worker.pending_action:
        Worker.update(pending_action=None).where(Worker.id == worker.id).execute()
        log.info("worker %s: %s done", worker.name, worker.pending_action)


def check_schedules(ctx: Context) -> int:
    """Judge every sleep schedule on the dispatcher's clock; tell agents whose window opened or closed.

    Runs every tick, so it reads raw rows and judges each distinct schedule once
    per minute (windows start and end on whole minutes): about 4 ms for 1,000
    scheduled workers on SQLite.
    """
    minute = int(ctx.clock() // 60)
    flipped: dict[bool, list[int]] = {True: [], False: []}
    cursor = database_proxy.execute_sql(
        "SELECT id, name, connection, sleep_schedule, asleep FROM workers WHERE sleep_schedule IS NOT NULL")
    for worker_id, name, connection, text, was in cursor.fetchall():
        asleep = _verdict(text, minute)
        if asleep != bool(was):
            flipped[asleep].append(worker_id)
            worker = Worker(id=worker_id, name=name, connection=connection)
            _tell_sleep(ctx, worker, asleep, was=bool(was), stored=json.loads(text))
    for asleep, ids in flipped.items():
        for start in range(0, len(ids), 500):
            Worker.update(asleep=asleep).where(Worker.id.in_(ids[start:start + 500])).execute()
    return len(flipped[True]) + len(flipped[False])


# ---------------------------------------------------------------- helpers


def _asleep(stored: dict[str, Any] | None, now: float) -> bool:
    return bool(stored) and schedule.is_asleep(_parsed(json.dumps(stored, separators=(",", ":"))), now)


@functools.lru_cache(maxsize=4096)
def _parsed(text: str) -> schedule.SleepSchedule:
    return schedule.parse(json.loads(text))


@functools.lru_cache(maxsize=4096)
def _verdict(text: str, minute: int) -> bool:
    """Asleep during the whole UTC minute ``minute`` (zones' offsets are whole minutes)?"""
    return schedule.is_asleep(_parsed(text), minute * 60.0)


def _describe(stored: dict[str, Any] | None) -> str:
    if not stored:
        return "none"
    return f"{','.join(stored['days'])} {stored['start']}-{stored['end']} {stored['tz']}"


def _state(asleep: bool) -> str:
    return "asleep" if asleep else "awake"
