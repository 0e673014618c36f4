"""The dispatcher process: consume events, apply them, release chunks, watch agents.

One thread owns everything: it drains the dispatcher's queues, applies each
message in one database transaction, acknowledges it only after the commit
(at-least-once; every handler is idempotent), publishes the outbox, and runs
the periodic checks between deliveries.
"""
from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kombu import Consumer
from peewee import InterfaceError, OperationalError

from common import messages, signing
from common.bus import CONNECTION_ERRORS, Bus, Publisher, body_bytes, decode_or_dead_letter
from common.config import Config
from common.db import open_and_migrate
from common.errors import BrokerUnavailable
from common.models import database_proxy
from dispatcher import changes, chunks, fleet, identity, leases, metrics, release, tasks, workers
from dispatcher.context import Context
from dispatcher.identity import Verifier
from dispatcher.leader import Leader, LeadershipLost

log = logging.getLogger("dispatcher")
DB_ERRORS = (OperationalError, InterfaceError)
SWEEP_INTERVAL_S = 2.0
# Heartbeats are applied in batches: at most this many, at most this late.
HEARTBEAT_BATCH = 500
PREFETCH = 2000  # must exceed HEARTBEAT_BATCH, or batches wait for their flush timer
HEARTBEAT_FLUSH_S = 0.25
FIRST_RECONNECT_DELAY_S, MAX_RECONNECT_DELAY_S = 0.5, 10.0
DRAIN_BURST = 200  # deliveries taken per burst before the periodic work runs

HANDLERS: dict[type[messages.Message], Callable[[Context, Any], None]] = {
    messages.TaskSubmitted: tasks.on_submitted,
    messages.TaskUpdate: tasks.on_update,
    messages.TaskCancel: tasks.on_cancel,
    messages.TaskBlocklistClear: tasks.on_blocklist_clear,
    messages.TaskRetry: tasks.on_retry,
    messages.WorkerUpdate: workers.on_update,
    messages.AgentHello: workers.on_hello,
    messages.AgentHeartbeat: workers.on_heartbeat,
    messages.AgentGoodbye: workers.on_goodbye,
    messages.ChunkStarted: chunks.on_started,
    messages.ChunkProgress: chunks.on_progress,
    messages.ChunkFinished: chunks.on_finished,
}


