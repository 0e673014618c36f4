"""Fault injection on real processes and the real broker: nothing lost, nothing counted twice."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import psutil
import pytest
import requests
from kombu import Connection, Queue

from common.db import open_database
from common.models import Attempt, Chunk, Task, Worker, database_proxy
from tests.conftest import wait_for
from tests.integration.farmproc import CORRAL, poll_until, sleep_settings
from tests.integration.test_farm import chunk_rows

pytestmark = pytest.mark.integration


def started_farm(farm, *agents):
    farm.gateway()
    farm.dispatcher()
    for name in agents:
        farm.agent(name)
    farm.wait_online(list(agents))
    return farm


def db(farm):
    open_database(farm.env["CORRAL_DATABASE_URL"])
    return database_proxy


def running_on(farm, task_id):
    """{agent name: chunk row} for the task's running chunks."""
    with db(farm).connection_context():
        rows = (Chunk.select(Chunk, Worker).join(Worker)
                .where(Chunk.task == task_id, Chunk.status == "running"))
        return {row.worker.name: row for row in rows}


def group_alive(pid):
    try:
        os.killpg(pid, 0)
        return True
    except ProcessLookupError:
        return False


def test_an_agent_killed_mid_chunk_goes_offline_and_its_chunk_completes_elsewhere(farm):
    started_farm(farm, "k1", "k2")
    task = farm.submit("sleep", sleep_settings(1, 4, 4, 1.0))
    victim = wait_for(lambda: next(iter(running_on(farm, task["id"])), None), timeout=20,
                      what="the chunk to start")
    killed_at = time.monotonic()
    os.killpg(farm.procs.pop(f"agent-{victim}").pid, signal.SIGKILL)
    wait_for(lambda: farm.get("/workers")[victim]["connection"] == "offline", timeout=10,
             what=f"{victim} offline")
    assert time.monotonic() - killed_at <= float(farm.env["CORRAL_AGENT_TIMEOUT"]) + 2
    done = farm.wait_task(task["id"], timeout=30)
    assert done["frames_done"] == 4
    with db(farm).connection_context():
        outcomes = [a.outcome for a in Attempt.select().order_by(Attempt.number)]
        assert outcomes == ["lost", "completed"]


def test_a_presumed_dead_agent_that_comes_back_changes_nothing_with_its_stale_report(farm):
    started_farm(farm, "z1", "z2")
    task = farm.submit("sleep", sleep_settings(1, 3, 3, 1.0))
    zombie = wait_for(lambda: next(iter(running_on(farm, task["id"])), None), timeout=20,
                      what="the chunk to start")
    proc = farm.procs[f"agent-{zombie}"]
    os.killpg(proc.pid, signal.SIGSTOP)  # the agent and its child freeze: no heartbeats
    try:
        done = farm.wait_task(task["id"], timeout=40)
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
    time.sleep(4)  # the thawed agent finishes its stale attempt and reports on the old lease
    after = farm.get(f"/tasks/{task['id']}")
    assert after["status"] == "completed" and after["frames_done"] == done["frames_done"] == 3
    rows = chunk_rows(farm.env, task["id"])
    assert rows[0]["frames_done"] == [1, 2, 3]
    assert farm.get("/workers")[zombie]["connection"] == "online"  # it is back, and harmless


def test_sigterm_lets_the_running_chunk_finish_and_the_agent_keeps_its_worker_id(farm):
    started_farm(farm, "t1")
    worker_id = farm.get("/workers")["t1"]["id"]
    task = farm.submit("sleep", sleep_settings(1, 3, 3, 0.7))
    wait_for(lambda: running_on(farm, task["id"]), timeout=20, what="the chunk to start")
    assert farm.stop("agent-t1", signal.SIGTERM, timeout=20) == 0
    # The agent finished the chunk before exiting; the dispatcher applies its reports just after.
    done = farm.wait_task(task["id"], timeout=10)
    assert done["frames_done"] == 3
    wait_for(lambda: farm.get("/workers")["t1"]["connection"] == "offline", timeout=10,
             what="the goodbye applied")
    farm.agent("t1")
    farm.wait_online(["t1"])
    assert farm.get("/workers")["t1"]["id"] == worker_id


