"""What the cursor paging tests share on SQLite and PostgreSQL: seeded tasks, a walk, the expected order."""
from __future__ import annotations

import random

from common.models import Task, database_proxy

STATUSES = ("queued", "rendering", "paused", "completed", "failed", "canceled")
TYPES = ("noop", "sleep", "blender_render")


def seed_tasks(count: int, seed: int = 11) -> None:
    """``count`` tasks with many ties (priority, status, type) and never-started ones (started_at null)."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        started = rng.choice((None, 1_000.0 + rng.randrange(20)))
        rows.append({
            "type": rng.choice(TYPES), "parser": "noop", "settings": {"frames": [[1, 1]], "n": i},
            "priority": rng.randrange(4) * 25, "status": rng.choice(STATUSES), "frame_start": 1,
            "frame_end": 1, "frames_total": 1, "created_at": 500.0 + rng.randrange(30),
            "started_at": started, "finished_at": None if started is None else started + rng.randrange(3),
        })
    with database_proxy.connection_context():
        Task.insert_many(rows).execute()


def all_rows() -> list[dict]:
    with database_proxy.connection_context():
        return list(Task.select().dicts())


def expected_ids(rows: list[dict], sort: str, status: str | None = None) -> list[int]:
    """The ids in ``sort`` order (``-`` for descending), worked out in Python: ties by id, nulls last."""
    column, descending = sort.lstrip("-"), sort.startswith("-")
    rows = [row for row in rows if status is None or row["status"] == status]
    valued = sorted((row for row in rows if row[column] is not None),
                    key=lambda row: (row[column], row["id"]), reverse=descending)
    nulls = sorted((row for row in rows if row[column] is None), key=lambda row: row["id"],
                   reverse=descending)
    return [row["id"] for row in valued + nulls]


def walk(client, params: dict, between_pages=lambda: None) -> list[int]:
    """Every task id the API lists for ``params``, following ``next`` page after page."""
    seen: list[int] = []
    cursor = None
    for _ in range(10_000):
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        result = client.simulate_get("/tasks", params=query)
        assert result.status_code == 200, result.text
        page = result.json
        assert len(page["tasks"]) <= int(params.get("limit", 50))
        seen.extend(task["id"] for task in page["tasks"])
        cursor = page["next"]
        if cursor is None:
            return seen
        between_pages()
    raise AssertionError("the walk never ended")
