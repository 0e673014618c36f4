"""``GET /events``: the farm's changes as Server-Sent Events, for the web UI and pipeline tools.

Each event is one change (``data: {"type": "task", "id": 12, "task": 12}``)
with an ``id:``; a client that reconnects with ``Last-Event-ID`` gets what it
missed, or a ``reset`` event when that is not possible. A comment line every
``HEARTBEAT_S`` keeps proxies from closing an idle stream and lets the server
notice a client that went away. A stream ends after ``MAX_STREAM_S``
(browsers reconnect by themselves, with ``Last-Event-ID``), so a logged-out
session or a revoked token cannot keep one open for long.

Each stream holds one serving thread: the gateway runs gunicorn's ``gthread``
worker class with enough threads (``corral gateway --threads``), and each
process keeps at most ``max_streams`` open (then 503 with Retry-After).
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

import falcon

from api_gateway.changefeed import ChangeFeed, EventFilter, Subscription
from common.errors import ValidationError
from common.models import database_proxy

HEARTBEAT_S = 15.0
MAX_STREAM_S = 300.0
RETRY_MS = 2000
# At most one write per stream per this many seconds under a burst; the first change after a
# quiet spell goes out at once. 50 open pages on a busy farm then cost 500 writes a second, not 50x
# the change rate.
MIN_WRITE_GAP_S = 0.1
TYPES = ("task", "chunk", "worker", "heartbeats")


class StreamsFull(falcon.HTTPServiceUnavailable):
    def __init__(self, limit: int) -> None:
        super().__init__(description=f"this gateway process already serves {limit} event streams; retry",
                         retry_after=5)


def parse_filter(req: falcon.Request) -> EventFilter:
    types: frozenset[str] = frozenset()
    raw = req.get_param("type")
    if raw:
        types = frozenset(part.strip() for part in raw.split(",") if part.strip())
        unknown = types - set(TYPES)
        if unknown:
            raise ValidationError("type", f"must be among {', '.join(TYPES)}")
    task = req.get_param_as_int("task", min_value=1, max_value=2**63 - 1)
    worker = req.get_param_as_int("worker", min_value=1, max_value=2**63 - 1)
    return EventFilter(types, task, worker)


def format_event(event_id: str | None, change: dict) -> bytes:
    lines = []
    if event_id:
        lines.append(f"id: {event_id}")
    if change.get("type") == "reset":
        lines.append("event: reset")
    lines.append("data: " + json.dumps(change, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()


class EventStream:
    """``/events``."""

    def __init__(self, feed: ChangeFeed, max_streams: int, heartbeat_s: float = HEARTBEAT_S,
                 max_stream_s: float = MAX_STREAM_S) -> None:
        self.feed = feed
        self.max_streams = max_streams
        self.heartbeat_s = heartbeat_s
        self.max_stream_s = max_stream_s
        self._open = 0
        self._lock = threading.Lock()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        event_filter = parse_filter(req)
        with self._lock:
            if self._open >= self.max_streams:
                raise StreamsFull(self.max_streams)
            self._open += 1
        try:
            self.feed.start()
            sub = self.feed.fanout.subscribe(event_filter, req.get_header("Last-Event-ID"))
        except BaseException:
            self._closed()
            raise
        # A stream may stay open for minutes: it must not hold one of the database's connections.
        database_proxy.close()
        resp.content_type = "text/event-stream; charset=utf-8"
        resp.cache_control = ["no-store"]
        resp.set_header("X-Accel-Buffering", "no")  # nginx: do not buffer the stream
        resp.stream = _Body(self._events(sub), lambda: self._release(sub))

    def _closed(self) -> None:
        with self._lock:
            self._open -= 1

    def _release(self, sub: Subscription) -> None:
        self.feed.fanout.unsubscribe(sub)
        self._closed()

    def _events(self, sub: Subscription) -> Iterator[bytes]:
        yield f"retry: {RETRY_MS}\n: connected; heartbeat every {self.heartbeat_s:g}s\n\n".encode()
        ends = time.monotonic() + self.max_stream_s
        last_write = 0.0
        while time.monotonic() < ends:
            items = sub.take(timeout=min(self.heartbeat_s, max(0.0, ends - time.monotonic())))
            if not items:
                yield b": heartbeat\n\n"
                continue
            wait = last_write + MIN_WRITE_GAP_S - time.monotonic()
            if wait > 0:  # a burst: gather what else arrives, then write it all at once
                time.sleep(wait)
                items += sub.take(timeout=0)
            last_write = time.monotonic()
            yield b"".join(format_event(*item) for item in items)


class _Body:
    """The stream's body; ``close`` (which the WSGI server always calls) frees its slot exactly once."""

    def __init__(self, events: Iterator[bytes], release: Callable[[], None]) -> None:
        self.events = events
        self._release: Callable[[], None] | None = release

    def __iter__(self) -> Iterator[bytes]:
        return self.events

    def close(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            self.events.close()  # type: ignore[attr-defined]
            release()
