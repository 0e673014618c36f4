"""Worker control on real processes and the real broker: pools at runtime, stop/restart, sleep windows.

Each test drives the farm only over REST (``PATCH /workers/{id}``), as an
operator would from another machine, and watches real agent processes react.
"""
from __future__ import annotations

import datetime

import pytest
import requests

from agent.agent import EXIT_RESTART
from tests.conftest import wait_for
from tests.integration.farmproc import sleep_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def started(farm, *agents: str, pool: str = "default"):
    farm.gateway()
    farm.dispatcher()
    for name in agents:
        farm.agent(name, pool)
    return farm.wait_online(list(agents))


def patch(farm, name: str, body: dict) -> None:
    worker_id = farm.get("/workers")[name]["id"]
    response = requests.patch(f"{farm.api}/workers/{worker_id}", json=body, headers=farm.headers, timeout=10)
    assert response.status_code == 200, response.text


def worker(farm, name: str) -> dict:
    return farm.get("/workers")[name]


def chunks(farm, task_id: int) -> list[dict]:
    return farm.get(f"/tasks/{task_id}/chunks")["chunks"]


def running(farm, task_id: int) -> dict | None:
    return next((c for c in chunks(farm, task_id) if c["status"] == "running"), None)


def exit_code(farm, name: str, timeout: float = 30) -> int:
    proc = farm.procs[f"agent-{name}"]
    try:
        wait_for(lambda: proc.poll() is not None, timeout=timeout, what=f"agent {name} to exit")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{farm.logs()}") from None
    return proc.returncode


def covering_now() -> dict:
    """A UTC window from an hour ago to an hour from now (crossing midnight if it must)."""
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(hours=1)
    return {"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M"), "tz": "UTC"}


def test_new_pools_make_the_running_agent_take_a_chunk_of_the_new_pool_without_a_restart(farm):
    started(farm, "p1")
    pid = farm.procs["agent-p1"].pid
    task = farm.submit("sleep", sleep_settings(1, 2, 1, 0.1), pool="gpu")
    wait_for(lambda: "no online, enabled agent in pool 'gpu'" in farm.get(f"/tasks/{task['id']}")[
        "waiting_reason"], timeout=20, what="the task to wait for a gpu agent")

    patch(farm, "p1", {"pools": ["gpu", "default"]})

    farm.wait_task(task["id"], timeout=40)
    assert farm.procs["agent-p1"].poll() is None and farm.procs["agent-p1"].pid == pid
    shown = worker(farm, "p1")
    assert (shown["pools"], shown["pools_set_by"]) == (["gpu", "default"], "operator")
    assert {c["worker"] for c in chunks(farm, task["id"])} == {"p1"}
    assert "pools default -> gpu,default" in (farm.logdir / "agent-p1.log").read_text()
    # And back: the agent leaves the gpu queue again, still without a restart.
    patch(farm, "p1", {"pools": None})
    wait_for(lambda: worker(farm, "p1")["pools"] == ["default"], timeout=10, what="the agent's own pools")
    later = farm.submit("sleep", sleep_settings(1, 1, 1, 0.1), pool="gpu")
    wait_for(lambda: farm.get(f"/tasks/{later['id']}")["waiting_reason"], timeout=20,
             what="the gpu task to wait again")
    assert farm.procs["agent-p1"].poll() is None


def test_stop_lets_the_running_chunk_finish_then_the_agent_says_goodbye_and_exits_0(farm):
    started(farm, "s1")
    task = farm.submit("sleep", sleep_settings(1, 4, 4, 0.75))
    wait_for(lambda: running(farm, task["id"]), timeout=20, what="the chunk to start")

    patch(farm, "s1", {"action": "stop"})

    wait_for(lambda: worker(farm, "s1")["pending_action"] == "stop", timeout=10, what="the pending stop")
    assert exit_code(farm, "s1") == 0
    (chunk,) = chunks(farm, task["id"])
    assert chunk["status"] == "completed" and chunk["failures"] == 0
    assert [a["outcome"] for a in chunk["attempts_history"]] == ["completed"]
    wait_for(lambda: (w := worker(farm, "s1"))["connection"] == "offline" and w["pending_action"] is None,
             timeout=15, what="the goodbye to clear the pending stop")
    assert "agent s1 stop requested by the operator" in (farm.logdir / "agent-s1.log").read_text()


def test_stop_now_kills_the_chunk_hands_it_back_without_a_failure_and_exits_0(farm):
    started(farm, "n1")
    task = farm.submit("sleep", sleep_settings(1, 4, 4, 10.0))
    wait_for(lambda: running(farm, task["id"]), timeout=20, what="the chunk to start")

    patch(farm, "n1", {"action": "stop_now"})

    assert exit_code(farm, "n1", timeout=20) == 0
    def handed_back():
        (chunk,) = chunks(farm, task["id"])
        return chunk if chunk["status"] == "pending" else None
    chunk = wait_for(handed_back, timeout=10, what="the chunk back to pending")
    assert chunk["failures"] == 0
    assert [a["outcome"] for a in chunk["attempts_history"]] == ["declined"]
    assert farm.get(f"/tasks/{task['id']}")["status"] not in ("failed", "canceled")


