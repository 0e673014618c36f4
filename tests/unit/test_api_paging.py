"""Keyset paging of GET /tasks (``cursor`` / ``next``) and the plans of the list's queries, on SQLite.

tests/integration/test_task_paging.py walks the same pages on PostgreSQL.
"""
from __future__ import annotations

import base64
import json

import pytest

from api_gateway import paging, queries
from api_gateway.inputs import TASK_SORTS, TaskQuery
from common.models import database_proxy
from tests.unit.paging_support import all_rows, expected_ids, seed_tasks, walk

SORTS = [prefix + sort for sort in TASK_SORTS for prefix in ("", "-")]


def submit(client) -> int:
    result = client.simulate_post("/tasks", json={"type": "noop", "settings": {"frames": "1"}})
    assert result.status_code == 202
    return result.json["id"]


def made_up_cursor(*parts) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


@pytest.mark.parametrize("sort", SORTS)
def test_walking_the_cursor_lists_every_task_once_in_the_order_of_the_sort(client, sort):
    seed_tasks(230)
    walked = walk(client, {"sort": sort, "limit": 17})
    assert walked == expected_ids(all_rows(), sort)


@pytest.mark.parametrize("sort", ["-id", "priority", "-started_at", "finished_at", "type"])
def test_walking_with_a_status_filter_lists_each_matching_task_once_in_order(client, sort):
    seed_tasks(230)
    walked = walk(client, {"sort": sort, "status": "queued", "limit": 9})
    assert walked == expected_ids(all_rows(), sort, status="queued") and walked


def test_tasks_submitted_during_a_newest_first_walk_neither_repeat_nor_shift_the_pages(client):
    seed_tasks(120)
    before = expected_ids(all_rows(), "-id")
    walked = walk(client, {"limit": 10}, between_pages=lambda: submit(client))
    assert walked == before  # the new tasks are newer than the first page: behind the walk


def test_tasks_submitted_during_an_oldest_first_walk_come_at_its_end_each_once(client):
    seed_tasks(120)
    before = expected_ids(all_rows(), "id")
    added: list[int] = []
    walked = walk(client, {"sort": "id", "limit": 10}, between_pages=lambda: added.append(submit(client)))
    assert walked[:len(before)] == before
    assert walked[len(before):] == added[:len(walked) - len(before)]
    assert len(set(walked)) == len(walked)


def test_an_offset_page_also_hands_out_the_cursor_of_the_next_page(client):
    ids = [submit(client) for _ in range(5)]
    first = client.simulate_get("/tasks", params={"limit": 2, "offset": 1}).json
    assert [t["id"] for t in first["tasks"]] == [ids[3], ids[2]]
    rest = client.simulate_get("/tasks", params={"limit": 2, "cursor": first["next"]}).json
    assert [t["id"] for t in rest["tasks"]] == [ids[1], ids[0]]
    assert rest["next"] is None and rest["total"] == 5 and rest["offset"] == 0


def test_the_last_page_has_no_next_even_when_it_is_exactly_full(client):
    for _ in range(4):
        submit(client)
    page = client.simulate_get("/tasks", params={"limit": 4}).json
    assert len(page["tasks"]) == 4 and page["next"] is None


def test_a_cursor_round_trips_its_position_for_the_sort_it_was_made_for():
    position = paging.Position(None, 42)
    assert paging.decode(paging.encode("started_at", True, position), "started_at", True) == position
    position = paging.Position("rendering", 7)
    assert paging.decode(paging.encode("status", False, position), "status", False) == position


