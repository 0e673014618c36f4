"""The gateway's side of the change events: consume them once per process, fan them out to streams.

``ChangeFeed`` owns one background thread per gateway process. It binds an
exclusive, auto-deleted queue to the dispatcher's change exchange, completes
each change (a chunk's task, a worker's id and name, from the database, cached)
and hands it to every open ``/events`` stream whose filter matches.

Every change gets an id ``<feed>.<n>``; the last ``RING_SIZE`` are kept, so a
client that reconnects with ``Last-Event-ID`` gets what it missed. When that
is impossible (the id is from another gateway process, too old, or the feed's
broker connection dropped), the client is sent a ``reset`` event: refetch
everything.
"""
from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import queue
import secrets
import threading
from collections.abc import Callable
from typing import Any

from common import messages
from common.bus import CONNECTION_ERRORS, Bus, body_bytes
from common.errors import MessageError
from common.models import Chunk, Worker, database_proxy

log = logging.getLogger(__name__)
RING_SIZE = 2000
STREAM_QUEUE_MAX = 1000
CACHE_MAX = 100_000
RESET: dict[str, Any] = {"type": "reset"}


@dataclasses.dataclass(frozen=True)
class EventFilter:
    """Which changes a stream wants: by type, by task id (its task and chunks), by worker id."""

    types: frozenset[str] = frozenset()
    task: int | None = None
    worker: int | None = None

    def matches(self, change: dict[str, Any]) -> bool:
        if self.types and change["type"] not in self.types:
            return False
        if self.task is not None and change.get("task") != self.task:
            return False
        if self.worker is not None:
            # Heartbeats carry no id: they may have changed this worker's readings.
            return change["type"] == "heartbeats" or (change["type"] == "worker"
                                                      and change.get("id") == self.worker)
        return True


class Subscription:
    """One open stream's queue of ``(event id, change)``; a full queue turns into one reset."""

    def take(self, timeout: float, most: int = 200) -> list[tuple[str | None, dict[str, Any]]]:
        """What is waiting (at least one item, waiting up to ``timeout`` for it); [] on timeout."""
        first = self.get(timeout)
        if first is None:
            return []
        items = [first]
        while len(items) < most:
            try:
                items.append(self.queue.get_nowait())
            except queue.Empty:
                break
        return items

    def __init__(self, event_filter: EventFilter) -> None:
        self.filter = event_filter
        self.queue: queue.Queue[tuple[str | None, dict[str, Any]]] = queue.Queue(STREAM_QUEUE_MAX)

    def offer(self, event_id: str | None, change: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait((event_id, change))
        except queue.Full:  # a slow client: drop its backlog, tell it to refetch
            with self.queue.mutex:
                self.queue.queue.clear()
            self.queue.put_nowait((None, RESET))

    def get(self, timeout: float) -> tuple[str | None, dict[str, Any]] | None:
        try:
            return self.queue.get(timeout=timeout) if timeout > 0 else self.queue.get_nowait()
        except queue.Empty:
            return None


class Fanout:
    """The ring of recent changes and the open subscriptions (no broker: unit-testable)."""

    def __init__(self, ring_size: int = RING_SIZE) -> None:
        self.feed_id = secrets.token_hex(4)
        self._seq = itertools.count(1)
        self._last = 0
        self._ring: collections.deque[tuple[int, dict[str, Any]]] = collections.deque(maxlen=ring_size)
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._subs)

    def publish(self, change: dict[str, Any]) -> str:
        with self._lock:
            self._last = seq = next(self._seq)
            self._ring.append((seq, change))
            event_id = f"{self.feed_id}.{seq}"
            for sub in self._subs:
                if sub.filter.matches(change):
                    sub.offer(event_id, change)
        return event_id

    def reset_all(self) -> None:
        """Changes may have been missed (the broker connection dropped): every stream refetches."""
        with self._lock:
            self._ring.clear()
            for sub in self._subs:
                sub.offer(None, RESET)

    def subscribe(self, event_filter: EventFilter, last_event_id: str | None = None) -> Subscription:
        sub = Subscription(event_filter)
        with self._lock:
            if last_event_id:
                self._catch_up(sub, last_event_id)
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    def _catch_up(self, sub: Subscription, last_event_id: str) -> None:
        feed, _, number = last_event_id.partition(".")
        seen = int(number) if number.isdigit() else -1
        oldest = self._ring[0][0] if self._ring else self._last + 1
        if feed != self.feed_id or seen < oldest - 1 or seen > self._last:
            sub.offer(None, RESET)
            return
        for seq, change in self._ring:
            if seq > seen and sub.filter.matches(change):
                sub.offer(f"{self.feed_id}.{seq}", change)


