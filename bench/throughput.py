"""Row 3, Corral throughput: one ``noop`` task of N frames in chunks of 1 on K agents.

Gateway (gunicorn), dispatcher and agents are separate processes. The clock
runs from just before ``POST /tasks`` to the task's ``finished_at`` (the
dispatcher's commit of the last chunk, read back from the API once the task is
``completed``). K grows 1 -> 2 -> 4 on one SQLite farm; a second farm on a
fresh PostgreSQL database runs K=4 once.
"""
from __future__ import annotations

import time
from pathlib import Path

import psutil

from bench import farm, profile
from bench.results import Results

ROW = "corral throughput"


def run_task(f: farm.Farm, n: int, dispatcher_pid: int) -> tuple[float, float]:
    """Chunks per second for one noop task of ``n`` single-frame chunks, and the dispatcher's
    CPU milliseconds per chunk (user + system, which drifts less than wall time)."""
    dispatcher = psutil.Process(dispatcher_pid)
    cpu0 = sum(dispatcher.cpu_times()[:2])
    started = time.time()
    task = f.submit("noop", {"frame_start": 1, "frame_end": n, "chunk_size": 1})
    done = f.wait_task(task["id"], timeout_s=max(120.0, n / 5), interval_s=0.05)
    cpu_ms = (sum(dispatcher.cpu_times()[:2]) - cpu0) * 1000 / n
    return n / (done["finished_at"] - started), cpu_ms


def run(results: Results, namespace: str, n: int, workdir: Path, token: str,
        counts: tuple[int, ...] = (1, 2, 4), postgres: bool = True) -> None:
    with farm.Farm(f"{namespace}.tp", farm.sqlite_url(workdir / "tp"), workdir / "tp", token) as f:
        dispatcher = f.dispatcher()
        f.gateway()
        running: list[str] = []
        for k in counts:
            new = farm.agent_names(k)[len(running):]
            f.agents(new)
            running += new
            f.wait_online(running)
            with profile.sampled(dispatcher.pid, f"dispatcher-throughput-k{k}", enabled=k == counts[-1]):
                rate, cpu_ms = run_task(f, n, dispatcher.pid)
            results.add(ROW, f"corral_k{k}", f"noop N={n}, chunk 1, K={k} agents, SQLite", rate,
                        "chunks/s", "POST -> completed")
        results.add(ROW, f"corral_k{k}_cpu_ms", f"K={k}, SQLite: dispatcher CPU per chunk", cpu_ms,
                    "ms", "process user+system CPU / chunks")
    if postgres:
        with farm.postgres_database(f"{namespace.replace('.', '_')}_tp") as url, \
                farm.Farm(f"{namespace}.tppg", url, workdir / "tppg", token) as f:
            dispatcher = f.dispatcher()
            f.gateway()
            names = farm.agent_names(4)
            f.agents(names)
            f.wait_online(names)
            rate, cpu_ms = run_task(f, n, dispatcher.pid)
            results.add(ROW, "corral_k4_pg", f"noop N={n}, chunk 1, K=4 agents, PostgreSQL", rate,
                        "chunks/s", "POST -> completed")
            results.add(ROW, "corral_k4_pg_cpu_ms", "K=4, PostgreSQL: dispatcher CPU per chunk", cpu_ms,
                        "ms", "process user+system CPU / chunks")
