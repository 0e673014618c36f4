"""The gateway's task endpoints, on the real app with a real SQLite database."""
from __future__ import annotations

import json
import threading
import urllib.parse

import pytest
from falcon import testing

from api_gateway.app import create_app
from api_gateway.media import MAX_BODY_BYTES
from common.config import load_config
from common.db import open_and_migrate
from common.messages import TaskCancel, TaskSubmitted, TaskUpdate
from common.models import Attempt, Chunk, Task, Worker, database_proxy
from tests.unit.gateway_support import AUTH, CONFIG, NOW

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def db(client):
    """A connection for a test that writes rows the dispatcher would write."""
    database_proxy.connect(reuse_if_open=True)
    yield database_proxy
    database_proxy.close()


def noop(**fields):
    body = {"type": "noop", "settings": {"frames": "1-10", "chunk_size": 3}}
    body.update(fields)
    return body


def submit(client, **fields):
    return client.simulate_post("/tasks", json=noop(**fields))


def task_count() -> int:
    with database_proxy.connection_context():
        return Task.select().count()


def error_of(result) -> dict:
    assert result.headers["content-type"].startswith("application/json")
    return result.json["error"]


# ---------------------------------------------------------------- POST /tasks


def test_a_json_submission_is_recorded_queued_and_handed_to_the_dispatcher(client, publisher):
    result = submit(client, priority=70, pool="gpu", max_retries=5, task_id="shot-010")

    assert result.status_code == 202
    task = result.json
    assert task["status"] == "queued"
    assert (task["priority"], task["pool"], task["max_retries"]) == (70, "gpu", 5)
    assert task["task_id"] == "shot-010"
    assert (task["frame_start"], task["frame_end"], task["frames_total"]) == (1, 10, 10)
    assert task["settings"] == {"frames": [[1, 10]], "chunk_size": 3}
    assert task["parser"] == "noop"
    assert task["created_at"] == NOW
    assert publisher.sent == [TaskSubmitted(task_id=task["id"])]
    with database_proxy.connection_context():
        row = Task.get_by_id(task["id"])
    assert row.compiled is False and row.client_task_id == "shot-010"


def test_defaults_come_from_the_config(client):
    task = submit(client).json
    config = load_config({})
    assert task["priority"] == config.default_priority
    assert task["max_retries"] == config.default_max_retries
    assert task["pool"] == "default"
    assert task["task_id"] is None


def test_a_blender_task_shows_its_output_format(client):
    settings = {"frame_start": 1, "frame_end": 4, "filepath": "/p/a.blend", "output_path": "/o/",
                "format": "OPEN_EXR"}
    task = client.simulate_post("/tasks", json={"type": "blender_render", "settings": settings}).json
    assert task["format"] == "OPEN_EXR"
    assert task["parser"] == "blender_render"


def test_a_form_encoded_submission_with_digit_strings_is_accepted(client, publisher):
    form = {"type": "sleep", "settings": json.dumps({"frame_start": 1, "frame_end": 4}),
            "priority": "9", "task_id": "12", "max_retries": "0", "parser": "sleep"}
    result = client.simulate_post("/tasks", body=urllib.parse.urlencode(form), headers=FORM)

    assert result.status_code == 202, result.text
    assert (result.json["priority"], result.json["max_retries"], result.json["task_id"]) == (9, 0, "12")
    assert len(publisher.sent) == 1


def test_settings_may_be_a_string_holding_a_json_object(client):
    result = client.simulate_post("/tasks", json={"type": "noop", "settings": '{"frames": "3-5"}'})
    assert result.status_code == 202
    assert result.json["frames_total"] == 3


def test_resubmitting_a_task_id_returns_the_same_task_and_publishes_once(client, publisher):
    first = submit(client, task_id=42)
    second = submit(client, task_id="42", priority=99)

    assert first.status_code == second.status_code == 202
    assert second.json["id"] == first.json["id"]
    assert second.json["priority"] == first.json["priority"]
    assert len(publisher.sent) == 1
    assert task_count() == 1


def test_concurrent_submissions_with_one_task_id_create_one_task(tmp_path, publisher):
    open_and_migrate(f"sqlite:///{tmp_path}/race.db")
    app = create_app(CONFIG, publisher)
    ids, barrier = [], threading.Barrier(8)

    def post():
        barrier.wait()
        client = testing.TestClient(app, headers=AUTH)
        ids.append(client.simulate_post("/tasks", json=noop(task_id="same")).json["id"])

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 1 and len(ids) == 8
    assert len(publisher.sent) == 1


