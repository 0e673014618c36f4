"""Row 7, size: one 100,000-frame noop task in chunks of 1 on a 4-agent farm.

Measures the POST latency, the time until every chunk exists (``chunks_total``
in ``GET /tasks/{id}``), the dispatcher's peak RSS and the chunk queue's depth
sampled every half second for about 20 s, then the database's size on disk;
then the task is canceled.
"""
from __future__ import annotations

import time
from pathlib import Path

import psutil

from bench import farm, profile
from bench.broker import DepthProbe
from bench.results import Results
from common.topology import chunk_queue_name

ROW = "size"
SAMPLE_S = 0.5


def run(results: Results, namespace: str, frames: int, sample_s: float, workdir: Path, token: str) -> None:
    ns = f"{namespace}.size"
    with farm.Farm(ns, farm.sqlite_url(workdir), workdir, token) as f:
        dispatcher = psutil.Process(f.dispatcher().pid)
        f.gateway()
        names = farm.agent_names(4)
        f.agents(names)
        f.wait_online(names)
        probe = DepthProbe()
        queue = chunk_queue_name(ns, "default", "noop")
        try:
            t0 = time.monotonic()
            task = f.submit("noop", {"frame_start": 1, "frame_end": frames, "chunk_size": 1})
            post_ms = (time.monotonic() - t0) * 1000
            depths: list[int] = []
            with profile.sampled(dispatcher.pid, "dispatcher-size"):
                compiled_s, rss = _sample(f, task["id"], frames, sample_s, t0, probe, queue, dispatcher,
                                          depths)
            done = f.get(f"/tasks/{task['id']}")["frames_done"]
            f.cancel(task["id"])
            farm.wait_for(lambda: f.get(f"/tasks/{task['id']}")["status"] == "canceled", 60, "the cancel")
        finally:
            probe.close()
        db_bytes = sum(p.stat().st_size for p in workdir.glob("corral.db*"))
    label = f"{frames:,}-frame noop task"
    results.add(ROW, "size_post_ms", f"{label}: POST latency", post_ms, "ms", "202 answered")
    results.add(ROW, "size_compiled_s", f"{label}: POST -> all chunks in the DB", compiled_s, "s",
                "chunks_total in GET /tasks/{id}")
    results.add(ROW, "size_rss_mb", f"{label}: dispatcher peak RSS", rss / 2**20, "MiB",
                f"sampled every {SAMPLE_S}s")
    results.add(ROW, "size_db_mb", f"{label}: SQLite size (db + wal)", db_bytes / 2**20, "MiB", "")
    results.add(ROW, "size_depth_max", f"{label}: chunk queue depth, max", max(depths), "msgs",
                f"{len(depths)} samples over {time.monotonic() - t0:.0f}s, {done} frames done")


def _sample(f: farm.Farm, task_id: int, frames: int, sample_s: float, t0: float, probe: DepthProbe,
            queue: str, dispatcher: psutil.Process, depths: list[int]) -> tuple[float, int]:
    """Sample until ``sample_s`` passed and every chunk exists; (compile seconds, peak RSS)."""
    compiled_s, rss = None, 0
    while time.monotonic() - t0 < sample_s or compiled_s is None:
        body = f.get(f"/tasks/{task_id}")
        if compiled_s is None and body["chunks_total"] >= frames:
            compiled_s = time.monotonic() - t0
        depths.append(probe.depth(queue) or 0)
        rss = max(rss, dispatcher.memory_info().rss)
        if time.monotonic() - t0 > 300:
            raise TimeoutError("the task did not compile in 300s")
        time.sleep(SAMPLE_S)
    return compiled_s, rss