def test_stop_now_kills_the_child_and_hands_the_chunk_back_at_once(farm):
    started_farm(farm, "n1")
    task = farm.submit("sleep", sleep_settings(1, 2, 2, 30))
    wait_for(lambda: running_on(farm, task["id"]), timeout=20, what="the chunk to start")
    child = wait_for(lambda: [p for p in psutil.Process(farm.procs["agent-n1"].pid).children(recursive=True)
                              if "sleeper" in " ".join(p.cmdline())], timeout=10, what="the child")
    stop = subprocess.run([*CORRAL, "agent", "stop", "--now", "--name", "n1", "--timeout", "20"],
                          env=farm.env, capture_output=True, text=True, timeout=30)
    assert stop.returncode == 0, stop.stderr
    assert farm.procs.pop("agent-n1").wait(5) == 0
    assert poll_until(lambda: not any(p.is_running() for p in child), timeout=5)
    rows = chunk_rows(farm.env, task["id"])
    assert rows[0]["status"] in ("pending", "released") and rows[0]["failures"] == 0
    farm.agent("n2")
    farm.wait_online(["n2"])
    with db(farm).connection_context():
        wait_for(lambda: Chunk.get(Chunk.task == task["id"]).status == "running", timeout=20,
                 what="the handed-back chunk to run on n2")


def test_a_dispatcher_killed_mid_task_loses_nothing_and_releases_nothing_twice(farm):
    started_farm(farm, "d1", "d2")
    task = farm.submit("sleep", sleep_settings(1, 12, 1, 0.3))
    wait_for(lambda: farm.get(f"/tasks/{task['id']}")["frames_done"] >= 2, timeout=20,
             what="some frames done")
    farm.stop("dispatcher", signal.SIGKILL)
    time.sleep(2)  # agents keep rendering and publishing into the durable queue
    farm.dispatcher()
    done = farm.wait_task(task["id"], timeout=40)
    assert done["frames_done"] == 12
    rows = chunk_rows(farm.env, task["id"])
    assert all(r["attempts"] == 1 for r in rows), [(r["index"], r["attempts"]) for r in rows]
    assert sorted(f for r in rows for f in r["frames_done"]) == list(range(1, 13))
    with db(farm).connection_context():
        assert Chunk.select().where(Chunk.status == "running").count() == 0


def rabbit_restart():
    subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True, timeout=60)
    return subprocess.Popen(["rabbitmqctl", "-q", "start_app"])


def wait_broker(url):
    def answers():
        try:
            with Connection(url, connect_timeout=2) as conn:
                conn.ensure_connection(max_retries=1)
                return True
        except Exception:  # noqa: BLE001 - anything but a working connection means not yet
            return False
    wait_for(answers, timeout=90, interval=0.5, what="RabbitMQ to come back")


def test_a_broker_restart_mid_task_loses_no_chunk_and_the_gateway_answers_503_meanwhile(farm, broker_url):
    started_farm(farm, "r1", "r2")
    task = farm.submit("sleep", sleep_settings(1, 10, 1, 0.4))
    wait_for(lambda: farm.get(f"/tasks/{task['id']}")["frames_done"] >= 2, timeout=20, what="progress")
    subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True, timeout=60)
    try:
        response = requests.post(f"{farm.api}/tasks", json={"type": "noop", "settings": {
            "frame_start": 1, "frame_end": 1}}, headers=farm.headers, timeout=30)
        assert response.status_code == 503 and "Retry-After" in response.headers
        assert response.json()["error"]["code"] == "broker_unavailable"
    finally:
        subprocess.run(["rabbitmqctl", "-q", "start_app"], check=True, timeout=120)
        wait_broker(broker_url)
    with db(farm).connection_context():
        assert Task.select().count() == 1  # the refused task was not recorded
    done = farm.wait_task(task["id"], timeout=90)
    assert done["frames_done"] == 10
    for name in ("dispatcher", "agent-r1", "agent-r2"):
        assert farm.procs[name].poll() is None, f"{name} died"
    assert "reconnect" in (farm.logdir / "dispatcher.log").read_text()