def test_a_broker_outage_answers_503_with_retry_after_and_leaves_no_task(client, publisher):
    publisher.down = True
    result = submit(client, task_id="lost")

    assert result.status_code == 503
    assert int(result.headers["retry-after"]) > 0
    assert error_of(result)["code"] == "broker_unavailable"
    assert task_count() == 0
    publisher.down = False
    assert submit(client, task_id="lost").status_code == 202


@pytest.mark.parametrize("body, field", [
    ({"type": "fluid", "settings": {}}, "type"),
    ({"settings": {"frames": "1"}}, "type"),
    ({"type": "noop"}, "settings"),
    ({"type": "noop", "settings": "{not json"}, "settings"),
    ({"type": "noop", "settings": "[1, 2]"}, "settings"),
    ({"type": "noop", "settings": 7}, "settings"),
    ({"type": "noop", "settings": {}}, "settings.frame_start"),
    ({"type": "blender_render", "settings": {"frames": "1-3", "output_path": "/o"}}, "settings.filepath"),
    ({"type": "noop", "settings": {"frame_start": 5, "frame_end": 1}}, "settings.frame_end"),
    ({"type": "noop", "settings": {"frames": "1-5", "chunk_size": 0}}, "settings.chunk_size"),
    ({"type": "noop", "settings": {"frames": "1-5", "colour": "red"}}, "settings.colour"),
    (noop(priority="high"), "priority"),
    (noop(priority="7"), "priority"),
    (noop(priority=True), "priority"),
    (noop(priority=101), "priority"),
    (noop(priority=1.5), "priority"),
    (noop(max_retries=-1), "max_retries"),
    (noop(pool="GPU farm"), "pool"),
    (noop(parser="ffmpeg"), "parser"),
    (noop(task_id=["a"]), "task_id"),
    (noop(task_id="x" * 201), "task_id"),
    (noop(task_id=10**30), "task_id"),
    (noop(owner="me"), "owner"),
])
def test_an_invalid_submission_is_refused_naming_the_field(client, publisher, body, field):
    result = client.simulate_post("/tasks", json=body)

    assert result.status_code == 400, result.text
    assert error_of(result)["code"] == "invalid"
    assert error_of(result)["field"] == field
    assert field in error_of(result)["message"]
    assert publisher.sent == []
    assert task_count() == 0


def test_a_form_integer_that_is_not_digits_is_refused(client):
    form = urllib.parse.urlencode({"type": "noop", "settings": '{"frames":"1"}', "priority": "9x"})
    result = client.simulate_post("/tasks", body=form, headers=FORM)
    assert result.status_code == 400 and error_of(result)["field"] == "priority"


def test_a_body_that_is_not_json_is_refused_naming_body(client):
    result = client.simulate_post("/tasks", body="{oops", headers={"Content-Type": "application/json"})
    assert result.status_code == 400
    assert error_of(result)["field"] == "body"


def test_a_json_array_body_is_refused(client):
    result = client.simulate_post("/tasks", json=[noop()])
    assert result.status_code == 400 and error_of(result)["field"] == "body"


def test_an_unsupported_content_type_is_refused_with_415(client):
    result = client.simulate_post("/tasks", body="type=noop", headers={"Content-Type": "text/plain"})
    assert result.status_code == 415
    assert error_of(result)["code"] == "unsupported_media_type"


def test_a_body_over_one_mebibyte_is_refused_with_413(client):
    body = json.dumps(noop(task_id="x" * (MAX_BODY_BYTES + 10)))
    result = client.simulate_post("/tasks", body=body, headers={"Content-Type": "application/json"})
    assert result.status_code == 413
    assert error_of(result)["code"] == "too_large"


# ---------------------------------------------------------------- GET /tasks


def test_listing_is_newest_first_with_total_and_paging(client):
    ids = [submit(client).json["id"] for _ in range(5)]

    page = client.simulate_get("/tasks", params={"limit": 2, "offset": 1}).json
    assert [t["id"] for t in page["tasks"]] == [ids[3], ids[2]]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 1)
    assert client.simulate_get("/tasks").json["limit"] == 50


def test_listing_filters_by_one_or_several_statuses_and_by_type(client, db):
    a, b, c = (submit(client).json["id"] for _ in range(3))
    client.simulate_post("/tasks", json={"type": "sleep", "settings": {"frames": "1"}})
    Task.update(status="completed").where(Task.id == a).execute()
    Task.update(status="failed").where(Task.id == b).execute()

    done = client.simulate_get("/tasks", params={"status": "completed,failed"}).json
    assert sorted(t["id"] for t in done["tasks"]) == [a, b] and done["total"] == 2
    noops = client.simulate_get("/tasks", params={"type": "noop", "status": "queued"}).json
    assert [t["id"] for t in noops["tasks"]] == [c]


