"""Worker state: registration, heartbeats, goodbyes, operator changes, lost agents."""
from __future__ import annotations

import logging
import secrets
import typing

import msgspec

from common import messages, signing
from common.models import DISABLED, ENABLED, OFFLINE, ONLINE, RELEASED, RUNNING, Attempt, Chunk, Worker
from dispatcher import changes, fleet, sql
from dispatcher.context import Context, Refused
from dispatcher.identity import wrap_secret_for
from dispatcher.leases import requeue_lost

log = logging.getLogger("dispatcher.workers")
_encode = msgspec.json.Encoder(order="sorted").encode  # readings, once per beat: the fast encoder


def _dump(value: object) -> str:
    return _encode(value).decode()
# Attempt outcomes only the agent's own chunk.finished sets ("lost" is the dispatcher's verdict).
REPORTED_OUTCOMES = frozenset(messages.OUTCOMES)


def worker_named(ctx: Context, name: str) -> Worker:
    """The worker row for an agent name, created if the agent is new to us."""
    worker = Worker.get_or_none(Worker.name == name)
    if worker is None:
        worker = Worker.create(name=name, hostname=name, connection=ONLINE, last_heartbeat=ctx.clock())
        log.info("worker %s: registered (id %s)", name, worker.id)
    return worker


def worker_id(ctx: Context, name: str) -> int:
    """The worker id for an agent name (remembered: ids never change, rows are never deleted)."""
    found = ctx.worker_ids.get(name)
    if found is None:
        found = ctx.worker_ids[name] = worker_named(ctx, name).id
    return found


def known_worker_id(ctx: Context, name: str) -> int | None:
    """The worker id for an agent name, or None for an agent never seen (no row is created)."""
    found = ctx.worker_ids.get(name)
    if found is None:
        row = sql.one("SELECT id FROM workers WHERE name = ?", (name,))
        if row is None:
            return None
        found = ctx.worker_ids[name] = row[0]
    return found


def on_hello(ctx: Context, msg: messages.AgentHello) -> None:
    worker = worker_named(ctx, msg.agent)
    if not ctx.config.insecure_agents and worker.hello_sent_at is not None \
            and msg.sent_at <= worker.hello_sent_at:
        # The verifier compares with the committed hello; this one, with an earlier hello of the burst.
        raise Refused(f"signature check failed: hello from {msg.agent!r} is not newer than its last one "
                      "(replayed?)")
    if worker.boot_id and msg.boot_id and worker.boot_id != msg.boot_id:
        # A new process under the same name: whatever the old one ran is lost.
        requeue_lost(ctx, worker, "agent restarted")
    ctx.joined.append((msg.agent, list(msg.pools), list(msg.commands)))
    secret = wrap_secret_for(ctx.config, msg.agent)
    if secret:
        welcome(ctx, worker, msg, secret)
    # The hello's first readings, if it has any (an older agent's has none: keep the stored ones).
    readings = {name: value for name, value in (("update_frequent", msg.update_frequent),
                                                ("update_less_frequent", msg.update_less_frequent)) if value}
    Worker.update(
        hostname=msg.hostname, system=msg.system, pools=msg.pools, commands=msg.commands,
        ip_address=msg.ip_address, mac_address=msg.mac_address, versions=msg.versions,
        boot_id=msg.boot_id, departed_boot_id="", connection=ONLINE, last_heartbeat=ctx.clock(),
        activity=worker.activity or "idle", hello_sent_at=msg.sent_at or None, **readings,
    ).where(Worker.id == worker.id).execute()
    if readings:  # what the heartbeat path remembers as written is stale now
        ctx.readings.pop(worker.id, None)
    fleet.after_hello(ctx, worker, msg)
    if worker.connection != ONLINE:
        log.info("worker %s: %s -> online (hello)", msg.agent, worker.connection)
    ctx.wake_release()


def welcome(ctx: Context, worker: Worker, msg: messages.AgentHello, secret: str) -> None:
    """Issue (or, for a reconnecting process, re-send) the agent's signing key."""
    if worker.boot_id == msg.boot_id and worker.signing_key:
        key = bytes.fromhex(worker.signing_key)
    else:
        key = signing.new_key()
        Worker.update(signing_key=key.hex()).where(Worker.id == worker.id).execute()
    nonce = secrets.token_hex(16)
    ctx.issued_keys[msg.agent] = key
    ctx.send(messages.ControlWelcome(
        agent=msg.agent, boot_id=msg.boot_id, nonce=nonce,
        wrapped_key=signing.wrap(secret, msg.agent, msg.boot_id, nonce, key)), msg.agent)


def on_heartbeat(ctx: Context, msg: messages.AgentHeartbeat) -> None:
    on_heartbeats(ctx, [msg])