@pytest.mark.parametrize("params", [
    {"cursor": "not a cursor"},
    {"cursor": "%%%%"},
    {"cursor": made_up_cursor("-id", 5)},
    {"cursor": made_up_cursor("-id", 5, 5, 5)},
    {"cursor": base64.urlsafe_b64encode(b'{"-id": 1, "a": 2, "b": 3}').decode()},
    {"cursor": base64.urlsafe_b64encode(b"\xff\xfe").decode()},
    {"cursor": made_up_cursor("priority", 5, 5)},  # made for another sort than -id
    {"cursor": made_up_cursor("-id", 5, 0)},
    {"cursor": made_up_cursor("-id", 5, "5")},
    {"cursor": made_up_cursor("-id", 5, True)},
    {"cursor": made_up_cursor("-id", 5, 2**63)},
    {"cursor": made_up_cursor("-priority", "high", 5), "sort": "-priority"},
    {"cursor": made_up_cursor("-priority", None, 5), "sort": "-priority"},
    {"cursor": made_up_cursor("-status", 3, 5), "sort": "-status"},
    {"cursor": made_up_cursor("-status", "x" * 65, 5), "sort": "-status"},
    {"cursor": made_up_cursor("-created_at", "yesterday", 5), "sort": "-created_at"},
    {"cursor": made_up_cursor("-created_at", None, 5), "sort": "-created_at"},
    {"cursor": base64.urlsafe_b64encode(b'["-started_at", NaN, 5]').decode(), "sort": "-started_at"},
    {"cursor": "A" * (paging.MAX_CURSOR_CHARS + 1)},
    {"cursor": made_up_cursor("-id", 5, 5), "offset": "10"},
])
def test_a_bad_cursor_is_refused_with_400_naming_the_cursor(client, params):
    result = client.simulate_get("/tasks", params=params)
    assert result.status_code == 400
    assert result.json["error"]["field"] == "cursor"


def test_a_well_formed_cursor_for_a_task_that_is_gone_still_pages_from_its_place(client):
    ids = [submit(client) for _ in range(3)]
    gone = ids[2] + 1000
    page = client.simulate_get("/tasks", params={"cursor": made_up_cursor("-id", gone, gone)})
    assert [t["id"] for t in page.json["tasks"]] == ids[::-1]


def test_a_listed_task_has_the_same_body_as_the_task_alone(client):
    task_id = submit(client)
    listed = client.simulate_get("/tasks").json["tasks"][0]
    alone = client.simulate_get(f"/tasks/{task_id}").json
    assert listed == {key: alone[key] for key in listed}
    assert set(alone) - set(listed) == {"chunks_total", "chunks_by_status", "steps", "blocklist"}


# The dashboard's and the bench's queries (bench/dashboard.py, bench/api_load.py), first page and a
# cursor page: each must be answered from an index, without sorting the table or scanning it.
INDEXED = [
    TaskQuery(("queued",), None, 50, 0),
    TaskQuery(("queued",), None, 50, 0, after=paging.Position(9000, 9000)),
    TaskQuery((), None, 50, 0),
    TaskQuery((), None, 50, 0, after=paging.Position(9000, 9000)),
    TaskQuery((), None, 50, 0, sort="priority", after=paging.Position(50, 9000)),
    TaskQuery((), None, 50, 0, sort="status", descending=False, after=paging.Position("queued", 9)),
    TaskQuery((), None, 50, 0, sort="started_at", after=paging.Position(100.0, 9000)),
    TaskQuery((), "blender_render", 50, 5000),
    TaskQuery((), "blender_render", 50, 0, after=paging.Position(9000, 9000)),
]


def plan_of(query: TaskQuery) -> str:
    with database_proxy.connection_context():
        sql, params = queries.task_list_sql(query, "?")
        return " / ".join(row[3] for row in database_proxy.execute_sql(f"EXPLAIN QUERY PLAN {sql}", params))


@pytest.mark.parametrize("query", INDEXED)
def test_the_dashboards_task_queries_are_served_by_an_index(client, query):
    seed_tasks(50)
    plan = plan_of(query)
    assert "TEMP B-TREE" not in plan, plan
    # Without an index, only the table's own order (by id, SQLite's rowid) comes without sorting.
    assert "USING" in plan or query.sort == "id", plan


def test_a_search_reads_only_the_client_ids_that_start_with_it(client):
    seed_tasks(50)
    plan = plan_of(TaskQuery((), None, 50, 0, search="shot-4213"))
    assert "USING INDEX task_client_task_id (client_task_id>? AND client_task_id<?)" in plan, plan