@pytest.mark.parametrize("params, field", [
    ({"status": "done"}, "status"),
    ({"status": "queued,"}, "status"),
    ({"type": "fluid"}, "type"),
    ({"limit": "0"}, "limit"),
    ({"limit": "501"}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"offset": "-1"}, "offset"),
    ({"offset": "9" * 40}, "offset"),
])
def test_bad_list_parameters_are_refused_naming_the_parameter(client, params, field):
    result = client.simulate_get("/tasks", params=params)
    assert result.status_code == 400
    assert error_of(result)["field"] == field


# ---------------------------------------------------------------- GET /tasks/{id}


def test_a_task_shows_its_chunk_counts_by_status(client, db):
    task_id = submit(client).json["id"]
    for index, status in enumerate(["completed", "completed", "running", "pending"]):
        Chunk.create(task=task_id, index=index, command="noop", frames=[[index, index]], frame_count=1,
                     status=status)

    task = client.simulate_get(f"/tasks/{task_id}").json
    assert task["chunks_total"] == 4
    assert task["chunks_by_status"] == {"completed": 2, "running": 1, "pending": 1}
    assert task["id"] == task_id and task["status"] == "queued"


@pytest.mark.parametrize("path", ["/tasks/999", "/tasks/abc", "/tasks/0", "/tasks/-1", "/tasks/1.5",
                                  "/tasks/99999999999999999999999", "/tasks/999/chunks",
                                  "/tasks/x/chunks", "/nowhere", "/tasks/1/chunks/2"])
def test_unknown_or_malformed_task_paths_answer_404_json(client, path):
    result = client.simulate_get(path)
    assert result.status_code == 404
    assert error_of(result)["code"] == "not_found"


def test_a_wrong_method_answers_405_json(client):
    result = client.simulate_put("/tasks")
    assert result.status_code == 405
    assert error_of(result)["code"] == "method_not_allowed"
    assert "POST" in result.headers["allow"]


# ---------------------------------------------------------------- GET /tasks/{id}/chunks


def test_chunks_are_listed_in_order_with_their_workers_and_attempt_history(client, db):
    task_id = submit(client).json["id"]
    alpha = Worker.create(name="alpha", hostname="alpha")
    beta = Worker.create(name="beta", hostname="beta")
    first = Chunk.create(task=task_id, index=0, command="noop", frames=[[1, 3]], frame_count=3,
                         frames_done=[1, 2, 3], status="completed", attempts=2, failures=1, worker=beta,
                         started_at=NOW, finished_at=NOW + 5, files=["/o/1.png"], log_tail="done")
    Chunk.create(task=task_id, index=1, command="noop", frames=[[4, 6], [8, 8]], frame_count=4,
                 depends_on=[0], status="blocked")
    Attempt.create(chunk=first, number=2, lease_id="l2", worker=beta, outcome="completed", exit_code=0,
                   started_at=NOW, finished_at=NOW + 5)
    Attempt.create(chunk=first, number=1, lease_id="l1", worker=alpha, outcome="failed", exit_code=1,
                   reason="exit code 1", log_tail="boom")

    chunks = client.simulate_get(f"/tasks/{task_id}/chunks").json["chunks"]

    assert [c["index"] for c in chunks] == [0, 1]
    done, blocked = chunks
    assert (done["frame_start"], done["frame_end"], done["frame_count"], done["frames_done"]) == (1, 3, 3, 3)
    assert (done["worker"], done["worker_id"], done["attempts"], done["failures"]) == ("beta", beta.id, 2, 1)
    assert done["files"] == ["/o/1.png"] and done["log_tail"] == "done"
    assert [(a["number"], a["worker"], a["outcome"], a["exit_code"]) for a in done["attempts_history"]] == [
        (1, "alpha", "failed", 1), (2, "beta", "completed", 0)]
    assert done["attempts_history"][0]["reason"] == "exit code 1"
    assert blocked["frames"] == [[4, 6], [8, 8]]
    assert (blocked["frame_start"], blocked["frame_end"], blocked["worker"]) == (4, 8, None)
    assert blocked["depends_on"] == [0] and blocked["attempts_history"] == []


# ---------------------------------------------------------------- PATCH / DELETE


