"""Change events: after each commit, tell the gateways what changed (``farm.changed``).

The state handlers (or this module, from the message that was applied) note
what a transaction changed in ``ctx.changed``; after the commit the dispatcher
calls ``ChangePublisher.after_commit`` once. Publishing can never slow the
farm down: the changes go into a bounded in-memory queue (dropped when it is
full) and a background thread sends them on a connection of its own, without
publisher confirms, as non-persistent messages on the transient change
exchange. A change event that is lost costs a client a refetch, nothing more:
``/events`` clients refetch on every reconnect.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from kombu import Producer

from common import messages
from common.bus import CONNECTION_ERRORS, Bus
from common.topology import CHANGES_KEY
from dispatcher.context import Context

log = logging.getLogger("dispatcher.changes")
QUEUE_MAX = 10_000  # pending commits' change lists before new ones are dropped
BATCH_MAX = 500  # changes per farm.changed message
RECONNECT_EVERY_S = 2.0
# At most one farm.changed message this often: at hundreds of commits a second, one message per
# commit cost the dispatcher a tenth of its time, and a dashboard gains nothing from finer steps.
MIN_INTERVAL_S = 0.05

TASK_MESSAGES = (messages.TaskSubmitted, messages.TaskUpdate, messages.TaskCancel,
                 messages.TaskBlocklistClear, messages.TaskRetry)
CHUNK_MESSAGES = (messages.ChunkStarted, messages.ChunkProgress, messages.ChunkFinished)
AGENT_MESSAGES = (messages.AgentHello, messages.AgentGoodbye)


# -- recording (inside the transaction) ------------------------------------

def task(ctx: Context, task_id: int) -> None:
    ctx.changed[("task", task_id)] = {"type": "task", "id": task_id, "task": task_id}


def chunk(ctx: Context, chunk_id: int, task_id: int | None = None) -> None:
    key = ("chunk", chunk_id)
    if task_id is None and key in ctx.changed:
        return
    ctx.changed[key] = {"type": "chunk", "id": chunk_id, "task": task_id}


def worker(ctx: Context, worker_id: int | None = None, name: str | None = None) -> None:
    ctx.changed[("worker", worker_id, name)] = {"type": "worker", "id": worker_id, "name": name}


def heartbeats(ctx: Context, count: int) -> None:
    ctx.changed[("heartbeats",)] = {"type": "heartbeats", "count": count}


def record_message(ctx: Context, msg: Any) -> None:
    """Note what applying ``msg`` (a message, or a list of heartbeats) changes."""
    if isinstance(msg, list):
        heartbeats(ctx, len(msg))
    elif isinstance(msg, TASK_MESSAGES):
        task(ctx, msg.task_id)
    elif isinstance(msg, CHUNK_MESSAGES):
        chunk(ctx, msg.chunk_id)
        worker(ctx, name=msg.agent)
    elif isinstance(msg, AGENT_MESSAGES):
        worker(ctx, name=msg.agent)
    elif isinstance(msg, messages.WorkerUpdate):
        worker(ctx, msg.worker_id)


# -- publishing (after the commit) -----------------------------------------

class ChangePublisher:
    """Sends the changes of each commit in the background; ``after_commit`` never blocks."""

    def __init__(self, bus: Bus, clock: Any = time.time) -> None:
        self.bus = bus
        self.clock = clock
        # (commit time, the commit's changes)
        self.pending: queue.Queue[tuple[float, list[dict]]] = queue.Queue(maxsize=QUEUE_MAX)
        self.dropped = 0
        self.sent = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._last_sent = 0.0  # time.monotonic() of the last message taken for sending

    def after_commit(self, ctx: Context, msg: Any = None) -> None:
        """Hand over what the committed transaction changed (and what ``msg`` implies)."""
        if msg is not None:
            record_message(ctx, msg)
        if not ctx.changed:
            return
        changed, ctx.changed = list(ctx.changed.values()), {}
        self._ensure_thread()
        try:
            self.pending.put_nowait((self.clock(), changed))
        except queue.Full:
            self.dropped += len(changed)

    def discard(self, ctx: Context) -> None:
        """The transaction rolled back: nothing it noted happened."""
        ctx.changed.clear()

    def close(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)

    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="changes", daemon=True)
                    self._thread.start()

    def _take_batch(self) -> tuple[float, list[dict]]:
        """The oldest commit's time and the changes of every commit waiting (up to ``BATCH_MAX``).

        Waits until ``MIN_INTERVAL_S`` after the previous message, so commits that
        follow each other closely share one.
        """
        committed_at, batch = self.pending.get(timeout=0.5)
        self._stopping.wait(max(0.0, self._last_sent + MIN_INTERVAL_S - time.monotonic()))
        self._last_sent = time.monotonic()
        while len(batch) < BATCH_MAX:
            try:
                batch.extend(self.pending.get_nowait()[1])
            except queue.Empty:
                break
        return committed_at, _dedupe(batch)

    def _run(self) -> None:
        conn, producer, next_try = None, None, 0.0
        while not self._stopping.is_set():
            try:
                committed_at, batch = self._take_batch()
            except queue.Empty:
                continue
            try:
                if producer is None:
                    if time.monotonic() < next_try:
                        self.dropped += len(batch)
                        continue
                    conn, producer = self._connect()
                body = messages.encode(messages.FarmChanged(changes=batch, committed_at=committed_at))
                producer.publish(body, exchange=self.bus.topology.changes, routing_key=CHANGES_KEY,
                                 delivery_mode=1, content_type="application/json", content_encoding="utf-8")
                self.sent += len(batch)
            except CONNECTION_ERRORS as exc:
                log.warning("change events not sent (%s); clients will refetch on reconnect", exc)
                self.dropped += len(batch)
                _release(conn)
                conn, producer, next_try = None, None, time.monotonic() + RECONNECT_EVERY_S
        _release(conn)

    def _connect(self) -> tuple[Any, Producer]:
        conn = self.bus.connection()
        # Best effort by design: no publisher confirms to wait for.
        conn.transport_options.pop("confirm_publish", None)
        conn.ensure_connection(max_retries=1)
        channel = conn.channel()
        self.bus.topology.changes(channel).declare()
        return conn, Producer(channel)


def _dedupe(batch: list[dict]) -> list[dict]:
    seen: dict[tuple, dict] = {}
    for change in batch:
        key = (change["type"], change.get("id"), change.get("name"))
        if change["type"] == "heartbeats" and key in seen:
            seen[key] = {**change, "count": seen[key]["count"] + change["count"]}
        elif key not in seen or change.get("task") is not None:
            seen[key] = change
    return list(seen.values())


def _release(conn: Any) -> None:
    if conn is not None:
        try:
            conn.release()
        except Exception:  # noqa: BLE001 - the connection is already broken
            pass
