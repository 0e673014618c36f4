"""Row 2, the Celery peer: N no-op tasks with ``acks_late`` on 4 single-task worker processes.

Workers: ``celery worker --pool=solo`` x 4 processes (prefetch multiplier 1), the
same shape as 4 Corral agents each holding one chunk. Timed from the first
publish to the last task done:

- without a result backend, a marker task published after the N tasks touches a
  file; at most 3 no-ops (one per other worker) can still be running then;
- with the redis result backend (every task's state stored, readable by anyone,
  as Corral stores every chunk's), when ``ResultSet.join_native`` has all N results.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from celery import Celery
from celery.result import ResultSet

from bench import farm
from bench.broker import DepthProbe
from bench.celery_app import make_app
from bench.results import Results

ROW = "celery peer"
WORKERS = 4
REDIS_BACKEND = "redis://localhost:6379/14"
WARM_UP = 20


def _start_workers(queue: str, backend: str, workdir: Path) -> list:
    env = {**os.environ, "BENCH_CELERY_QUEUE": queue, "BENCH_CELERY_BACKEND": backend,
           "PYTHONPATH": str(farm.ROOT)}
    procs = []
    for i in range(WORKERS):
        argv = [sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker", "--pool=solo",
                "--concurrency=1", "-Q", queue, "-n", f"w{i + 1}-{queue}@bench", "--without-gossip",
                "--without-mingle", "--without-heartbeat", "--loglevel=WARNING"]
        procs.append(farm.spawn(argv, env, workdir / f"{queue}-w{i + 1}.log"))
    probe = DepthProbe()
    try:
        farm.wait_for(lambda: probe.consumers(queue) >= WORKERS, 60, "celery workers", 0.2)
    finally:
        probe.close()
    return procs


def measure(queue: str, n: int, backend: str, workdir: Path) -> float:
    procs = _start_workers(queue, backend, workdir)
    try:
        app = make_app(queue, backend)
        try:
            # Warm-up: the first results over redis take seconds (subscriptions, connections).
            _batch(app, WARM_UP, backend, workdir / f"{queue}.warm")
            return n / _batch(app, n, backend, workdir / f"{queue}.done")
        finally:
            app.close()
    finally:
        farm.stop_many(procs, signal.SIGQUIT, grace_s=10)  # cold shutdown: nothing left to finish


def _batch(app: Celery, n: int, backend: str, marker: Path) -> float:
    """Seconds from the first publish until ``n`` no-ops are done."""
    started = time.time()
    results = [app.send_task("bench.noop", (i,)) for i in range(n)]
    if backend:
        ResultSet(results, app=app).join_native(timeout=300, interval=0.01)
        finished = time.time()
        _forget([r.id for r in results])
    else:
        app.send_task("bench.touch", (str(marker),))
        farm.wait_for(marker.exists, 300, "the celery marker task", 0.002)
        finished = time.time()
    return finished - started


def _forget(ids: list[str]) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_BACKEND)
    keys = [f"celery-task-meta-{task_id}" for task_id in ids]
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start:start + 1000])
    client.close()


def run(results: Results, namespace: str, n: int, workdir: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    rate = measure(f"{namespace}.celery-none", n, "", workdir)
    results.add(ROW, "celery_none", f"{WORKERS}x solo workers, acks_late, no result backend",
                rate, "tasks/s", f"N={n}")
    rate = measure(f"{namespace}.celery-redis", n, REDIS_BACKEND, workdir)
    results.add(ROW, "celery_redis", f"{WORKERS}x solo workers, acks_late, redis result backend",
                rate, "tasks/s", f"N={n}")
