"""``/summary``: the farm at a glance (the dashboard's overview, and for scripts).

Four aggregate queries, each answered from an index: tasks by status, workers
by state, frames of chunks completed in the last hour, and the tasks that wait
(with the dispatcher's ``waiting_reason``).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import falcon
from peewee import SQL, fn

from common.models import (
    COMPLETED,
    DISABLED,
    OFFLINE,
    ONLINE,
    TASK_FINAL,
    TASK_STATUSES,
    Chunk,
    Task,
    Worker,
)

WAITING_SHOWN = 20
HOUR_S = 3600.0


def tasks_by_status() -> dict[str, int]:
    counts = dict.fromkeys(TASK_STATUSES, 0)
    counts.update(Task.select(Task.status, fn.COUNT(Task.id)).group_by(Task.status).tuples())
    return counts


def workers_by_state() -> dict[str, int]:
    """online = busy + idle; disabled counts online workers an operator switched off, too."""
    rows = (Worker.select(Worker.connection, Worker.status, Worker.current_lease.is_null(False),
                          fn.COUNT(Worker.id))
            .group_by(Worker.connection, Worker.status, Worker.current_lease.is_null(False)).tuples())
    counts = {"total": 0, ONLINE: 0, "busy": 0, "idle": 0, OFFLINE: 0, DISABLED: 0}
    for connection, status, busy, n in rows:
        counts["total"] += n
        counts[DISABLED] += n if status == DISABLED else 0
        if connection != ONLINE:
            counts[OFFLINE] += n
            continue
        counts[ONLINE] += n
        counts["busy" if busy else "idle"] += n
    return counts


def frames_since(since: float) -> int:
    total = (Chunk.select(fn.SUM(Chunk.frame_count))
             .where(Chunk.finished_at >= since, Chunk.status == COMPLETED).scalar())
    return int(total or 0)


def waiting_tasks(limit: int) -> tuple[int, list[dict[str, Any]]]:
    # Written as the partial index's own condition, so the planner can use that index.
    select = Task.select(Task.id, Task.client_task_id, Task.status, Task.waiting_reason).where(
        SQL("waiting_reason <> ''"), Task.status.not_in(TASK_FINAL))
    rows = select.order_by(Task.id.desc()).limit(limit)
    return select.count(), [{"id": t.id, "task_id": t.client_task_id, "status": t.status,
                             "waiting_reason": t.waiting_reason} for t in rows]


class Summary:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        waiting_total, waiting = waiting_tasks(WAITING_SHOWN)
        resp.media = {
            "tasks": tasks_by_status(),
            "workers": workers_by_state(),
            "frames_last_hour": frames_since(self.clock() - HOUR_S),
            "waiting_total": waiting_total,
            "waiting": waiting,
        }