def test_patching_priority_and_pause_publishes_a_task_update(client, publisher):
    task_id = submit(client).json["id"]

    result = client.simulate_patch(f"/tasks/{task_id}", json={"priority": 90, "status": "paused"})

    assert result.status_code == 204
    assert publisher.sent[-1] == TaskUpdate(task_id=task_id, priority=90, status="paused")
    resumed = client.simulate_patch(f"/tasks/{task_id}", body="status=queued", headers=FORM)
    assert resumed.status_code == 204
    assert publisher.sent[-1] == TaskUpdate(task_id=task_id, priority=None, status="queued")


def test_the_gateway_does_not_change_a_patched_task_itself(client):
    task_id = submit(client, priority=10).json["id"]
    client.simulate_patch(f"/tasks/{task_id}", json={"priority": 90})
    assert client.simulate_get(f"/tasks/{task_id}").json["priority"] == 10


@pytest.mark.parametrize("body, field", [
    ({}, "body"), ({"status": "rendering"}, "status"), ({"priority": "90"}, "priority"),
    ({"priority": 500}, "priority"), ({"name": "x"}, "name"),
])
def test_a_bad_patch_is_refused_and_publishes_nothing(client, publisher, body, field):
    task_id = submit(client).json["id"]
    result = client.simulate_patch(f"/tasks/{task_id}", json=body)
    assert result.status_code == 400
    assert error_of(result)["field"] == field
    assert len(publisher.sent) == 1


def test_cancelling_publishes_a_task_cancel_and_answers_202_with_the_task(client, publisher):
    task_id = submit(client).json["id"]

    result = client.simulate_delete(f"/tasks/{task_id}")

    assert result.status_code == 202
    assert result.json["id"] == task_id
    assert publisher.sent[-1] == TaskCancel(task_id=task_id)
    assert task_count() == 1


@pytest.mark.parametrize("status", ["completed", "failed", "canceled"])
def test_a_task_in_a_final_status_cannot_be_changed_or_cancelled(client, publisher, db, status):
    task_id = submit(client).json["id"]
    Task.update(status=status).where(Task.id == task_id).execute()

    patched = client.simulate_patch(f"/tasks/{task_id}", json={"priority": 1})
    deleted = client.simulate_delete(f"/tasks/{task_id}")

    assert patched.status_code == deleted.status_code == 409
    assert error_of(patched)["code"] == error_of(deleted)["code"] == "conflict"
    assert len(publisher.sent) == 1


def test_patch_and_delete_of_an_unknown_task_answer_404(client):
    assert client.simulate_patch("/tasks/77", json={"priority": 1}).status_code == 404
    assert client.simulate_delete("/tasks/77").status_code == 404


def test_a_cancel_the_broker_cannot_take_answers_503(client, publisher):
    task_id = submit(client).json["id"]
    publisher.down = True
    result = client.simulate_delete(f"/tasks/{task_id}")
    assert result.status_code == 503 and "retry-after" in result.headers


def test_blocklist_is_listed_and_clearing_it_publishes_one_message(client, publisher):
    from common.models import Blocklist, Task, Worker

    task = Task.create(type="sleep", parser="sleep", settings={}, frame_start=1, frame_end=1)
    worker = Worker.create(name="w9")
    Blocklist.create(task=task, worker=worker, failures=3, blocked_at=5.0)
    shown = client.simulate_get(f"/tasks/{task.id}")
    assert shown.json["blocklist"] == [{"worker": "w9", "worker_id": worker.id, "failures": 3,
                                        "blocked": True, "blocked_at": 5.0}]
    cleared = client.simulate_delete(f"/tasks/{task.id}/blocklist", params={"worker_id": worker.id})
    assert cleared.status_code == 202
    (message,) = [m for m in publisher.sent if m.kind == "task.blocklist_clear"]
    assert (message.task_id, message.worker_id) == (task.id, worker.id)
    assert client.simulate_delete(f"/tasks/{task.id}/blocklist", params={"worker_id": 999}).status_code == 404


def test_stall_timeout_and_blocklist_threshold_are_accepted_and_range_checked(client):
    body = {"type": "noop", "settings": {"frame_start": 1, "frame_end": 2}, "stall_timeout": 30,
            "blocklist_threshold": 2}
    made = client.simulate_post("/tasks", json=body)
    assert made.status_code == 202
    assert (made.json["stall_timeout"], made.json["blocklist_threshold"]) == (30, 2)
    bad = client.simulate_post("/tasks", json={**body, "stall_timeout": -1})
    assert bad.status_code == 400 and bad.json["error"]["field"] == "stall_timeout"
