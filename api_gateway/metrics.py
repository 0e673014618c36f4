"""``GET /metrics``: the farm's state and the API's own request metrics, in Prometheus text format.

Farm-state gauges and the durable chunk counters are read from the database at
scrape time by ``FarmCollector``, so every gunicorn process answers the same.
Request metrics are counted in the process that served the request; under
gunicorn ``corral gateway`` sets ``PROMETHEUS_MULTIPROC_DIR`` and prometheus_client
sums every process's files at scrape time (its multiprocess mode). That variable
is read when prometheus_client is imported, so it must be set before the gateway
starts. docs/operations.md lists every metric.
"""
from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import falcon
from peewee import fn
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from api_gateway.auth import plain_template
from common import farmstats
from common.build import version
from common.models import (
    DISABLED,
    OFFLINE,
    PENDING,
    QUEUED,
    RELEASED,
    RENDERING,
    TASK_STATUSES,
    Chunk,
    Task,
    Worker,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
WORKER_STATES = ("idle", "busy", "asleep", "stopping", "disabled", "offline")
KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
UNMATCHED = "unmatched"  # requests that matched no route share one label value

# Registered here for a single process; in multiprocess mode their values live in files.
PROCESS_REGISTRY = CollectorRegistry()
REQUESTS = Counter("corral_api_requests", "API requests answered", ("route", "method", "code"),
                   registry=PROCESS_REGISTRY)
REQUEST_SECONDS = Histogram("corral_api_request_duration_seconds", "Time to answer an API request",
                            ("route", "method"), registry=PROCESS_REGISTRY)


class RequestMetrics:
    """Middleware: counts and times every request by route template, method and status code."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.metrics_started = time.perf_counter()

    def process_response(self, req: falcon.Request, resp: falcon.Response,
                         resource: Any, req_succeeded: bool) -> None:
        started = getattr(req.context, "metrics_started", None)
        if started is None:
            return
        route = plain_template(req.uri_template) if req.uri_template else UNMATCHED
        method = req.method if req.method in KNOWN_METHODS else "other"
        REQUESTS.labels(route, method, str(resp.status_code)).inc()
        REQUEST_SECONDS.labels(route, method).observe(time.perf_counter() - started)


class FarmCollector:
    """Reads the farm's state from the database on every scrape (a handful of grouped queries)."""

    def collect(self) -> Iterator[Metric]:
        workers = _worker_rows()
        yield build_info()
        yield tasks_by_state()
        yield chunks_pending(workers)
        yield workers_by_state(workers)
        yield from durable_counts()


def build_info() -> Metric:
    info = GaugeMetricFamily("corral_build_info", "Corral's version (always 1)", labels=("version",))
    info.add_metric((version(),), 1)
    return info


def tasks_by_state() -> Metric:
    counts = dict.fromkeys(TASK_STATUSES, 0)
    counts.update(Task.select(Task.status, fn.COUNT(Task.id)).group_by(Task.status).tuples())
    gauge = GaugeMetricFamily("corral_tasks", "Tasks by state", labels=("state",))
    for state in TASK_STATUSES:
        gauge.add_metric((state,), counts.get(state, 0))
    return gauge


WorkerRow = tuple[list[str], list[str], str, str, "str | None", bool, "str | None"]


def _worker_rows() -> list[WorkerRow]:
    return list(Worker.select(Worker.pools, Worker.commands, Worker.status, Worker.connection,
                              Worker.current_lease, Worker.asleep, Worker.pending_action).tuples())


def chunks_pending(workers: list[WorkerRow]) -> Metric:
    """Chunks of queued or rendering tasks waiting to run (pending, or released and not started).

    Every (pool, command) an agent has declared is reported, with 0 when nothing
    waits, so an autoscaler's query always has a series to read.
    """
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for pools, commands, *_ in workers:
        for pool in pools or ():
            for command in commands or ():
                counts[(pool, command)] += 0
    waiting = (Chunk.select(Task.pool, Chunk.command, fn.COUNT(Chunk.id)).join(Task)
               .where(Chunk.status.in_((PENDING, RELEASED)), Task.status.in_((QUEUED, RENDERING)))
               .group_by(Task.pool, Chunk.command).tuples())
    for pool, command, count in waiting:
        counts[(pool, command)] += count
    gauge = GaugeMetricFamily("corral_chunks_pending", "Chunks waiting to run, by pool and command: "
                              "the autoscaling signal", labels=("pool", "command"))
    for (pool, command), count in sorted(counts.items()):
        gauge.add_metric((pool, command), count)
    return gauge


def worker_state(status: str, connection: str, lease: str | None, asleep: bool = False,
                 action: str | None = None) -> str:
    """One state per worker: offline, disabled, stopping (a stop or restart is pending), busy,
    asleep (its sleep schedule keeps it from new chunks), else idle."""
    if connection == OFFLINE:
        return "offline"
    if status == DISABLED:
        return "disabled"
    if action:
        return "stopping"
    if lease:
        return "busy"
    return "asleep" if asleep else "idle"


def workers_by_state(workers: list[WorkerRow]) -> Metric:
    """Workers by pool and state; an agent in two pools counts in both."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(WORKER_STATES, 0))
    for pools, _commands, status, connection, lease, asleep, action in workers:
        for pool in pools or ():
            counts[pool][worker_state(status, connection, lease, bool(asleep), action)] += 1
    gauge = GaugeMetricFamily("corral_workers", "Workers by pool and state", labels=("pool", "state"))
    for pool in sorted(counts):
        for state in WORKER_STATES:
            gauge.add_metric((pool, state), counts[pool][state])
    return gauge


def durable_counts() -> Iterator[Metric]:
    """The dispatcher's durable counters and histograms (common/farmstats.py)."""
    finished = CounterMetricFamily("corral_chunks_finished", "Chunk attempts that ended, by command and "
                                   "outcome", labels=("command", "outcome"))
    buckets: dict[str, dict[tuple[str, str], dict[float, float]]] = defaultdict(lambda: defaultdict(dict))
    sums: dict[str, dict[tuple[str, str], float]] = defaultdict(dict)
    for metric, first, second, le, value in farmstats.read_all():
        if metric == farmstats.FINISHED:
            finished.add_metric((first, second), value)
        elif metric in farmstats.BUCKETS:
            buckets[metric][(first, second)][le] = value
        elif metric.endswith(farmstats.SUM_SUFFIX):
            sums[metric.removesuffix(farmstats.SUM_SUFFIX)][(first, second)] = value
    yield finished
    duration = HistogramMetricFamily("corral_chunk_duration_seconds", "Time a completed chunk ran",
                                     labels=("command",))
    for (command, _), counts in sorted(buckets[farmstats.DURATION].items()):
        duration.add_metric((command,), _cumulative(counts, farmstats.DURATION_BUCKETS_S),
                            sums[farmstats.DURATION].get((command, ""), 0.0))
    yield duration
    wait = HistogramMetricFamily("corral_chunk_wait_seconds", "Time a chunk waited to start, since it "
                                 "was released (phase=released) or became runnable (phase=pending)",
                                 labels=("pool", "phase"))
    for (pool, phase), counts in sorted(buckets[farmstats.WAIT].items()):
        wait.add_metric((pool, phase), _cumulative(counts, farmstats.WAIT_BUCKETS_S),
                        sums[farmstats.WAIT].get((pool, phase), 0.0))
    yield wait


def _cumulative(counts: dict[float, float], bounds: tuple[float, ...]) -> list[tuple[str, float]]:
    total, out = 0.0, []
    for bound in (*bounds, math.inf):
        total += counts.get(bound, 0.0)
        out.append(("+Inf" if bound == math.inf else repr(bound), total))
    return out


def scrape_registry() -> CollectorRegistry:
    """The registry one scrape reads: every process's request metrics, then the farm's state."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(_ProcessMetrics())
    registry.register(FarmCollector())
    return registry


class _ProcessMetrics:
    """This process's request metrics (when not under gunicorn's several processes)."""

    def collect(self) -> Iterator[Metric]:
        yield from PROCESS_REGISTRY.collect()


class MetricsEndpoint:
    """``GET /metrics`` (scope read, or public with CORRAL_METRICS_PUBLIC=true)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = generate_latest(scrape_registry())
        resp.content_type = CONTENT_TYPE
