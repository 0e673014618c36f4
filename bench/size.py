"""Row 7, size: one huge noop task (1,000,000 frames; 100,000 with --quick) in chunks of 1 on a 4-agent farm.

Measures the POST latency, the time until every chunk exists (``chunks_total``
in ``GET /tasks/{id}``), the dispatcher's RSS before the POST and its peak
after, the chunk queue's depth sampled every half second for about 20 s, and
the database's size on disk; then the task is canceled. A one-frame task
submitted half a second after the huge one measures the stall: while the huge
task compiles, does the rest of the farm still move?
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import psutil
import requests

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
            idle_rss = dispatcher.memory_info().rss
            cpu0 = _cpu_s(dispatcher)
            t0 = time.monotonic()
            task = f.submit("noop", {"frame_start": 1, "frame_end": frames, "chunk_size": 1})
            post_ms = (time.monotonic() - t0) * 1000
            depths: list[int] = []
            with profile.sampled(dispatcher.pid, "dispatcher-size"):
                small = SmallTask(f, t0)
                small.start()
                compiled_s, compiled_cpu, rss = _sample(f, task["id"], frames, sample_s, t0, probe, queue,
                                                        dispatcher, depths)
                small.join(300)
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
    results.add(ROW, "size_compiled_cpu_s", f"{label}: dispatcher CPU, POST -> all chunks in the DB",
                compiled_cpu - cpu0, "s", "process CPU: drifts less with the machine's load than wall time")
    results.add(ROW, "size_rss_mb", f"{label}: dispatcher peak RSS", rss / 2**20, "MiB",
                f"sampled every {SAMPLE_S}s; {idle_rss / 2**20:.0f} MiB before the POST")
    results.add(ROW, "size_small_task_s", f"{label}: a 1-frame task posted 0.5 s later, POST -> completed",
                small.seconds, "s", f"the stall: the farm waits while the huge task compiles{small.note}")
    results.add(ROW, "size_db_mb", f"{label}: SQLite size (db + wal)", db_bytes / 2**20, "MiB", "")
    results.add(ROW, "size_depth_max", f"{label}: chunk queue depth, max", max(depths), "msgs",
                f"{len(depths)} samples over {time.monotonic() - t0:.0f}s, {done} frames done")


class SmallTask(threading.Thread):
    """Posts a one-frame task half a second after the huge one and times it to completed.

    A thread with its own HTTP session, so the sampling goes on meanwhile.
    """

    def __init__(self, f: farm.Farm, t0: float) -> None:
        super().__init__(name="small-task", daemon=True)
        self.api, self.t0, self.seconds, self.note = f.api, t0, float("nan"), ""
        self.session = requests.Session()
        self.session.headers.update(f.session.headers)

    def run(self) -> None:
        try:
            self._post_and_wait()
        finally:
            self.session.close()

    def _post_and_wait(self) -> None:
        time.sleep(max(0.0, self.t0 + 0.5 - time.monotonic()))
        started = time.monotonic()
        # Above the huge task, so its chunk overtakes the huge one's once those are released.
        body = {"type": "noop", "priority": 90,
                "settings": {"frame_start": 1, "frame_end": 1, "chunk_size": 1}}
        response = self.session.post(f"{self.api}/tasks", json=body, timeout=120)
        if response.status_code != 202:  # e.g. the database stayed locked past the gateway's busy timeout
            self.note = f"; its POST answered {response.status_code} after {time.monotonic() - started:.1f}s"
            return
        task_id = response.json()["id"]
        while time.monotonic() - started < 300:
            if self.session.get(f"{self.api}/tasks/{task_id}", timeout=30).json()["status"] == "completed":
                self.seconds = time.monotonic() - started
                break
            time.sleep(0.05)


def _sample(f: farm.Farm, task_id: int, frames: int, sample_s: float, t0: float, probe: DepthProbe,
            queue: str, dispatcher: psutil.Process, depths: list[int]) -> tuple[float, float, int]:
    """Sample until ``sample_s`` passed and every chunk exists; (compile seconds, the dispatcher's
    CPU seconds then, peak RSS)."""
    compiled_s, compiled_cpu, rss = None, 0.0, 0
    while time.monotonic() - t0 < sample_s or compiled_s is None:
        body = f.get(f"/tasks/{task_id}")
        if compiled_s is None and body["chunks_total"] >= frames:
            compiled_s, compiled_cpu = time.monotonic() - t0, _cpu_s(dispatcher)
        depths.append(probe.depth(queue) or 0)
        rss = max(rss, dispatcher.memory_info().rss)
        if time.monotonic() - t0 > 300:
            raise TimeoutError("the task did not compile in 300s")
        time.sleep(SAMPLE_S)
    return compiled_s, compiled_cpu, rss


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system