def test_a_postgresql_restart_mid_task_is_retried_without_dropping_events(pg_database, farm):
    farm.env["CORRAL_DATABASE_URL"] = pg_database
    started_farm(farm, "p1", "p2")
    task = farm.submit("sleep", sleep_settings(1, 8, 1, 0.4))
    wait_for(lambda: farm.get(f"/tasks/{task['id']}")["frames_done"] >= 2, timeout=20, what="progress")
    cluster = sorted(os.listdir("/etc/postgresql"))[0]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "restart"],
                   check=True, timeout=120, capture_output=True)
    done = farm.wait_task(task["id"], timeout=90)
    assert done["frames_done"] == 8
    assert farm.procs["dispatcher"].poll() is None
    rows = chunk_rows(farm.env, task["id"])
    assert sorted(f for r in rows for f in r["frames_done"]) == list(range(1, 9))


def test_a_failing_chunk_is_retried_on_another_agent_and_then_fails_the_task_keeping_every_log(farm):
    started_farm(farm, "f1", "f2")
    task = farm.submit("sleep", {**sleep_settings(1, 1, 1, 0.05), "exit_code": 3}, max_retries=2)
    done = farm.wait_task(task["id"], statuses=("failed",), timeout=40)
    assert "failed 3 times" in done["error"] and "exit code 3" in done["error"]
    chunks = farm.get(f"/tasks/{task['id']}/chunks")["chunks"]
    history = chunks[0]["attempts_history"]
    assert len(history) == 3 and all("exit code 3" in a["log_tail"] for a in history)
    assert history[0]["worker"] != history[1]["worker"]  # the retry went to the other agent


def test_a_hung_chunk_is_killed_after_its_stall_timeout_and_counts_as_a_failure(farm):
    started_farm(farm, "s1")
    task = farm.submit("sleep", sleep_settings(1, 1, 1, 60), max_retries=0, stall_timeout=2)
    done = farm.wait_task(task["id"], statuses=("failed",), timeout=40)
    assert "stalled" in done["error"]
    assert not [p for p in psutil.process_iter(["cmdline"])
                if "--seconds 60.0" in " ".join(p.info["cmdline"] or [])]


def test_a_task_no_agent_can_take_says_so(farm):
    started_farm(farm, "w1")
    task = farm.submit("sleep", sleep_settings(1, 1, 1, 0), pool="gpu")
    waiting = wait_for(lambda: farm.get(f"/tasks/{task['id']}")["waiting_reason"], timeout=15,
                       what="a waiting reason")
    assert "pool 'gpu'" in waiting
    farm.agent("g1", "gpu")
    farm.wait_task(task["id"], timeout=30)
    assert farm.get(f"/tasks/{task['id']}")["waiting_reason"] == ""


def test_corral_dlq_lists_shows_replays_and_drops_dead_letters(farm, broker_url):
    started_farm(farm, "q1")
    ns = farm.env["CORRAL_NAMESPACE"]
    with Connection(broker_url) as conn:
        producer = conn.Producer()
        for body in (b"garbage one", b"garbage two"):
            producer.publish(body, exchange=f"{ns}.events", routing_key="chunk.progress",
                             content_type="application/json")

    def dlq(*args):
        out = subprocess.run([*CORRAL, "dlq", *args], env=farm.env, capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout
    listing = wait_for(lambda: (lambda text: text if text.startswith("2 dead") else None)(dlq("list")),
                       timeout=15, what="two dead letters")
    first, second = (line.split()[0] for line in listing.splitlines()[1:3])
    assert "garbage one" in dlq("show", first)
    dlq("drop", first)
    dlq("replay", second)  # still garbage: it comes straight back, with a new id
    assert wait_for(lambda: (lambda text: text if text.startswith("1 dead") else None)(dlq("list")),
                    timeout=15, what="one dead letter")
    assert farm.procs["dispatcher"].poll() is None
    with Connection(broker_url) as conn:
        assert Queue(f"{ns}.dead", no_declare=True)(conn.default_channel).queue_declare(
            passive=True).message_count == 1