def test_restart_finishes_the_chunk_exits_75_and_the_restarted_agent_keeps_its_worker(farm):
    started(farm, "r1")
    worker_id = worker(farm, "r1")["id"]
    task = farm.submit("sleep", sleep_settings(1, 2, 2, 0.75))
    wait_for(lambda: running(farm, task["id"]), timeout=20, what="the chunk to start")

    patch(farm, "r1", {"action": "restart"})

    wait_for(lambda: worker(farm, "r1")["pending_action"] == "restart", timeout=10,
             what="the pending restart")
    assert exit_code(farm, "r1") == EXIT_RESTART == 75
    assert farm.get(f"/tasks/{task['id']}")["status"] == "completed"
    farm.procs.pop("agent-r1")
    farm.agent("r1")  # what systemd (RestartForceExitStatus=75) or Kubernetes does
    back = farm.wait_online(["r1"])["r1"]
    assert back["id"] == worker_id and back["pending_action"] is None


def test_a_sleep_schedule_covering_now_keeps_chunks_pending_until_it_is_cleared(farm):
    started(farm, "z1")
    patch(farm, "z1", {"sleep_schedule": covering_now()})
    wait_for(lambda: worker(farm, "z1")["asleep"], timeout=10, what="the worker asleep")

    task = farm.submit("sleep", sleep_settings(1, 2, 1, 0.1))

    reason = wait_for(lambda: farm.get(f"/tasks/{task['id']}")["waiting_reason"], timeout=20,
                      what="a waiting reason")
    assert "asleep by its sleep schedule (z1)" in reason
    assert {c["status"] for c in chunks(farm, task["id"])} == {"pending"}
    assert "asleep: taking no chunks" in (farm.logdir / "agent-z1.log").read_text()

    patch(farm, "z1", {"sleep_schedule": None})

    farm.wait_task(task["id"], timeout=30)
    assert farm.get(f"/tasks/{task['id']}")["waiting_reason"] == ""


def test_a_schedule_and_a_stop_set_while_the_agent_is_offline_hold_when_it_comes_back(farm):
    started(farm, "o1")
    assert farm.stop("agent-o1") == 0
    wait_for(lambda: worker(farm, "o1")["connection"] == "offline", timeout=10, what="o1 offline")

    patch(farm, "o1", {"sleep_schedule": covering_now()})
    task = farm.submit("sleep", sleep_settings(1, 1, 1, 0.1))
    farm.agent("o1")
    farm.wait_online(["o1"])

    # Until the agent's hello is applied the reason is "no online agent"; then it says asleep.
    wait_for(lambda: "asleep" in farm.get(f"/tasks/{task['id']}")["waiting_reason"], timeout=20,
             what="the waiting reason to say the agent is asleep")
    wait_for(lambda: "asleep: taking no chunks" in (farm.logdir / "agent-o1.log").read_text(),
             timeout=10, what="the agent to hear it is asleep")
    assert [c["status"] for c in chunks(farm, task["id"])] == ["pending"]

    # A stop set while it is away is delivered when it says hello, before it takes anything.
    assert farm.stop("agent-o1") == 0
    wait_for(lambda: worker(farm, "o1")["connection"] == "offline", timeout=10, what="o1 offline again")
    patch(farm, "o1", {"action": "stop", "sleep_schedule": None})
    wait_for(lambda: worker(farm, "o1")["pending_action"] == "stop", timeout=10, what="the pending stop")
    farm.agent("o1")
    assert exit_code(farm, "o1") == 0
    assert [c["status"] for c in chunks(farm, task["id"])] == ["pending"]
    wait_for(lambda: worker(farm, "o1")["pending_action"] is None, timeout=10,
             what="the goodbye to clear the pending stop")


def test_the_worker_control_migration_upgrades_an_old_postgresql_database(pg_database):
    import psycopg2

    from common.db import MIGRATIONS, _m_worker_control, open_and_migrate
    from common.models import Worker, database_proxy

    open_and_migrate(pg_database).close()  # today's schema, then back to before worker control
    with database_proxy.connection_context():
        Worker.create(name="old-node", pools=["default"])
    con = psycopg2.connect(pg_database)
    with con, con.cursor() as cur:
        for column in ("operator_pools", "agent_pools", "pending_action", "sleep_schedule", "asleep"):
            cur.execute(f"ALTER TABLE workers DROP COLUMN {column}")
        version = MIGRATIONS.index(_m_worker_control) + 1
        cur.execute("DELETE FROM schema_version WHERE version = %s", (version,))
    con.close()

    db = open_and_migrate(pg_database)
    open_and_migrate(pg_database)  # a second migrator finds nothing to do

    with database_proxy.connection_context():
        node = Worker.select(Worker.name, Worker.asleep, Worker.pending_action).get()
        assert (node.name, node.asleep, node.pending_action) == ("old-node", False, None)
        present = {c.name for c in db.get_columns("workers")}
        assert {"operator_pools", "agent_pools", "sleep_schedule"} <= present
    db.close()
