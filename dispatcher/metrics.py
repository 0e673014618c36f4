"""The dispatcher's process metrics, served by ``corral dispatcher --metrics-port P``.

These describe this process (what it applied, how fast), so they live in its
memory and start from zero when it restarts; the farm's state and the durable
chunk counters are the gateway's ``/metrics`` (api_gateway/metrics.py). The loop
calls the functions here with one line per concern (dispatcher/service.py).
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric

from common.build import version

log = logging.getLogger("dispatcher.metrics")

EVENTS = Counter("corral_dispatcher_events", "Messages applied, by kind", ("kind",))
EVENT_SECONDS = Histogram("corral_dispatcher_event_seconds", "Time to apply one message (its "
                          "transaction included), by kind", ("kind",),
                          buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                                   2.5, 5.0))
RELEASE_BATCH = Histogram("corral_dispatcher_release_batch_chunks", "Chunks published per release pass "
                          "that published any", buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000))
HEARTBEATS = Counter("corral_dispatcher_heartbeats", "Agent heartbeats applied")
LOST_AGENTS = Counter("corral_dispatcher_lost_agents", "Agents declared lost (no heartbeat in time)")
DEAD_LETTERS = Counter("corral_dispatcher_dead_letters", "Messages the dispatcher dead-lettered")


@contextlib.contextmanager
def timed(kind: str) -> Iterator[None]:
    """Count and time applying one message of ``kind``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        EVENTS.labels(kind).inc()
        EVENT_SECONDS.labels(kind).observe(time.perf_counter() - started)


def released(count: int) -> int:
    if count:
        RELEASE_BATCH.observe(count)
    return count


def heartbeats_applied(count: int) -> None:
    HEARTBEATS.inc(count)


def agents_lost(count: int) -> int:
    if count:
        LOST_AGENTS.inc(count)
    return count


class CountingPublisher:
    """A publisher that counts what it dead-letters; everything else goes straight through."""

    def __init__(self, publisher: Any) -> None:
        self._publisher = publisher

    def dead_letter(self, *args: Any, **kwargs: Any) -> Any:
        DEAD_LETTERS.inc()
        return self._publisher.dead_letter(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._publisher, name)


def instrument(publisher: Any) -> CountingPublisher:
    return CountingPublisher(publisher)


class _StateCollector:
    """Whether this dispatcher is the active one, and the build, read at scrape time."""

    def __init__(self, dispatcher: Any) -> None:
        self.dispatcher = dispatcher

    def collect(self) -> Iterator[Metric]:
        # Dispatcher.is_active() comes with standby dispatchers; a dispatcher without it is the only one.
        is_active = getattr(self.dispatcher, "is_active", None)
        active = GaugeMetricFamily("corral_dispatcher_active", "1 if this dispatcher is the active one")
        active.add_metric((), 1 if is_active is None or is_active() else 0)
        yield active
        info = GaugeMetricFamily("corral_build_info", "Corral's version (always 1)", labels=("version",))
        info.add_metric((version(),), 1)
        yield info



def serve(dispatcher: Any, port: int, host: str = "127.0.0.1") -> None:
    """Serve this process's metrics on http://host:port/metrics (a daemon thread)."""
    start_http_server(port, addr=host)  # first: a busy port leaves nothing registered
    REGISTRY.register(_StateCollector(dispatcher))
    log.info("dispatcher metrics on http://%s:%d/metrics", host, port)
