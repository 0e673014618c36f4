"""Row 4, Corral latency: 200 single-chunk noop tasks, one after another, on idle agents.

- dispatch: the chunk's ``started_at`` (the dispatcher applying ``chunk.started``)
  minus the task's ``created_at`` (the gateway's insert);
- visibility: the moment ``GET /tasks/{id}`` first shows ``completed`` (polled
  every 2 ms) minus the chunk's ``finished_at`` (the agent's clock, same machine).
"""
from __future__ import annotations

import time
from pathlib import Path

from bench import farm, profile
from bench.results import Results, percentile

ROW = "corral latency"
POLL_S = 0.002


def one_task(f: farm.Farm) -> tuple[int, float]:
    """Submit a one-frame task; return its id and when the API first showed it completed."""
    task = f.submit("noop", {"frame_start": 1, "frame_end": 1, "chunk_size": 1})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = f.get(f"/tasks/{task['id']}")
        if body["status"] == "completed":
            return task["id"], time.time()
        if body["status"] in ("failed", "canceled"):
            raise RuntimeError(f"task {task['id']} ended {body['status']}")
        time.sleep(POLL_S)
    raise TimeoutError(f"task {task['id']} did not complete in 30s")


def run(results: Results, namespace: str, count: int, workdir: Path, token: str) -> None:
    with farm.Farm(f"{namespace}.lat", farm.sqlite_url(workdir / "lat"), workdir / "lat", token) as f:
        dispatcher = f.dispatcher()
        f.gateway()
        names = farm.agent_names(4)
        f.agents(names)
        f.wait_online(names)
        one_task(f)  # warm-up: connections, caches
        with profile.sampled(dispatcher.pid, "dispatcher-latency"):
            seen = [one_task(f) for _ in range(count)]
        dispatch, visible = [], []
        for task_id, shown_at in seen:
            task = f.get(f"/tasks/{task_id}")
            (chunk,) = f.get(f"/tasks/{task_id}/chunks")["chunks"]
            dispatch.append((chunk["started_at"] - task["created_at"]) * 1000)
            visible.append((shown_at - chunk["finished_at"]) * 1000)
    for name, values, what in (("dispatch", dispatch, "submit -> chunk started"),
                               ("visible", visible, "chunk finished -> completed in API")):
        for pct in (50, 99):
            results.add(ROW, f"latency_{name}_p{pct}", f"{what}, p{pct}", percentile(values, pct), "ms",
                        f"{count} tasks, 4 idle agents")
