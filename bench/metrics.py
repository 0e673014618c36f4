"""Row "metrics scrape": GET /metrics with 100,000 tasks and 1,000 workers must answer in under 250 ms.

The database is seeded like the API row (``bench.api_load.seed``: the same task
status mix and worker rows) plus four chunks per task in states that match the
task's (about 400,000 chunks, 50,000 of them waiting to run) and a year's worth
of durable counters. The gateway runs as ``corral gateway`` starts it (gunicorn,
2 processes, multiprocess request metrics); one client scrapes it in sequence,
as Prometheus does.
"""
from __future__ import annotations

import time
from pathlib import Path

import requests

from bench import farm
from bench.api_load import seed
from bench.results import Results, percentile

ROW = "metrics scrape"
SCRAPES = 60
CHUNKS_BY_TASK_STATUS = {
    "completed": ("completed",) * 4,
    "failed": ("completed", "completed", "failed", "canceled"),
    "canceled": ("canceled",) * 4,
    "queued": ("pending",) * 4,
    "rendering": ("completed", "running", "released", "pending"),
    "paused": ("pending",) * 4,
}


def seed_chunks_and_counts(database_url: str) -> int:
    """Four chunks per task, and the counters a long-running farm has; returns the chunk count."""
    from common import farmstats
    from common.db import open_database
    from common.models import Chunk, Task, database_proxy

    open_database(database_url)
    database_proxy.connect(reuse_if_open=True)
    rows, total = [], 0
    with database_proxy.atomic():
        for task_id, status in Task.select(Task.id, Task.status).tuples():
            for index, chunk_status in enumerate(CHUNKS_BY_TASK_STATUS[status]):
                rows.append({"task": task_id, "index": index, "command": "blender_render",
                             "frames": [[index * 4 + 1, index * 4 + 4]], "frame_count": 4,
                             "status": chunk_status})
            if len(rows) >= 2000:
                total += _insert(Chunk, rows)
        total += _insert(Chunk, rows)
        for command in ("blender_render", "ffmpeg_encode", "noop"):
            for outcome in ("completed", "failed", "declined", "canceled", "lost"):
                farmstats.add(farmstats.counter(farmstats.FINISHED, command, outcome, 1000))
            for seconds in (0.5, 3, 20, 45, 100, 250, 500, 1000, 1500, 3000, 6000, 10000, 20000, 40000,
                            80000, 100000):
                farmstats.add(farmstats.observation(farmstats.DURATION, command, "", seconds))
        for pool in ("default", "gpu", "cpu"):
            for phase in ("released", "pending"):
                for seconds in (0.5, 3, 10, 20, 50, 100, 200, 500, 1000, 3000, 5000, 10000, 40000, 80000,
                                100000):
                    farmstats.add(farmstats.observation(farmstats.WAIT, pool, phase, seconds))
    database_proxy.close()
    return total


def _insert(model: type, rows: list[dict]) -> int:
    count = len(rows)
    for start in range(0, count, 500):
        model.insert_many(rows[start:start + 500]).execute()
    rows.clear()
    return count


def scrape_times(api: str, token: str, count: int) -> tuple[list[float], int]:
    """Latencies (ms) of ``count`` sequential scrapes, and the size of the last body."""
    latencies, size = [], 0
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {token}"
        for _ in range(count):
            t0 = time.perf_counter()
            response = session.get(f"{api}/metrics", timeout=30)
            latencies.append((time.perf_counter() - t0) * 1000)
            response.raise_for_status()
            size = len(response.content)
    return latencies, size


def _measure(results: Results, namespace: str, url: str, workdir: Path, token: str, label: str,
             workers: int, tasks: int) -> None:
    seed(url, workers, tasks)
    chunks = seed_chunks_and_counts(url)
    with farm.Farm(namespace, url, workdir, token) as f:
        f.gateway()
        scrape_times(f.api, token, 5)  # warm-up: both gunicorn processes, the database's caches
        latencies, size = scrape_times(f.api, token, SCRAPES)
    note = f"{tasks:,} tasks, {chunks:,} chunks, {workers:,} workers; {size:,} bytes; {SCRAPES} scrapes"
    key = f"metrics_scrape_{label.lower()}"
    results.add(ROW, f"{key}_p50", f"GET /metrics ({label}): p50", percentile(latencies, 50), "ms", note)
    results.add(ROW, f"{key}_p99", f"GET /metrics ({label}): p99", percentile(latencies, 99), "ms", note)
    results.add(ROW, f"{key}_max", f"GET /metrics ({label}): max", max(latencies), "ms", note)


def run(results: Results, namespace: str, workdir: Path, token: str, workers: int, tasks: int,
        postgres: bool = True) -> None:
    sqlite_dir = workdir / "sqlite"
    sqlite_dir.mkdir(parents=True, exist_ok=True)
    _measure(results, f"{namespace}.metrics", farm.sqlite_url(sqlite_dir), sqlite_dir, token, "SQLite",
             workers, tasks)
    if postgres:
        pg_dir = workdir / "postgres"
        pg_dir.mkdir(parents=True, exist_ok=True)
        with farm.postgres_database(f"{namespace}_metrics") as url:
            _measure(results, f"{namespace}.metricspg", url, pg_dir, token, "PostgreSQL", workers, tasks)
