"""Standby dispatchers: of all the dispatchers of a namespace, exactly one is active.

The ``dispatcher_leader`` row of the namespace names the active dispatcher, its
``epoch`` and when its lease expires. A standby takes over an expired lease
with a compare-and-set that raises the epoch by one. The active dispatcher
checks its epoch with the first statement of *every* transaction it commits
(``check_fence``: ``UPDATE ... WHERE epoch = mine``, which also renews the
lease). So a dispatcher that was paused (SIGSTOP, a long GC, a frozen VM) and
wakes up after a takeover cannot commit anything: its fence matches no row and
its transaction rolls back. The fence statement takes the row's write lock, so
a takeover and a fenced transaction never interleave: on PostgreSQL the takeover
waits for the lock (``lock_timeout`` bounds the wait) and then sees the new
expiry; SQLite serialises every writer anyway.

A leader that is frozen *inside* a transaction holds that lock. On PostgreSQL
``idle_in_transaction_session_timeout`` (the lease) ends its session, so the
standby gets the lock. SQLite cannot take a lock from a stopped process; it is
meant for one machine (docs/architecture.md says so).

Safety comes from the fence alone; the lease only decides *when* a standby may
try. The clocks of the dispatchers' machines should agree to well within the
lease (NTP); skew can only delay or hasten a takeover, never let two commit.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from peewee import InterfaceError, OperationalError, PostgresqlDatabase

from common.errors import CorralError
from common.models import DispatcherLeader, database_proxy

log = logging.getLogger("dispatcher.leader")
DB_ERRORS = (OperationalError, InterfaceError)
# How many times per lease the active dispatcher renews it, and a standby looks.
RENEWALS_PER_LEASE = 3
POLLS_PER_LEASE = 5
# On PostgreSQL, how long a takeover waits for the fenced row's lock before it tries again.
TAKEOVER_LOCK_TIMEOUT_MS = 1000
_RENEW = "UPDATE dispatcher_leader SET renewed_at = ?, expires_at = ? WHERE namespace = ? AND epoch = ?"


class LeadershipLost(CorralError):
    """Another dispatcher took over this namespace: this one must stop applying anything."""


def default_identity() -> str:
    """``host:pid:random``: says where the active dispatcher runs, and is unique per process start."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Leader:
    """This dispatcher's side of the leader row: take over, fence, renew, step down."""

    def __init__(self, namespace: str, lease_s: float, clock: Callable[[], float] = time.time,
                 identity: str | None = None) -> None:
        self.namespace = namespace
        self.lease_s = lease_s
        self.clock = clock
        self.identity = identity or default_identity()
        self.epoch: int | None = None  # the epoch held, None while standing by
        self._valid_until = 0.0  # monotonic: the lease as this process last renewed it
        self._renewed_at = 0.0  # monotonic

    # -- questions ------------------------------------------------------------

    def is_active(self) -> bool:
        """True while this dispatcher holds the lease, as far as it knows (the fence decides)."""
        return self.epoch is not None and time.monotonic() < self._valid_until

    @property
    def amqp_heartbeat_s(self) -> int:
        """The consumer connection's AMQP heartbeat: short, so the broker drops a frozen leader's
        consumer (and hands its unacknowledged messages to the new one) within about a lease."""
        return max(1, int(self.lease_s // 2))

    # -- the fence, inside every transaction -------------------------------------

    def check_fence(self) -> None:
        """First statement of every transaction: renew the lease if the epoch is still ours.

        Raises LeadershipLost (the caller's transaction then rolls back) when another
        dispatcher took over, or when this one never was active.
        """
        if self.epoch is None:
            raise LeadershipLost("this dispatcher is standing by")
        started, now = time.monotonic(), self.clock()
        db = database_proxy.obj
        if isinstance(db, PostgresqlDatabase):
            # A session frozen inside a transaction must not hold the row lock for ever.
            db.execute_sql(f"SET LOCAL idle_in_transaction_session_timeout = {int(self.lease_s * 1000)}")
        # Hand-written: it runs in every transaction (dispatcher/sql.py).
        changed = db.execute_sql(_RENEW.replace("?", db.param),
                                 (now, now + self.lease_s, self.namespace, self.epoch)).rowcount
        if changed != 1:
            lost, self.epoch = self.epoch, None
            raise LeadershipLost(f"epoch {lost} of namespace {self.namespace} is over: "
                                 "another dispatcher took over")
        self._renewed_at = started
        self._valid_until = started + self.lease_s

    def renew_if_due(self) -> None:
        """Renew the lease in a transaction of its own when no transaction did lately."""
        if time.monotonic() - self._renewed_at < self.lease_s / RENEWALS_PER_LEASE:
            return
        try:
            database_proxy.connect(reuse_if_open=True)
            with database_proxy.atomic():
                self.check_fence()
        except DB_ERRORS as exc:
            log.warning("cannot renew the dispatcher lease (%s); %.1fs of it left", exc,
                        max(0.0, self._valid_until - time.monotonic()))
            database_proxy.close()
        if not self.is_active():
            self.epoch = None
            raise LeadershipLost("the lease expired before it could be renewed")

    # -- taking over and handing back --------------------------------------------

    def try_acquire(self) -> bool:
        """One attempt to become (or stay) active, in its own transaction; True when active."""
        started, now = time.monotonic(), self.clock()
        database_proxy.connect(reuse_if_open=True)
        with database_proxy.atomic():
            if isinstance(database_proxy.obj, PostgresqlDatabase):
                database_proxy.execute_sql(f"SET LOCAL lock_timeout = {TAKEOVER_LOCK_TIMEOUT_MS}")
            row = self._row()
            if row.holder == self.identity and row.epoch == self.epoch:
                self.check_fence()  # still ours (after a broker reconnect): keep the epoch
                return True
            self.epoch = None
            if row.holder and row.expires_at > now:
                return False
            taken = (DispatcherLeader.update(epoch=row.epoch + 1, holder=self.identity, acquired_at=now,
                                             renewed_at=now, expires_at=now + self.lease_s)
                     .where(DispatcherLeader.namespace == self.namespace,
                            DispatcherLeader.epoch == row.epoch,
                            DispatcherLeader.expires_at == row.expires_at).execute())
        if taken != 1:
            return False
        self.epoch = row.epoch + 1
        self._renewed_at, self._valid_until = started, started + self.lease_s
        log.info("dispatcher %s: standby -> active (namespace %s, epoch %d; previous %s)",
                 self.identity, self.namespace, self.epoch, row.holder or "none")
        return True

    def _row(self) -> DispatcherLeader:
        row = DispatcherLeader.get_or_none(DispatcherLeader.namespace == self.namespace)
        if row is None:
            DispatcherLeader.insert(namespace=self.namespace).on_conflict_ignore().execute()
            row = DispatcherLeader.get(DispatcherLeader.namespace == self.namespace)
        return row

    def wait_until_active(self, stopping: threading.Event, idle: Callable[[float], None]) -> bool:
        """Stand by until this dispatcher is active (True) or ``stopping`` is set (False).

        ``idle(seconds)`` waits between attempts while keeping the broker connection alive
        (reading and sending AMQP heartbeats), so a standby is ready to consume at once.
        """
        announced = False
        while not stopping.is_set():
            try:
                if self.try_acquire():
                    return True
            except DB_ERRORS as exc:
                log.warning("standby: cannot read the dispatcher lease (%s); trying again", exc)
                database_proxy.close()
            if not announced:
                log.info("dispatcher %s: standing by (namespace %s is led by %s)", self.identity,
                         self.namespace, self.holder() or "?")
                announced = True
            idle(self.lease_s / POLLS_PER_LEASE)
        return False

    def holder(self) -> str:
        try:
            row = DispatcherLeader.get_or_none(DispatcherLeader.namespace == self.namespace)
        except DB_ERRORS:
            return ""
        return row.holder if row is not None else ""

    def step_down(self, release: bool) -> None:
        """Stop being active; with ``release`` also end the lease so a standby takes over at once."""
        epoch, self.epoch = self.epoch, None
        if epoch is None or not release:
            return
        try:
            database_proxy.connect(reuse_if_open=True)
            with database_proxy.atomic():
                DispatcherLeader.update(expires_at=0.0).where(
                    DispatcherLeader.namespace == self.namespace, DispatcherLeader.epoch == epoch).execute()
            log.info("dispatcher %s: active -> stopped (lease of epoch %d released)", self.identity, epoch)
        except DB_ERRORS as exc:
            log.warning("could not release the dispatcher lease (%s); it expires in %.0fs", exc, self.lease_s)

