"""The whole farm on real RabbitMQ: gateway under gunicorn, dispatcher and agents as processes."""
from __future__ import annotations

import psutil
import pytest
from kombu import Connection, Queue

from common import topology
from common.db import open_database
from common.models import Chunk, Task, database_proxy
from tests.conftest import wait_for
from tests.integration.farmproc import poll_until, sleep_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def running_farm(farm):
    farm.gateway()
    farm.dispatcher()
    for name in ("a1", "a2", "a3"):
        farm.agent(name)
    farm.wait_online(["a1", "a2", "a3"])
    return farm


def chunk_rows(env, task_id):
    """Read chunks straight from the database the farm writes."""
    open_database(env["CORRAL_DATABASE_URL"])
    with database_proxy.connection_context():
        return list(Chunk.select().where(Chunk.task == task_id).order_by(Chunk.index).dicts())


def test_a_thirty_frame_sleep_task_completes_with_every_frame_counted_once(running_farm):
    farm = running_farm
    task = farm.submit("sleep", sleep_settings(1, 30, 3, 0.05), priority=50)
    assert (task["frame_start"], task["frame_end"], task["status"]) == (1, 30, "queued")
    seen_current = set()

    def completed():
        current = farm.get(f"/tasks/{task['id']}")
        seen_current.add(current["frame_current"])
        return current if current["status"] == "completed" else None

    done = wait_for(completed, timeout=60, interval=0.05, what="the task to complete")
    assert done["frame_current"] == 30
    assert done["frames_done"] == 30
    rows = chunk_rows(farm.env, task["id"])
    assert len(rows) == 10
    assert all(row["status"] == "completed" for row in rows)
    frames = [f for row in rows for f in row["frames_done"]]
    assert sorted(frames) == list(range(1, 31))  # every frame once, none twice
    assert len({row["worker"] for row in rows}) > 1  # spread over agents
    assert len(seen_current - {None}) > 1  # frame_current rose in steps
    chunks = farm.get(f"/tasks/{task['id']}/chunks")
    listed = chunks["chunks"] if isinstance(chunks, dict) else chunks
    assert all(c["status"] == "completed" and c["attempts"] == 1 for c in listed)


def test_workers_are_listed_online_with_their_own_machine_readings(running_farm):
    farm = running_farm
    workers = farm.get("/workers")
    assert {"a1", "a2", "a3"} <= set(workers)
    one = workers["a1"]
    assert one["connection"] == "online" and one["status"] == "enabled"
    assert one["system"].split()[0] == "Linux"
    detail = wait_for(lambda: (lambda w: w if w["update_frequent"] else None)(
        farm.get(f"/workers/{one['id']}")), timeout=10, what="a heartbeat with readings")
    assert set(detail["update_frequent"]["load_average"]) == {"1min", "5min", "15min"}
    assert detail["update_less_frequent"]["worker_num_cpus"] == psutil.cpu_count()
    assert 0 <= detail["update_less_frequent"]["worker_mem_percent"] <= 100


def assert_a_high_priority_task_overtakes_a_low_one(farm):
    """On one busy agent, a high-priority task runs before the rest of a low one already rendering."""
    farm.gateway()
    farm.dispatcher()
    farm.agent("solo")
    farm.wait_online(["solo"])
    low = farm.submit("sleep", sleep_settings(1, 8, 1, 0.3), priority=10)
    wait_for(lambda: farm.get(f"/tasks/{low['id']}")["status"] == "rendering", timeout=20,
             what="the low task to start")
    high = farm.submit("sleep", sleep_settings(1, 2, 1, 0.05), priority=90)
    farm.wait_task(high["id"], timeout=30)
    high_end = max(c["finished_at"] for c in chunk_rows(farm.env, high["id"]))
    low_rows = chunk_rows(farm.env, low["id"])
    started_after = [c for c in low_rows if c["started_at"] is None or c["started_at"] > high_end]
    # At most the running low chunk and those released ahead precede the high task.
    assert len(started_after) >= 5, low_rows
    farm.wait_task(low["id"], timeout=30)


