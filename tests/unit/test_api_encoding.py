"""gzip for large JSON answers, only to clients that accept it (api_gateway/encoding.py)."""
from __future__ import annotations

import gzip
import json

import pytest

from api_gateway.encoding import MIN_BYTES, accepts_gzip, dumps
from common.models import Worker, database_proxy
from tests.unit.paging_support import seed_tasks

GZIP = {"Accept-Encoding": "gzip, deflate"}


@pytest.mark.parametrize("media", [
    {"tasks": [{"id": 1, "settings": {"frames": [[1, 10]]}, "started_at": 1700000000.123456}], "next": None},
    {"task_id": "shot-é-🎬", "error": "naïve"},
    {"odd": "\ud800 lone surrogate"},
    [1e16, 0.1, -0.0, 10**30, True, None, ""],
])
def test_answers_are_compact_ascii_json_that_reads_back_as_the_same_values(media):
    data = dumps(media)
    assert data.isascii() and b", " not in data and b": " not in data
    assert json.loads(data) == media


def test_a_task_with_non_ascii_text_is_answered_with_that_text_escaped(client):
    submission = {"type": "noop", "settings": {"frames": "1"}, "task_id": "café"}
    created = client.simulate_post("/tasks", json=submission)
    listed = client.simulate_get("/tasks")
    assert b"caf\\u00e9" in listed.content and b"caf\\u00e9" in created.content
    assert listed.json["tasks"][0]["task_id"] == "café"


@pytest.mark.parametrize("header, accepted", [
    (None, False), ("", False), ("identity", False), ("deflate, br", False),
    ("gzip", True), ("gzip, deflate", True), ("GZip;Q=0.4", True), ("x-gzip", True), ("*", True),
    ("gzip;q=0", False), ("gzip;q=0.000", False), ("*;q=0", False), ("gzip;q=0, *", False),
    ("identity, *;q=0.5", True), ("gzip;q=lots", False),
])
def test_accept_encoding_admits_gzip_only_with_a_weight_above_zero(header, accepted):
    assert accepts_gzip(header) is accepted


def add_workers(count: int) -> None:
    with database_proxy.connection_context():
        Worker.insert_many([{"name": f"node-{i:04d}", "hostname": f"node-{i:04d}", "pools": ["default"],
                             "update_frequent": {"load_average": {"1min": 1.5}, "worker_cpu_percent": 9.0}}
                            for i in range(count)]).execute()


def test_the_worker_list_goes_gzipped_to_a_client_that_accepts_it_and_plain_to_others(client):
    add_workers(80)
    plain = client.simulate_get("/workers")
    packed = client.simulate_get("/workers", headers=GZIP)
    assert len(plain.content) >= MIN_BYTES and "content-encoding" not in plain.headers
    assert packed.headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(packed.content)) == plain.json
    assert plain.json["node-0042"]["readings"] == {"cpu_percent": 9.0, "mem_percent": None, "load_1min": 1.5}
    assert plain.headers["vary"] == packed.headers["vary"] == "Accept-Encoding"


def test_a_large_page_of_tasks_goes_gzipped_to_a_client_that_accepts_it(client):
    seed_tasks(60)
    plain = client.simulate_get("/tasks")
    packed = client.simulate_get("/tasks", headers=GZIP)
    assert packed.headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(packed.content)) == plain.json
    assert len(packed.content) < len(plain.content) / 4


def test_small_answers_and_errors_go_plain_whatever_the_client_accepts(client):
    small = client.simulate_get("/tasks", params={"limit": 1}, headers=GZIP)
    error = client.simulate_get("/tasks", params={"cursor": "nonsense"}, headers=GZIP)
    assert "content-encoding" not in small.headers and small.json["tasks"] == []
    assert error.status_code == 400 and "content-encoding" not in error.headers
    assert error.json["error"]["field"] == "cursor"


def test_pages_of_the_web_ui_are_not_touched(client):
    page = client.simulate_get("/ui/", headers=GZIP)
    assert page.status_code == 200 and "content-encoding" not in page.headers