class Completer:
    """Fills in what the dispatcher did not know cheaply: a chunk's task, a worker's id or name."""

    def __init__(self) -> None:
        self.task_of_chunk: dict[int, int] = {}
        self.worker_ids: dict[str, int] = {}
        self.worker_names: dict[int, str] = {}

    def complete(self, change: dict[str, Any]) -> dict[str, Any]:
        kind = change.get("type")
        if kind == "chunk" and change.get("id") is not None:
            if change.get("task") is None:
                change["task"] = self._task_of(change["id"])
        elif kind == "worker":
            if change.get("id") is None and change.get("name"):
                change["id"] = self._worker_id(change["name"])
            elif change.get("name") is None and change.get("id") is not None:
                change["name"] = self._worker_name(change["id"])
        return change

    def _task_of(self, chunk_id: int) -> int | None:
        if chunk_id not in self.task_of_chunk:
            row = Chunk.select(Chunk.task).where(Chunk.id == chunk_id).tuples().first()
            if row is None:
                return None
            _bounded(self.task_of_chunk)[chunk_id] = row[0]
        return self.task_of_chunk[chunk_id]

    def _worker_id(self, name: str) -> int | None:
        if name not in self.worker_ids:
            row = Worker.select(Worker.id).where(Worker.name == name).tuples().first()
            if row is None:
                return None
            _bounded(self.worker_ids)[name] = row[0]
            self.worker_names[row[0]] = name
        return self.worker_ids[name]

    def _worker_name(self, worker_id: int) -> str | None:
        if worker_id not in self.worker_names:
            row = Worker.select(Worker.name).where(Worker.id == worker_id).tuples().first()
            if row is None:
                return None
            _bounded(self.worker_names)[worker_id] = row[0]
        return self.worker_names[worker_id]


def _bounded(cache: dict) -> dict:
    if len(cache) >= CACHE_MAX:
        cache.clear()
    return cache


class ChangeFeed:
    """One consumer of the change exchange per gateway process, started by the first stream."""

    def __init__(self, bus: Bus, fanout: Fanout | None = None,
                 completer: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        self.bus = bus
        self.fanout = fanout or Fanout()
        self.complete = completer or Completer().complete
        self.connected = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start consuming (once per process; a no-op afterwards). Waits briefly for the binding."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="change-feed", daemon=True)
                self._thread.start()
        self.connected.wait(5)

    def stop(self) -> None:
        self._stopping.set()

    def _run(self) -> None:
        delay = 0.5
        while not self._stopping.is_set():
            try:
                self._consume()
                delay = 0.5
            except CONNECTION_ERRORS as exc:
                log.warning("change feed lost the broker (%s); reconnecting in %.1fs", exc, delay)
            self.connected.clear()
            self.fanout.reset_all()
            self._stopping.wait(delay)
            delay = min(delay * 2, 10.0)

    def _consume(self) -> None:
        from kombu import Consumer

        listener = f"gw-{self.fanout.feed_id}-{secrets.token_hex(3)}"
        with self.bus.connection(heartbeat=20) as conn:
            conn.ensure_connection(max_retries=1)
            channel = conn.channel()
            self.bus.topology.changes(channel).declare()
            listen = self.bus.topology.change_listener_queue(listener)
            with Consumer(channel, queues=[listen], on_message=self._on_message, no_ack=True):
                self.connected.set()
                log.info("change feed listening on %s", listen.name)
                while not self._stopping.is_set():
                    try:
                        conn.drain_events(timeout=1.0)
                    except TimeoutError:
                        conn.heartbeat_check()

    def _on_message(self, message: Any) -> None:
        try:
            msg = messages.decode(body_bytes(message))
        except MessageError as exc:
            log.warning("ignoring a change event that does not decode: %s", exc)
            return
        if not isinstance(msg, messages.FarmChanged):
            return
        try:
            database_proxy.connect(reuse_if_open=True)
            for change in msg.changes:
                if isinstance(change, dict) and isinstance(change.get("type"), str):
                    self.fanout.publish(self.complete({**change, "at": msg.committed_at}))
        except Exception:  # noqa: BLE001 - a database hiccup must not end the feed
            log.exception("could not complete a change event; streams will refetch")
            database_proxy.close()
            self.fanout.reset_all()
