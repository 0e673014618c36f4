"""The dispatcher process: consume events, apply them, release chunks, watch agents.

One thread owns everything. Each turn of its loop:

1. ``_collect``: take every delivery that has already arrived (up to
   ``MAX_BURST``), decoding and verifying each; bad ones are dead-lettered at once.
2. ``_commit_burst``: in one database transaction (group commit,
   ``dispatcher/burst.py``), withdraw the leases whose chunk messages the broker
   refused or lost, apply the burst, and release chunks once for all of it.
   Only there is a transaction opened for events.
3. ``_after_commit``: acknowledge the burst, hand issued keys to the verifier,
   dead-letter events whose handler failed, publish the outbox, and send the
   released chunks without waiting for their confirms (``Publisher.send_all``;
   ``Publisher.settle`` collects them on the next turn). At-least-once: a crash
   before the acknowledgement redelivers the burst, and every handler is
   idempotent.
4. ``_after_deliveries``: run the periodic checks when due, and release again
   if they asked for it.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kombu import Consumer

from common import messages, signing
from common.bus import CONNECTION_ERRORS, Bus, Publisher, body_bytes, decode_or_dead_letter
from common.config import Config
from common.db import open_and_migrate
from common.errors import BrokerUnavailable
from common.models import database_proxy
from dispatcher import changes, chunks, fleet, identity, leases, metrics, release, tasks, workers
from dispatcher.burst import DB_ERRORS, Applier, Burst, Delivery, Failure
from dispatcher.context import Context, Refused
from dispatcher.identity import Verifier
from dispatcher.leader import Leader, LeadershipLost
from dispatcher.release import Assignment

log = logging.getLogger("dispatcher")
SWEEP_INTERVAL_S = 2.0
MAX_BURST = 500  # deliveries applied in one transaction at most
PREFETCH = 2000  # more than a burst, so the next one is already on its way
FIRST_RECONNECT_DELAY_S, MAX_RECONNECT_DELAY_S = 0.5, 10.0
DB_RETRY_S = 1.0
HEARTBEAT_WAIT_S = 0.25
DRAIN_WAIT_S = 0.001  # how long a burst of heartbeats alone waits for one more delivery

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
        self.applier = Applier(self.ctx, HANDLERS, workers.on_heartbeats,
                               in_transaction=self.leader.check_fence, observe=_observe,
                               record=changes.record_message)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_tick = 0.0
        self._next_sweep = 0.0
        self._burst = Burst()
        # (chunk id, lease) of released chunks whose message the broker refused or lost: withdrawn
        # in the next transaction.
        self._lost: list[tuple[int, str]] = []
        self._released: list[Assignment] = []  # released by the transaction in progress
        self._multiple_ack = False
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
        """Finish the burst in hand, then stop consuming."""
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
                self.ctx.rolled_back()
                self._burst = Burst()
            except DB_ERRORS as exc:
                # A database error outside a fenced transaction: the same as losing the lead.
                # Stand by (the broker connection is closed, its messages go back) and try again.
                log.warning("dispatcher %s: database unreachable (%s); standing by",
                            self.leader.identity, exc)
                self.ctx.rolled_back()
                self._burst = Burst()
                with contextlib.suppress(*DB_ERRORS):
                    database_proxy.close()
                self._stopping.wait(1.0)
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
            # The unacknowledged burst of a lost connection comes back by redelivery.
            self._burst = Burst()
            # kombu's virtual transports (memory://) ignore ``multiple``: ack one by one there.
            self._multiple_ack = getattr(conn.transport, "driver_type", "") == "amqp"
            # One consumer per queue, so a dead letter names the queue it was consumed from.
            consumers = [Consumer(channel, queues=[queue],
                                  on_message=functools.partial(self._collect, queue.name))
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
                        # Buffered heartbeats must not wait a whole tick for company.
                        wait_s = HEARTBEAT_WAIT_S if self._burst else self.config.tick_interval_s
                        if self.ctx.compile_wanted:  # a task is half compiled: only look for events
                            wait_s = 0.001
                        conn.drain_events(timeout=wait_s)
                        self._drain_ready(conn)
                    except TimeoutError:
                        pass
                    conn.heartbeat_check()
                    self._lost += self.publisher.settle()
                    self._commit_burst()
                    self._compile()
                    self._after_deliveries()
                    self.leader.renew_if_due()

    def _drain_ready(self, conn: Any) -> None:
        """Take whatever else has already arrived, so one transaction covers the whole burst.

        A burst that holds events is committed as soon as nothing more is there
        (each chunk report waits on the loop); heartbeats alone wait up to
        ``DRAIN_WAIT_S`` for company, which keeps a large idle farm's turns few.
        py-amqp reads one frame per call (three per message) and sets the socket's
        timeout before and after each read unless it already has that timeout:
        the socket keeps the drain's timeout while the loop runs instead.
        """
        sock = getattr(getattr(getattr(conn, "connection", None), "transport", None), "sock", None)
        before = sock.gettimeout() if sock is not None else None
        current = None
        try:
            while len(self._burst) < MAX_BURST:
                wait = 0.0 if self._burst.events else DRAIN_WAIT_S
                if sock is not None and wait != current:
                    sock.settimeout(wait)
                    current = wait
                try:
                    conn.drain_events(timeout=wait)
                except TimeoutError:
                    return
        finally:
            if sock is not None:
                sock.settimeout(before)

    def _collect(self, queue: str, message: Any) -> None:
        """Decode and verify one delivery from ``queue`` into the burst; dead-letter it if it cannot be
        applied."""
        msg = decode_or_dead_letter(self.publisher, message, queue)
        if msg is None:
            return
        body = body_bytes(message)
        refusal = self.verifier.refusal(msg, body, message.headers or {}, self.ctx.clock(),
                                        message.delivery_info.get("routing_key", ""))
        if refusal is None and not isinstance(msg, messages.AgentHeartbeat) and type(msg) not in HANDLERS:
            refusal = f"the dispatcher does not handle {msg.kind}"
        if refusal is not None:
            log.warning("dead-lettering a %s: %s", msg.kind, refusal)
            self.publisher.dead_letter_delivery(message, refusal, queue)
            message.ack()
            return
        self._burst.add(Delivery(msg, message, queue))

    def _commit_burst(self) -> None:
        """Apply the burst in one transaction; acknowledge it after the commit.

        On a database error, or when another dispatcher took over, nothing of the burst was
        written: its messages go back to their queues and LeadershipLost is raised, so this
        dispatcher stops consuming and stands by (until the database answers again).
        """
        burst = self._burst
        if not (burst or self._lost) or (not self._lost and self._beats_can_wait(burst)):
            return
        self._burst, lost, self._lost = Burst(), self._lost, []
        try:
            failures = self.applier.apply(burst, then=functools.partial(self._withdraw_and_release, lost))
        except LeadershipLost:
            self._requeue(burst)
            self._lost, self._released = lost + self._lost, []
            raise
        except DB_ERRORS as exc:
            log.warning("database error applying a burst of %d (%s); standing by", len(burst), exc)
            database_proxy.close()
            self._requeue(burst)
            self._lost, self._released = lost + self._lost, []
            raise LeadershipLost(f"the database does not answer ({exc})") from exc
        self._after_commit(burst, failures)

    def _withdraw_and_release(self, lost: list[tuple[int, str]]) -> None:
        """The burst transaction's last steps: undo releases the broker lost, then release once."""
        self._released = []
        if lost:
            leases.withdraw(self.ctx, lost, "not confirmed by the broker")
        if self.ctx.release_wanted:
            self.ctx.release_wanted = False
            self._released = release.release(self.ctx)

    @staticmethod
    def _requeue(burst: Burst) -> None:
        for delivery in burst.deliveries():
            delivery.raw.requeue()

    @staticmethod
    def _beats_can_wait(burst: Burst) -> bool:
        """Heartbeats alone wait up to HEARTBEAT_WAIT_S to share a commit: a quiet large farm
        otherwise pays a transaction per beat. Any other event commits the burst at once."""
        return (not burst.events and len(burst) < MAX_BURST
                and time.monotonic() - burst.since < HEARTBEAT_WAIT_S)

    def _after_commit(self, burst: Burst, failures: list[Failure]) -> None:
        """What may happen only once the burst is durable: acks, keys, dead letters, the outbox."""
        for failure in failures:
            # The delivery as it came, headers (signature) included, naming the queue it came from.
            error = failure.error
            reason = str(error) if isinstance(error, Refused) else f"handler error: {error!r}"
            self.publisher.dead_letter_delivery(failure.delivery.raw, reason, failure.delivery.queue)
        if burst:
            self._acknowledge(burst.deliveries())
        self._send_released()
        if burst.heartbeats:
            metrics.heartbeats_applied(len(burst.heartbeats))
        for agent, key in self.ctx.issued_keys.items():
            self.verifier.remember(agent, key)
        self.ctx.issued_keys.clear()
        self._flush_outbox()

    def _acknowledge(self, deliveries: list[Delivery]) -> None:
        if self._multiple_ack:
            # Every earlier delivery of this channel is settled already: one ack covers the burst.
            last = max(deliveries, key=lambda d: d.raw.delivery_tag).raw
            last.channel.basic_ack(last.delivery_tag, multiple=True)
            return
        for delivery in deliveries:
            delivery.raw.ack()

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

    def _compile(self) -> None:
        """The next window of the tasks still compiling, in a transaction of its own between bursts."""
        if not self.ctx.compile_wanted:
            return
        try:
            with self.applier.transaction():
                tasks.compile_some(self.ctx)
        except DB_ERRORS as exc:
            log.warning("database error compiling (%s); retrying", exc)
            self.ctx.rolled_back()
            database_proxy.close()
            self._stopping.wait(DB_RETRY_S)

    def _after_deliveries(self) -> None:
        now = time.monotonic()
        due = now >= self._next_tick
        if not (due or self.ctx.release_wanted):
            return
        try:
            database_proxy.connect(reuse_if_open=True)
            if due:
                with self.applier.transaction():
                    metrics.agents_lost(workers.check_lost(self.ctx))
                    fleet.check_schedules(self.ctx)
                    self.verifier.cut_off_revoked(self.ctx)
                if now >= self._next_sweep:
                    # The safety net: release even if no event asked for it.
                    self.ctx.release_wanted = True
                    with self.applier.transaction():
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
                self._release()
        except DB_ERRORS as exc:
            log.warning("database error in periodic work (%s); retrying", exc)
            self.ctx.rolled_back()
            database_proxy.close()
            self._stopping.wait(DB_RETRY_S)


    def _release(self) -> None:
        """Release chunks in a transaction of their own (when no burst did), then send them."""
        with self.applier.transaction():
            released = release.release(self.ctx)
        self._released = released
        self._send_released()

    def _send_released(self) -> None:
        """Send the committed releases without waiting for confirms; ``settle`` reports losses."""
        batch, self._released = self._released, []
        if not batch:
            return
        metrics.released(len(batch))
        chunk = self.publisher.chunk_message
        self.publisher.send_all([(chunk(assign, pool, priority), (assign.chunk_id, assign.lease_id))
                                 for assign, pool, priority in batch])


def _observe(kind: str, seconds: float) -> None:
    """Per-event metrics; a burst's heartbeats are counted as a batch after the commit instead."""
    if kind != messages.AgentHeartbeat.kind:
        metrics.EVENTS.labels(kind).inc()
        metrics.EVENT_SECONDS.labels(kind).observe(seconds)


def _idle(conn: Any, seconds: float) -> None:
    """Wait on a connection that consumes nothing, answering the broker's heartbeats."""
    try:
        conn.drain_events(timeout=seconds)
    except TimeoutError:
        pass
    conn.heartbeat_check()


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