class Dispatcher:
    """Owns the task, chunk and worker state machine. ``start``/``stop``/``kill``."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.bus = Bus(config)
        self.ctx = Context(config, clock)
        # Standby dispatchers: only the leader consumes, and every transaction checks its epoch.
        self.leader = Leader(config.namespace, config.leader_lease_s, clock)
        self.ctx.fence = self.leader.check_fence
        self.verifier = Verifier(config)
        self.publisher: Publisher | None = None
        self.changes = changes.ChangePublisher(self.bus)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_tick = 0.0
        self._next_sweep = 0.0
        self._beats: list[tuple[messages.AgentHeartbeat, Any]] = []
        self._beats_since = 0.0
        self._delay_s = FIRST_RECONNECT_DELAY_S
        self.ready = threading.Event()

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> None:
        """Run in a background thread; return once consuming."""
        self._thread = threading.Thread(target=self.run, name="dispatcher", daemon=True)
        self._thread.start()
        if not self.ready.wait(timeout=30):
            raise RuntimeError("dispatcher did not start within 30s")

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the message in hand, then stop consuming."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def kill(self) -> None:
        """Stop without waiting; unacknowledged messages are redelivered later."""
        self._stopping.set()

    def is_active(self) -> bool:
        """True while this dispatcher is the active one of its namespace (the others stand by)."""
        return self.leader.is_active()

    def run(self) -> None:
        open_and_migrate(self.config.resolved_database_url)
        self.verifier.command_key = signing.command_key(self.config.command_key)
        self.publisher = metrics.instrument(self.bus.publisher())
        while not self._stopping.is_set():
            try:
                self._consume()
            except LeadershipLost as exc:
                # Closing the connection hands every unacknowledged message to the new leader.
                log.warning("dispatcher %s: active -> standby (%s)", self.leader.identity, exc)
                self.ctx.outbox.clear()
                self._beats.clear()
            except CONNECTION_ERRORS + (BrokerUnavailable,) as exc:
                if self._stopping.is_set():
                    break
                log.warning("broker connection lost (%s); reconnecting in %.1fs", exc, self._delay_s,
                            exc_info=log.isEnabledFor(logging.DEBUG))
                self._stopping.wait(self._delay_s)
                self._delay_s = min(self._delay_s * 2, MAX_RECONNECT_DELAY_S)
        self.leader.step_down(release=True)
        self.publisher.close()
        self.changes.close()
        database_proxy.close()
        log.info("dispatcher stopped")

    # -- the loop -----------------------------------------------------------

    def _consume(self) -> None:
        topo = self.bus.topology
        # Short AMQP heartbeats: a frozen leader's consumer must be dropped within about a lease.
        heartbeat = min(filter(None, (self.config.amqp_heartbeat_s, self.leader.amqp_heartbeat_s)))
        with self.bus.connect(heartbeat=heartbeat) as conn:
            channel = conn.channel()
            self.bus.declare_core(channel)
            if not self.leader.wait_until_active(self._stopping, functools.partial(_idle, conn)):
                return
            channel.basic_qos(0, PREFETCH, False)
            queues = [topo.dispatcher_queue(), topo.heartbeat_queue()]
            # Unacknowledged heartbeats of a lost connection come back by redelivery.
            self._beats.clear()
            consumers = [Consumer(channel, queues=[queue],
                                  on_message=functools.partial(self._on_message, queue.name))
                         for queue in queues]
            with consumers[0], consumers[1]:
                log.info("dispatcher consuming from %s (namespace %s) on %s",
                         ", ".join(q.name for q in queues), topo.namespace,
                         conn.as_uri(include_password=False))
                self.ctx.grace_until = self.ctx.clock() + self.config.agent_timeout_s
                self.ready.set()
                self._delay_s = FIRST_RECONNECT_DELAY_S
                while not self._stopping.is_set():
                    try:
                        conn.drain_events(timeout=self.config.tick_interval_s)
                        self._drain_ready(conn)
                    except TimeoutError:
                        pass
                    conn.heartbeat_check()
                    self._after_deliveries()
                    self.leader.renew_if_due()

    def _drain_ready(self, conn: Any) -> None:
        """Take whatever else has already arrived, so periodic work runs once per burst."""
        for _ in range(DRAIN_BURST):
            try:
                conn.drain_events(timeout=0.001)
            except TimeoutError:
                return

    def _on_message(self, queue: str, message: Any) -> None:
        msg = decode_or_dead_letter(self.publisher, message, queue)
        if msg is None:
            return
        body = body_bytes(message)
        refusal = self.verifier.refusal(msg, body, message.headers or {}, self.ctx.clock(),
                                        message.delivery_info.get("routing_key", ""))
        if refusal is not None:
            log.warning("dead-lettering a %s: %s", msg.kind, refusal)
            self.publisher.dead_letter_delivery(message, refusal, queue)
            message.ack()
            return
        if isinstance(msg, messages.AgentHeartbeat):
            if not self._beats:
                self._beats_since = time.monotonic()
            self._beats.append((msg, message))
            if len(self._beats) >= HEARTBEAT_BATCH:
                self._flush_beats()
            return
        handler = HANDLERS.get(type(msg))
        if handler is None:
            self.publisher.dead_letter_delivery(message, f"the dispatcher does not handle {msg.kind}", queue)
            message.ack()
            return
        with metrics.timed(msg.kind):
            applied = self._apply(handler, msg, message, queue)
        if applied:
            message.ack()
            for agent, key in self.ctx.issued_keys.items():
                self.verifier.remember(agent, key)
            self.ctx.issued_keys.clear()
            self._flush_outbox()

    def _apply(self, handler: Callable[[Context, Any], None], msg: Any, message: Any,
               queue: str = "") -> bool:
        """Apply a message (or a batch, with ``message`` None) in one transaction.

        True when it may be acknowledged. On a database error the message is requeued and
        LeadershipLost raised: the dispatcher stops consuming until the database answers again.
        """
        try:
            database_proxy.connect(reuse_if_open=True)
            with database_proxy.atomic():
                self.ctx.fence()
                handler(self.ctx, msg)
                changes.record_message(self.ctx, msg)
            return True
        except LeadershipLost:
            self.ctx.outbox.clear()
            self.ctx.issued_keys.clear()
            raise
        except DB_ERRORS as exc:
            # The database is away: give the message back and stand by until it answers.
            log.warning("database error applying %s (%s); will retry", _kind(msg), exc)
            self.ctx.outbox.clear()
            self.ctx.issued_keys.clear()
            database_proxy.close()
            if message is not None:
                message.requeue()
            # Stop consuming: what this dispatcher holds goes back to the queue, to be applied by
            # whichever dispatcher gets the database (this one again, once it answers).
            raise LeadershipLost(f"the database does not answer ({exc})") from exc
        except Exception as exc:  # noqa: BLE001 - a bug must not stop the farm
            log.exception("cannot apply %s; dead-lettering it", _kind(msg))
            self.ctx.outbox.clear()
            if message is not None:  # the delivery as it came, headers (signature) included
                self.publisher.dead_letter_delivery(message, f"handler error: {exc!r}", queue)
                return True
            for one in msg if isinstance(msg, list) else [msg]:
                self.publisher.dead_letter(messages.encode(one), f"handler error: {exc!r}", one.kind,
                                           self.bus.topology.heartbeat_queue().name)
            return True

    def _flush_beats(self) -> None:
        """Apply the buffered heartbeats in one transaction, then acknowledge them."""
        beats, self._beats = self._beats, []
        if not beats:
            return
        try:
            self._apply(_apply_heartbeats, [b for b, _ in beats], None)
            metrics.heartbeats_applied(len(beats))
        except LeadershipLost:
            for _, delivery in beats:
                delivery.requeue()
            raise
        for _, delivery in beats:
            delivery.ack()
        self._flush_outbox()

    def _flush_outbox(self) -> None:
        try:
            identity.declare_joined(self.ctx, self.publisher)
        except BrokerUnavailable as exc:
            log.warning("could not declare the queues of new agents: %s", exc)
        self.changes.after_commit(self.ctx)
        outbox, self.ctx.outbox = self.ctx.outbox, []
        for message, agent in outbox:
            try:
                self.publisher.control(message, agent)
            except BrokerUnavailable as exc:
                log.warning("could not send %s to %s: %s", message.kind, agent or "all agents", exc)

    def _after_deliveries(self) -> None:
        now = time.monotonic()
        if self._beats and now - self._beats_since >= HEARTBEAT_FLUSH_S:
            self._flush_beats()
        due = now >= self._next_tick
        if not (due or self.ctx.release_wanted):
            return
        try:
            database_proxy.connect(reuse_if_open=True)
            if due:
                with database_proxy.atomic():
                    self.ctx.fence()
                    metrics.agents_lost(workers.check_lost(self.ctx))
                    fleet.check_schedules(self.ctx)
                    self.verifier.cut_off_revoked(self.ctx)
                if now >= self._next_sweep:
                    # The safety net: release even if no event asked for it.
                    self.ctx.release_wanted = True
                    with database_proxy.atomic():
                        self.ctx.fence()
                        stranded = leases.withdraw_stranded(self.ctx)
                        tasks.sweep_uncompiled(self.ctx)
                        tasks.update_waiting_reasons(self.ctx)
                    if stranded:  # a queue may have been deleted: declare it again before publishing
                        self.publisher.forget_declared()
                    self._next_sweep = time.monotonic() + SWEEP_INTERVAL_S
                # Measured from the end of the work, so a slow tick cannot run back to back.
                self._next_tick = time.monotonic() + self.config.tick_interval_s
            self._flush_outbox()
            if self.ctx.release_wanted:
                self.ctx.release_wanted = False
                metrics.released(release.release(self.ctx, self.publisher))
        except DB_ERRORS as exc:
            log.warning("database error in periodic work (%s); retrying", exc)
            database_proxy.close()
            self.ctx.release_wanted = True
            self._stopping.wait(1.0)


def _idle(conn: Any, seconds: float) -> None:
    """Wait on a connection that consumes nothing, answering the broker's heartbeats."""
    try:
        conn.drain_events(timeout=seconds)
    except TimeoutError:
        pass
    conn.heartbeat_check()


def _apply_heartbeats(ctx: Context, beats: list[messages.AgentHeartbeat]) -> None:
    workers.on_heartbeats(ctx, beats)


def _kind(msg: messages.Message | list[messages.Message]) -> str:
    return f"{len(msg)} heartbeats" if isinstance(msg, list) else msg.kind


def run_dispatcher(config: Config, metrics_port: int | None = None, metrics_host: str = "127.0.0.1") -> int:
    """Foreground dispatcher for the CLI: SIGTERM or SIGINT stops it cleanly."""
    import signal

    dispatcher = Dispatcher(config)
    if metrics_port is not None:
        try:
            metrics.serve(dispatcher, metrics_port, metrics_host)
        except OSError as exc:
            raise SystemExit(f"corral dispatcher: cannot serve metrics on {metrics_host}:{metrics_port}: "
                             f"{exc.strerror or exc}") from None
    open_and_migrate(config.resolved_database_url)
    with database_proxy.connection_context():
        refusal = identity.startup_refusal(config)
    if refusal:
        log.error("%s", refusal)
        print(f"corral dispatcher: {refusal}", flush=True)
        return 2

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping", signum)
        dispatcher.kill()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    dispatcher.run()
    return 0
