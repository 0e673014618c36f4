"""Group commit: a drained burst of events applied in one transaction.

The dispatcher collects the deliveries that have already arrived (a burst),
applies all of them in one database transaction and acknowledges them together
after the commit. A crash before the commit rolls everything back and the
broker redelivers the whole burst; every handler is idempotent, so applying an
event again changes nothing.

A handler that raises (a bug, or a message the schema let through that the
state machine cannot take) must not cost the other events of its burst: the
burst is rolled back and applied again with a savepoint around each event, and
only the events that fail again are dead-lettered. The fast path pays for no
savepoints. Database errors and a lost leadership are not isolated: they abort
the burst, and the dispatcher stands by (the broker hands the unacknowledged
burst to whichever dispatcher is active).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from peewee import InterfaceError, OperationalError

from common import messages
from common.models import database_proxy
from dispatcher import chunks, stats
from dispatcher.context import Context, Refused
from dispatcher.leader import LeadershipLost

log = logging.getLogger("dispatcher.burst")
DB_ERRORS = (OperationalError, InterfaceError)
# What no savepoint can isolate: the whole transaction is lost.
FATAL = DB_ERRORS + (LeadershipLost,)

Handler = Callable[[Context, Any], None]
# Called once per applied event (or heartbeat batch) with its kind and seconds: the metrics hook.
Observer = Callable[[str, float], None]
# Called inside the transaction after each applied event (or heartbeat batch): the change-events hook.
Recorder = Callable[[Context, Any], None]


@dataclasses.dataclass
class Delivery:
    """A decoded, verified message and the broker delivery it came in."""

    msg: messages.Message
    raw: Any  # the kombu message, acknowledged after the commit
    queue: str = ""  # the queue it was consumed from, for a dead letter


@dataclasses.dataclass
class Failure:
    """An event whose handler raised even on its own: it is dead-lettered."""

    delivery: Delivery
    error: BaseException


@dataclasses.dataclass
class Burst:
    """Deliveries taken since the last commit: heartbeats apart, they are applied as one batch."""

    events: list[Delivery] = dataclasses.field(default_factory=list)
    heartbeats: list[Delivery] = dataclasses.field(default_factory=list)
    since: float = 0.0  # time.monotonic() of the first delivery

    def add(self, delivery: Delivery) -> None:
        if not self:
            self.since = time.monotonic()
        if isinstance(delivery.msg, messages.AgentHeartbeat):
            self.heartbeats.append(delivery)
        else:
            self.events.append(delivery)

    def __len__(self) -> int:
        return len(self.events) + len(self.heartbeats)

    def deliveries(self) -> list[Delivery]:
        return self.events + self.heartbeats


class Applier:
    """Applies bursts with the handler table; ``in_transaction`` runs first inside every transaction.

    ``in_transaction`` is where a check that must hold for the whole commit goes
    (a standby dispatcher's fencing check): if it raises, nothing of the burst
    is written. ``record`` runs after each event's handler, in the same
    transaction (or savepoint), to note what the event changed.
    """

    def __init__(self, ctx: Context, handlers: dict[type[messages.Message], Handler],
                 heartbeats: Handler, in_transaction: Callable[[], None] = lambda: None,
                 observe: Observer = lambda kind, seconds: None,
                 record: Recorder = lambda ctx, msg: None) -> None:
        self.ctx = ctx
        self.handlers = handlers
        self.heartbeats = heartbeats
        self.in_transaction = in_transaction
        self.observe = observe
        self.record = record

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One database transaction with the in-transaction check; the only place bursts open one.

        What the transaction's chunk reports did to their tasks, and what its
        events counted for the farm statistics, are written last, one statement
        per task and one for the counts, so they commit (or roll back) with them.
        """
        database_proxy.connect(reuse_if_open=True)
        with database_proxy.atomic():
            self.in_transaction()
            yield
            chunks.flush_tasks(self.ctx)
            stats.flush(self.ctx)

    def apply(self, burst: Burst, then: Callable[[], None] = lambda: None) -> list[Failure]:
        """Apply and commit the burst; return the events to dead-letter.

        ``then`` runs inside the same transaction after the events (the
        dispatcher releases chunks there), and again if the burst is applied a
        second time to isolate a failing event. Database errors and
        LeadershipLost propagate, with nothing of the burst written.
        """
        try:
            with self.transaction():
                self._apply_all(burst, isolate=False)
                chunks.flush_tasks(self.ctx)
                then()
            return []
        except FATAL:
            self.ctx.rolled_back()
            raise
        except Exception:  # noqa: BLE001 - find the culprit, keep the rest
            log.warning("an event of a burst of %d failed; applying them one at a time to isolate it",
                        len(burst), exc_info=log.isEnabledFor(logging.DEBUG))
            self.ctx.rolled_back()
        try:
            with self.transaction():
                failures = self._apply_all(burst, isolate=True)
                chunks.flush_tasks(self.ctx)
                then()
                return failures
        except FATAL:
            self.ctx.rolled_back()
            raise

    def _apply_all(self, burst: Burst, isolate: bool) -> list[Failure]:
        failures: list[Failure] = []
        for delivery in burst.events:
            handler = self.handlers[type(delivery.msg)]
            if not isinstance(delivery.msg, chunks.ChunkReport):
                # Other handlers read task rows themselves: the reports' task counters first.
                chunks.flush_tasks(self.ctx)
            error = self._apply_one(handler, delivery.msg, delivery.msg.kind, isolate)
            if error is not None:
                failures.append(Failure(delivery, error))
        if burst.heartbeats:
            beats = [d.msg for d in burst.heartbeats]
            error = self._apply_one(self.heartbeats, beats, messages.AgentHeartbeat.kind, isolate)
            if error is not None:
                failures += [Failure(d, error) for d in burst.heartbeats]
        return failures

    def _apply_one(self, handler: Handler, msg: Any, kind: str, isolate: bool) -> BaseException | None:
        started = time.perf_counter()
        if not isolate:
            handler(self.ctx, msg)
            self.record(self.ctx, msg)
            self.observe(kind, time.perf_counter() - started)
            return None
        mark = self.ctx.mark()
        try:
            with database_proxy.atomic():  # a savepoint: only this event is undone
                handler(self.ctx, msg)
                self.record(self.ctx, msg)
        except FATAL:
            raise
        except Refused as exc:
            log.warning("dead-lettering a %s: %s", kind, exc)
            self.ctx.undo_to(mark)
            return exc
        except Exception as exc:  # noqa: BLE001 - a bug in one handler must not stop the farm
            log.exception("cannot apply %s; dead-lettering it", kind)
            self.ctx.undo_to(mark)
            return exc
        self.observe(kind, time.perf_counter() - started)
        return None