def on_heartbeats(ctx: Context, beats: list[messages.AgentHeartbeat]) -> None:
    """Apply a batch of heartbeats in a few statements: the hot path of a large farm.

    Only each agent's newest beat matters. The dispatcher's clock decides
    liveness (agents' clocks may be skewed). Slow-changing readings arrive with
    every tenth beat; an empty ``update_less_frequent`` keeps the stored one.
    Heartbeats travel on their own queue, so one sent just before a goodbye can
    be applied after it: a beat of a boot that said goodbye is ignored.
    """
    newest = {beat.agent: beat for beat in sorted(beats, key=lambda b: b.sent_at)}
    known = _workers_named(list(newest))
    for name in newest:
        if name not in known:
            w = worker_named(ctx, name)
            known[name] = Beating(w.id, w.name, w.connection, w.boot_id, w.departed_boot_id)
    for name, beat in list(newest.items()):
        worker = known[name]
        if worker.departed_boot_id and (beat.boot_id or worker.boot_id or "-") == worker.departed_boot_id:
            del newest[name]
    now = ctx.clock()
    sql.execute_many("UPDATE workers SET last_heartbeat = ?, connection = ? WHERE id = ?",
                     [(now, ONLINE, known[n].id) for n in newest])
    frequent, less = [], []
    for name, beat in newest.items():
        wid = known[name].id
        old_frequent, old_less = ctx.readings.get(wid, ("", ""))
        new_frequent = _dump(beat.update_frequent)
        new_less = _dump(beat.update_less_frequent) if beat.update_less_frequent else old_less
        if new_frequent != old_frequent:
            frequent.append((new_frequent, wid))
        if new_less != old_less:
            less.append((new_less, wid))
        ctx.readings[wid] = (new_frequent, new_less)
    # Only readings that changed are written: most of a large farm's beats change nothing but liveness.
    sql.execute_many("UPDATE workers SET update_frequent = ? WHERE id = ?", frequent)
    sql.execute_many("UPDATE workers SET update_less_frequent = ? WHERE id = ?", less)
    for name in newest:
        if known[name].connection != ONLINE:
            log.info("worker %s: offline -> online (heartbeat)", name)
            fleet.remind(ctx, known[name].id)
            ctx.wake_release()
    _abort_dead_leases(ctx, {b.lease_id: n for n, b in newest.items() if b.lease_id})


class Beating(typing.NamedTuple):
    """What applying a heartbeat reads of its worker."""

    id: int
    name: str
    connection: str
    boot_id: str | None
    departed_boot_id: str | None


_NAMED = "SELECT id, name, connection, boot_id, departed_boot_id FROM workers WHERE name IN ({})"


def _workers_named(names: list[str]) -> dict[str, Beating]:
    """The workers of a batch of beats, read as plain rows (500 names per statement)."""
    found: dict[str, Beating] = {}
    for start in range(0, len(names), 500):
        part = names[start:start + 500]
        rows = sql.execute(_NAMED.format(", ".join("?" * len(part))), tuple(part)).fetchall()
        found.update((row[1], Beating(*row)) for row in rows)
    return found


def _abort_dead_leases(ctx: Context, holders: dict[str, str]) -> None:
    """Agents that say they hold a lease that is no longer live are told to drop it.

    A beat sent while a chunk ran may be applied after that chunk's
    ``chunk.finished`` (heartbeats have a queue of their own): a lease whose
    attempt the agent itself reported finished is not held any more, so it is
    left alone. ``chunk_id`` is 0 only for a lease the dispatcher never saw start.
    """
    if not holders:
        return
    live = {lease for (lease,) in Chunk.select(Chunk.lease_id).where(
        Chunk.lease_id.in_(list(holders)), Chunk.status.in_((RELEASED, RUNNING))).tuples()}
    dead = [lease for lease in holders if lease not in live]
    if not dead:
        return
    attempts = {lease: (chunk_id, outcome) for lease, chunk_id, outcome in Attempt.select(
        Attempt.lease_id, Attempt.chunk, Attempt.outcome).where(Attempt.lease_id.in_(dead)).tuples()}
    for lease in dead:
        chunk_id, outcome = attempts.get(lease, (0, ""))
        if outcome in REPORTED_OUTCOMES:
            continue  # a beat older than the agent's own chunk.finished
        agent = holders[lease]
        log.info("worker %s: holds lease %s that is no longer live; aborting it", agent, lease)
        ctx.send(messages.ControlAbort(chunk_id=chunk_id, lease_id=lease,
                                       reason="lease no longer live"), agent)


def on_goodbye(ctx: Context, msg: messages.AgentGoodbye) -> None:
    worker = Worker.get_or_none(Worker.name == msg.agent)
    if worker is None:
        return
    requeue_lost(ctx, worker, "agent stopped")
    Worker.update(connection=OFFLINE, activity=f"stopped: {msg.reason}"[:255],
                  departed_boot_id=msg.boot_id or worker.boot_id or "-").where(
        Worker.id == worker.id).execute()
    log.info("worker %s: %s -> offline (goodbye: %s)", worker.name, worker.connection, msg.reason)
    fleet.after_goodbye(ctx, worker)


def on_update(ctx: Context, msg: messages.WorkerUpdate) -> None:
    worker = Worker.get_or_none(Worker.id == msg.worker_id)
    if worker is None:
        return
    if msg.status in (ENABLED, DISABLED) and msg.status != worker.status:
        Worker.update(status=msg.status).where(Worker.id == worker.id).execute()
        log.info("worker %s: %s -> %s", worker.name, worker.status, msg.status)
        ctx.wake_release()
    if msg.activity:
        Worker.update(activity=msg.activity).where(Worker.id == worker.id).execute()
    fleet.on_update(ctx, worker, msg)


def check_lost(ctx: Context) -> int:
    """Mark workers silent for longer than the agent timeout offline; requeue their chunks."""
    if ctx.clock() < ctx.grace_until:
        return 0
    cutoff = ctx.clock() - ctx.config.agent_timeout_s
    silent = list(Worker.select().where(Worker.connection == ONLINE, Worker.last_heartbeat < cutoff))
    for worker in silent:
        log.warning("worker %s: online -> offline (no heartbeat for %.1fs)",
                    worker.name, ctx.clock() - worker.last_heartbeat)
        Worker.update(connection=OFFLINE, activity="lost").where(Worker.id == worker.id).execute()
        changes.worker(ctx, worker.id, worker.name)
        requeue_lost(ctx, worker, "agent lost (no heartbeat)")
    return len(silent)