def test_a_high_priority_task_overtakes_the_rest_of_a_queued_low_priority_task(farm):
    assert_a_high_priority_task_overtakes_a_low_one(farm)


def test_cancel_mid_run_kills_the_child_process_and_ends_the_task_canceled(running_farm):
    farm = running_farm
    task = farm.submit("sleep", sleep_settings(1, 3, 3, 20))
    wait_for(lambda: farm.get(f"/tasks/{task['id']}")["status"] == "rendering", timeout=20,
             what="the chunk to start")

    agents = {proc.pid for proc in farm.procs.values()}

    def sleeper():  # this farm's: other tests on the machine run sleepers too
        return [p for p in psutil.process_iter(["cmdline", "ppid"])
                if "agent.children.sleeper" in " ".join(p.info["cmdline"] or []) and p.info["ppid"] in agents]
    children = wait_for(sleeper, timeout=10, what="the sleep child process")
    import requests

    response = requests.delete(f"{farm.api}/tasks/{task['id']}", headers=farm.headers, timeout=10)
    assert response.status_code == 202
    farm.wait_task(task["id"], statuses=("canceled",), timeout=10)
    gone = poll_until(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                                      for p in children), timeout=10)
    assert gone, "the child process survived the cancel"
    rows = chunk_rows(farm.env, task["id"])
    assert {r["status"] for r in rows} == {"canceled"}


def test_a_task_submitted_while_the_dispatcher_is_down_runs_after_it_starts(farm):
    farm.gateway()
    farm.agent("a1")
    task = farm.submit("sleep", sleep_settings(1, 4, 2, 0.05))
    assert farm.get(f"/tasks/{task['id']}")["status"] == "queued"
    farm.dispatcher()
    done = farm.wait_task(task["id"], timeout=40)
    assert done["frames_done"] == 4


def test_a_poison_message_is_dead_lettered_with_its_reason_and_the_dispatcher_goes_on(
        running_farm, broker_url):
    farm = running_farm
    ns = farm.env["CORRAL_NAMESPACE"]
    with Connection(broker_url) as conn:
        producer = conn.Producer()
        producer.publish(b"{not json", exchange=topology.events_exchange_name(ns),
                         routing_key="chunk.finished", content_type="application/json")
        producer.publish(b'{"kind": "chunk.finished", "version": 1, "data": {"agent": 5}}',
                         exchange=topology.events_exchange_name(ns), routing_key="chunk.finished",
                         content_type="application/json")
    task = farm.submit("sleep", sleep_settings(1, 2, 1, 0.01))
    farm.wait_task(task["id"], timeout=30)
    reasons = []
    with Connection(broker_url) as conn:
        dead = Queue(topology.dead_queue_name(ns), no_declare=True)(conn.default_channel)
        while (message := dead.get(no_ack=True)) is not None:
            reasons.append(message.headers["x-corral-reason"])
    assert any("not JSON" in r for r in reasons), reasons
    assert any("agent" in r for r in reasons), reasons
    assert farm.procs["dispatcher"].poll() is None


def test_the_same_flow_runs_on_postgresql(pg_database, farm):
    farm.env["CORRAL_DATABASE_URL"] = pg_database
    farm.gateway()
    farm.dispatcher()
    farm.agent("pg1")
    farm.agent("pg2")
    farm.wait_online(["pg1", "pg2"])
    task = farm.submit("sleep", sleep_settings(1, 9, 3, 0.05))
    done = farm.wait_task(task["id"], timeout=40)
    assert (done["frames_done"], done["frame_current"]) == (9, 9)
    open_database(pg_database)
    with database_proxy.connection_context():
        assert Task.get_by_id(task["id"]).status == "completed"
        assert Chunk.select().where(Chunk.task == task["id"], Chunk.status == "completed").count() == 3
    database_proxy.close()
