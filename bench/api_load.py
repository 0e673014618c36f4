"""Row 6, the API under load: 1,000 workers and 100,000 tasks, concurrent keep-alive clients.

The rows are inserted straight into a fresh SQLite database (peewee
``insert_many`` on ``common.models``) with a realistic mix of statuses; the
gateway runs under gunicorn as ``corral gateway`` starts it (2 workers x 4
threads). A thread pool of clients, each with its own keep-alive connection,
sends requests to 127.0.0.1 only, bounded by count and by time.

The clients are plain ``http.client`` connections that accept gzip, as
``requests`` and browsers do, and read (and unpack) the whole body. They share
one Python process, and with ``requests`` that process was the bottleneck it
measured: reading a 500 KB worker list through ``requests`` took 1.4 ms of the
client's CPU, a trivial answer 0.7 ms, under one GIL for all 8 clients, so
``GET /workers`` measured about 450 req/s and a 45 ms p99 whatever the
gateway did; this client measures 1,500-2,800 req/s on the same gateways.
"""
from __future__ import annotations

import gzip
import http.client
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from bench import farm, profile
from bench.results import Results, percentile

ROW = "api under load"
CLIENTS = 8
STATUS_MIX = (("completed", 70), ("failed", 5), ("canceled", 5), ("queued", 10), ("rendering", 5),
              ("paused", 5))
ENDPOINTS = (("GET /workers", "get", "/workers"),
             ("GET /tasks?status=queued", "get", "/tasks?status=queued"),
             ("POST /tasks", "post", "/tasks"))


def seed(database_url: str, workers: int, tasks: int) -> None:
    from common.db import open_and_migrate
    from common.models import Task, Worker, database_proxy

    open_and_migrate(database_url)
    rng = random.Random(7)
    now = time.time()
    worker_rows = [{
        "name": f"node-{i:04d}", "hostname": f"node-{i:04d}", "system": "Linux 6.1.0",
        "ip_address": f"10.0.{i // 250}.{i % 250}", "pools": ["default"],
        "commands": ["blender_render", "noop"],
        "versions": {"blender": "4.1.1"}, "connection": "online" if i % 10 else "offline",
        "activity": "idle", "last_heartbeat": now,
        "update_frequent": {"load_average": {"1min": 3.1, "5min": 2.9, "15min": 2.5},
                            "worker_cpu_percent": 93.0},
        "update_less_frequent": {"worker_architecture": "x86_64", "worker_disk_percent": 40.1,
                                 "worker_mem_percent": 62.5, "worker_num_cpus": 32},
    } for i in range(workers)]
    statuses = [s for s, weight in STATUS_MIX for _ in range(weight)]
    task_rows = []
    for i in range(tasks):
        status = rng.choice(statuses)
        frames = rng.choice((24, 100, 240))
        done = frames if status == "completed" else rng.randrange(frames) if status != "queued" else 0
        created = now - (tasks - i) * 30
        task_rows.append({
            "type": "blender_render", "parser": "blender_render", "pool": "default",
            "settings": {"filepath": f"/farm/shots/{i:06d}.blend",
                         "output_path": f"/farm/renders/{i:06d}/f_####",
                         "format": "PNG", "frames": [[1, frames]], "chunk_size": 4},
            "priority": rng.randrange(101), "status": status, "compiled": status != "queued",
            "frame_start": 1, "frame_end": frames, "frames_total": frames, "frames_done": done,
            "format": "PNG", "created_at": created,
            "started_at": created + 5 if status != "queued" else None,
            "finished_at": created + 600 if status in ("completed", "failed", "canceled") else None,
        })
    database_proxy.connect(reuse_if_open=True)
    with database_proxy.atomic():
        for start in range(0, workers, 200):
            Worker.insert_many(worker_rows[start:start + 200]).execute()
        for start in range(0, tasks, 1000):
            Task.insert_many(task_rows[start:start + 1000]).execute()
    database_proxy.close()


def request(conn: http.client.HTTPConnection, method: str, path: str, headers: dict[str, str],
            body: bytes | None) -> int:
    """One request on a keep-alive connection; the whole body is read and unpacked. Returns the status."""
    conn.request(method.upper(), path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    if response.getheader("Content-Encoding") == "gzip":
        gzip.decompress(data)
    return response.status


def load(api: str, token: str, method: str, path: str, max_requests: int,
         max_s: float) -> tuple[float, list[float], int]:
    """Requests per second, latencies (ms) and error count for one endpoint."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    issued = 0
    deadline = time.monotonic() + max_s
    address = urlsplit(api)
    headers = {"Authorization": f"Bearer {token}", "Accept-Encoding": "gzip",
               "Content-Type": "application/json"}
    settings = {"frame_start": 1, "frame_end": 1, "chunk_size": 1}
    body = json.dumps({"type": "noop", "settings": settings}).encode()

    def client() -> None:
        nonlocal issued, errors
        conn = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=30)
        try:
            while time.monotonic() < deadline:
                with lock:
                    if issued >= max_requests:
                        return
                    issued += 1
                t0 = time.perf_counter()
                status = request(conn, method, path, headers, body if method == "post" else None)
                elapsed = (time.perf_counter() - t0) * 1000
                with lock:
                    latencies.append(elapsed)
                    errors += status >= 400
        finally:
            conn.close()

    started = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        for future in [pool.submit(client) for _ in range(CLIENTS)]:
            future.result()
    return len(latencies) / (time.monotonic() - started), latencies, errors


def run(results: Results, namespace: str, workdir: Path, token: str, workers: int, tasks: int,
        max_requests: int, max_s: float) -> None:
    url = farm.sqlite_url(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    seed(url, workers, tasks)
    with farm.Farm(f"{namespace}.api", url, workdir, token) as f:
        f.gateway()
        for label, method, path in ENDPOINTS:
            load(f.api, token, method, path, 20, 5)  # warm-up
            name = f"gateway-{method}-{path.split('?')[0].strip('/')}"
            with profile.sampled(f.procs["gateway"].pid, name):
                rate, latencies, errors = load(f.api, token, method, path, max_requests, max_s)
            note = f"{len(latencies)} requests, {CLIENTS} clients, {errors} errors"
            key = label.split("?")[0].replace(" ", "_").replace("/", "").lower()
            results.add(ROW, f"api_{key}_rps", f"{label}: throughput", rate, "req/s", note)
            results.add(ROW, f"api_{key}_p50", f"{label}: p50", percentile(latencies, 50), "ms",
                        f"{workers:,} workers / {tasks:,} tasks")
            results.add(ROW, f"api_{key}_p99", f"{label}: p99", percentile(latencies, 99), "ms",
                        f"{workers:,} workers / {tasks:,} tasks")
