"""GET /tasks cursor paging and the list's query plans on a real PostgreSQL (and SQLite alongside).

The unit tests (tests/unit/test_api_paging.py) cover the cursor's rules on
SQLite; these walk the same pages on PostgreSQL, whose NULL ordering, row
comparisons and text collation are its own.
"""
from __future__ import annotations

import pytest
from falcon import testing

from api_gateway import paging, queries
from api_gateway.app import create_app
from api_gateway.inputs import TaskQuery
from common.db import open_and_migrate
from common.models import database_proxy
from tests.unit.gateway_support import AUTH, CONFIG, NOW, RecordingPublisher, StubFeed
from tests.unit.paging_support import all_rows, expected_ids, seed_tasks, walk

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'paging.db'}"
    return request.getfixturevalue("pg_database")


@pytest.fixture
def client(database_url):
    db = open_and_migrate(database_url)
    yield testing.TestClient(create_app(CONFIG, RecordingPublisher(), clock=lambda: NOW, feed=StubFeed()),
                             headers=AUTH)
    db.close()


@pytest.mark.parametrize("sort", ["-id", "id", "-priority", "status", "-type", "created_at",
                                  "-started_at", "started_at", "-finished_at"])
def test_walking_the_cursor_lists_every_task_once_in_the_order_of_the_sort(client, sort):
    seed_tasks(180)
    assert walk(client, {"sort": sort, "limit": 13}) == expected_ids(all_rows(), sort)


@pytest.mark.parametrize("sort", ["-id", "-priority", "started_at"])
def test_walking_with_a_status_filter_lists_each_matching_task_once_in_order(client, sort):
    seed_tasks(180)
    walked = walk(client, {"sort": sort, "status": "queued", "limit": 7})
    assert walked and walked == expected_ids(all_rows(), sort, status="queued")


def test_tasks_submitted_during_a_walk_neither_repeat_nor_shift_the_pages(client):
    seed_tasks(60)
    before = expected_ids(all_rows(), "-id")

    def submit() -> None:
        result = client.simulate_post("/tasks", json={"type": "noop", "settings": {"frames": "1"}})
        assert result.status_code == 202

    assert walk(client, {"limit": 8}, between_pages=submit) == before


def test_a_bad_cursor_is_a_400_naming_the_cursor(client):
    made_for_priority = paging.encode("priority", True, paging.Position(1, 1))
    result = client.simulate_get("/tasks", params={"cursor": made_for_priority})
    assert result.status_code == 400 and result.json["error"]["field"] == "cursor"


def test_the_benchs_status_page_is_read_from_an_index_without_sorting_on_postgresql(database_url, client):
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's plans are checked in tests/unit/test_api_paging.py")
    seed_tasks(3000)
    with database_proxy.connection_context():
        database_proxy.execute_sql("ANALYZE tasks")
        database_proxy.execute_sql("SET enable_seqscan = off")  # a tiny table would be scanned anyway
        for after in (None, paging.Position(2500, 2500)):
            sql, params = queries.task_list_sql(TaskQuery(("queued",), None, 50, 0, after=after), "%s")
            plan = " / ".join(row[0] for row in database_proxy.execute_sql(f"EXPLAIN {sql}", params))
            assert "Index" in plan and "Sort" not in plan and "Seq Scan" not in plan, plan
