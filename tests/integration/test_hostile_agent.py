"""A compromised render node, with valid credentials of its own, can lie only about its own chunks.

One farm for the module, on a vhost of its own under the least-privilege users of
deploy/rabbitmq-users.sh: an honest agent in pool ``default`` renders a long task
while a hostile agent process (tests/integration/hostile.py), enrolled for pool
``night`` with its own broker user, tries one attack per test. Every attempt is
refused by the broker or dead-lettered by the dispatcher, the farm's state does
not change, and the legitimate task completes with every frame counted once.
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid

import pytest
from kombu import Connection, Queue

from common import enrollment, messages, signing, topology
from common.db import open_database
from common.models import Chunk, Task, Worker, database_proxy
from tests.conftest import ROOT, wait_for
from tests.integration.farmproc import Farm, sleep_settings
from tests.integration.test_security_rabbitmq import SCRIPT, rabbitmqctl, url, vhost_or_missing

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
HEARTBEAT_S = 2.0
ROLES = ("gateway", "dispatcher", "agent", "agent-honest", "agent-mallory", "agent-victim")


class HostileFarm:
    """The module's farm, its broker users, and what the dispatcher has dead-lettered so far."""

    def __init__(self, farm: Farm, users: dict[str, str], credentials: dict[str, str]) -> None:
        self.farm, self.users, self.credentials = farm, users, credentials
        self.ns = farm.env["CORRAL_NAMESPACE"]
        self.reasons: list[str] = []
        self.tasks: list[int] = []

    def attack(self, attack: str, *args: str) -> list[dict[str, str]]:
        env = {**self.farm.env, "CORRAL_BROKER_URL": self.users["agent-mallory"],
               "CORRAL_AGENT_CREDENTIAL_FILE": self.credentials["mallory"]}
        done = subprocess.run([sys.executable, "-m", "tests.integration.hostile", attack, "--name", "mallory",
                               "--pool", "night", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    def dead(self, predicate, count: int = 1, timeout: float = 20) -> list[str]:
        """Wait until ``count`` dead-letter reasons satisfy ``predicate``; return them."""
        def found():
            with Connection(self.users["dispatcher"]) as conn:
                queue = Queue(topology.dead_queue_name(self.ns), no_declare=True)(conn.default_channel)
                while (message := queue.get(no_ack=True)) is not None:
                    self.reasons.append(message.headers["x-corral-reason"])
            matching = [r for r in self.reasons if predicate(r)]
            return matching if len(matching) >= count else None
        return wait_for(found, timeout=timeout, interval=0.3, what=f"{count} dead letter(s)")

    def db(self):
        open_database(self.farm.env["CORRAL_DATABASE_URL"])
        return database_proxy.connection_context()

    def snapshot(self) -> dict:
        """What no attack may change: tasks' status and priority, workers' status, honest's boot."""
        with self.db():
            tasks = {t.id: (t.priority, t.status in ("canceled", "paused", "failed")) for t in Task.select()}
            workers = {w.name: (w.status, w.boot_id if w.name == "honest" else "")
                       for w in Worker.select() if w.name != "mallory"}  # its own row is its own business
        return {"tasks": tasks, "workers": workers}

    def running_on_honest(self) -> Chunk:
        def running():
            with self.db():
                return (Chunk.select().join(Worker, on=(Chunk.worker == Worker.id))
                        .where(Chunk.status == "running", Worker.name == "honest").first())
        return wait_for(running, timeout=30, what="a chunk running on the honest agent")


@pytest.fixture(scope="module")
def hostile(broker_url, tmp_path_factory):
    vhost_or_missing(broker_url)
    suffix = uuid.uuid4().hex[:8]
    vhost, prefix, ns = f"corral-hostile-{suffix}", f"hos{suffix}-", f"h{suffix}"
    tmp = tmp_path_factory.mktemp("hostile")
    passwords = {role: uuid.uuid4().hex for role in ROLES}
    rabbitmqctl("add_vhost", vhost)
    try:
        env = dict(os.environ, CORRAL_GATEWAY_PASSWORD=passwords["gateway"],
                   CORRAL_DISPATCHER_PASSWORD=passwords["dispatcher"],
                   CORRAL_AGENT_PASSWORD=passwords["agent"],
                   CORRAL_AGENT_PASSWORD_HONEST=passwords["agent-honest"],
                   CORRAL_AGENT_PASSWORD_MALLORY=passwords["agent-mallory"],
                   CORRAL_AGENT_PASSWORD_VICTIM=passwords["agent-victim"])
        made = subprocess.run(["bash", str(SCRIPT), "--vhost", vhost, "--namespace", ns,
                               "--user-prefix", prefix, "--agent", "honest=default",
                               "--agent", "victim=default", "--agent", "mallory=night"],
                              env=env, capture_output=True, text=True, timeout=120)
        assert made.returncode == 0, made.stderr
        users = {role: url(broker_url, f"{prefix}{role}", passwords[role], vhost) for role in ROLES}
        (tmp / "logs").mkdir()
        farm = Farm(dict(os.environ, CORRAL_NAMESPACE=ns, CORRAL_DATABASE_URL=f"sqlite:///{tmp / 'c.db'}",
                         CORRAL_DATA_DIR=str(tmp / "var"), CORRAL_HEARTBEAT_INTERVAL=str(HEARTBEAT_S),
                         CORRAL_AGENT_TIMEOUT="10", CORRAL_TICK_INTERVAL="0.2", CORRAL_API_CACHE="0",
                         CORRAL_BROKER_URL=users["gateway"], PYTHONUNBUFFERED="1"), tmp / "logs")
        try:
            farm.gateway()
            enrolled = (("honest", "default"), ("victim", "default"), ("mallory", "night"))
            credentials = {name: str(farm.enroll(name, pool)) for name, pool in enrolled}
            farm.env["CORRAL_BROKER_URL"] = users["dispatcher"]
            farm.dispatcher()
            farm.env["CORRAL_BROKER_URL"] = users["agent-honest"]
            farm.agent("honest", "default", credential=credentials["honest"])
            farm.env["CORRAL_BROKER_URL"] = users["gateway"]
            farm.wait_online(["honest"])
            state = HostileFarm(farm, users, credentials)
            # The legitimate work that runs through every attack.
            state.tasks.append(farm.submit("sleep", sleep_settings(1, 90, 3, 0.3))["id"])
            yield state
        finally:
            farm.close()
    finally:
        for role in ROLES:
            rabbitmqctl("delete_user", f"{prefix}{role}", check=False)
        rabbitmqctl("delete_vhost", vhost, check=False)


def published(tries: list[dict[str, str]]) -> list[str]:
    return [t["try"] for t in tries if t["outcome"] == "published"]


def refused_by_broker(tries: list[dict[str, str]]) -> list[str]:
    return [t["try"] for t in tries if t["outcome"].startswith("refused by the broker: 403")]


def test_a_hello_under_another_agents_name_is_dead_lettered(hostile):
    before = hostile.snapshot()
    tries = hostile.attack("hello-as", "--target", "honest")
    assert len(published(tries)) == 2, tries
    reasons = hostile.dead(lambda r: "'honest'" in r and ("hello" in r or "sender header" in r), count=2)
    assert any("signature check failed for a hello from 'honest'" in r for r in reasons)
    assert any("sender header does not name agent 'honest'" in r for r in reasons)
    assert hostile.snapshot() == before  # honest keeps its boot; nobody new is registered


def test_reports_on_another_agents_chunk_are_dead_lettered_and_the_chunk_runs_on(hostile):
    chunk = hostile.running_on_honest()
    before = hostile.snapshot()
    tries = hostile.attack("report-on", "--chunk", str(chunk.id), "--lease", chunk.lease_id,
                           "--target", "honest")
    assert len(published(tries)) == 4, tries
    reasons = hostile.dead(lambda r: f"reports on chunk {chunk.id}" in r
                           or "signature check failed for a chunk." in r, count=4)
    assert sum(f"reports on chunk {chunk.id}, which agent 'honest' runs" in r for r in reasons) == 2
    assert sum("signature check failed for a chunk." in r and "'honest'" in r for r in reasons) == 2
    with hostile.db():
        now = Chunk.get_by_id(chunk.id)
    assert now.status in ("running", "completed") and now.failures == 0
    assert len(now.frames_done) <= now.frame_count
    assert hostile.snapshot() == before


def test_commands_published_by_a_node_are_refused_by_the_broker_or_dead_lettered(hostile):
    task_id = hostile.tasks[0]
    with hostile.db():
        worker_id = Worker.get(Worker.name == "honest").id
    before = hostile.snapshot()
    tries = hostile.attack("commands", "--task", str(task_id), "--worker", str(worker_id))
    # The topic permissions stop task.* and worker.* at the broker ...
    assert sorted(refused_by_broker(tries)) == sorted(
        f"{k} with its own routing key" for k in ("task.cancel", "task.update", "worker.update")), tries
    # ... and disguised under an agent's routing key, the dispatcher refuses them.
    assert len(published(tries)) == 3
    hostile.dead(lambda r: "routing key 'chunk.finished' does not match" in r, count=3)
    assert hostile.snapshot() == before


def test_commands_without_the_command_key_are_dead_lettered_even_from_the_gateways_broker_user(hostile):
    """The second wall: broker credentials that may publish task.* still cannot command the farm."""
    task_id = hostile.tasks[0]
    before = hostile.snapshot()
    with Connection(hostile.users["gateway"]) as conn:
        producer = conn.Producer()
        events = topology.events_exchange_name(hostile.ns)
        forgeries = (messages.TaskCancel(task_id=task_id), messages.TaskUpdate(task_id=task_id, priority=1))
        for message in forgeries:
            body = messages.encode(message)
            forged = {signing.COMMAND_SIG_HEADER: signing.sign(signing.new_key(), body)}
            producer.publish(body, exchange=events, routing_key=message.kind, headers=forged,
                             content_type="application/json")
    hostile.dead(lambda r: "command signature check failed" in r, count=2)
    assert hostile.snapshot() == before


def test_a_node_cannot_consume_another_pools_chunks_or_another_agents_control_queue(hostile):
    tries = hostile.attack("consume", "--target", "honest", "--victim-pool", "default")
    assert len(refused_by_broker(tries)) == 4, tries


def test_a_node_can_neither_declare_nor_delete_queues_or_exchanges(hostile):
    before = hostile.snapshot()
    tries = hostile.attack("topology")
    assert len(refused_by_broker(tries)) == len(tries) == 7, tries
    assert hostile.snapshot() == before


def test_replayed_hellos_are_dead_lettered(hostile, tmp_path):
    with hostile.db():
        honest = Worker.get(Worker.name == "honest")
    key = enrollment.node_key(open(hostile.credentials["honest"]).read().strip())
    captured = []
    for what, sent_at in (("honest's earlier hello", honest.hello_sent_at - 1),
                          ("honest's hello from an hour ago", time.time() - 3600)):
        hello = messages.AgentHello(agent="honest", hostname="h", system="Linux", pools=["default"],
                                    commands=["sleep"], boot_id=uuid.uuid4().hex, sent_at=sent_at)
        body = messages.encode(hello)
        headers = {signing.AGENT_HEADER: "honest", signing.SIG_HEADER: signing.sign(key, body)}
        captured.append({"what": what, "body": base64.b64encode(body).decode(), "headers": headers})
    (tmp_path / "captured.json").write_text(json.dumps(captured))
    before = hostile.snapshot()
    tries = hostile.attack("replay", "--replay", str(tmp_path / "captured.json"))
    assert len(published(tries)) == 4, tries
    hostile.dead(lambda r: "hello from 'honest' is not newer than its last one" in r)
    hostile.dead(lambda r: "hello from 'honest' is not fresh" in r)
    hostile.dead(lambda r: "hello from 'mallory' is not newer than its last one" in r)
    assert hostile.snapshot() == before  # honest was not "restarted": its chunk is not requeued


def test_revoking_a_running_agent_requeues_its_chunk_within_one_heartbeat_interval(hostile):
    farm = hostile.farm
    farm.env["CORRAL_BROKER_URL"] = hostile.users["agent-victim"]
    try:
        victim = farm.agent("victim", "default", credential=hostile.credentials["victim"])
    finally:
        farm.env["CORRAL_BROKER_URL"] = hostile.users["gateway"]
    hostile.tasks.append(farm.submit("sleep", sleep_settings(1, 8, 2, 1.5))["id"])

    def on_victim():
        with hostile.db():
            return (Chunk.select().join(Worker, on=(Chunk.worker == Worker.id))
                    .where(Chunk.status == "running", Worker.name == "victim").first())
    chunk = wait_for(on_victim, timeout=40, what="a chunk running on the victim")
    farm.revoke("victim")
    revoked_at = time.monotonic()

    def moved():
        with hostile.db():
            row = Chunk.get_by_id(chunk.id)
            return row.lease_id != chunk.lease_id
    wait_for(moved, timeout=HEARTBEAT_S, interval=0.05, what="the victim's chunk to be requeued")
    elapsed = time.monotonic() - revoked_at
    print(f"the revoked agent's chunk was requeued {elapsed:.2f}s after `corral agent revoke` returned")
    assert elapsed <= HEARTBEAT_S
    assert victim.wait(30) == 77  # told to go; it exits with EX_NOPERM
    with hostile.db():
        worker = Worker.get(Worker.name == "victim")
    assert (worker.connection, worker.activity, worker.signing_key) == ("offline", "revoked", None)


def test_the_legitimate_tasks_complete_with_every_frame_counted_once(hostile):
    for task_id in hostile.tasks:
        done = hostile.farm.wait_task(task_id, timeout=180)
        with hostile.db():
            rows = list(Chunk.select().where(Chunk.task == task_id))
        frames = sorted(f for row in rows for f in row.frames_done)
        assert frames == list(range(done["frame_start"], done["frame_end"] + 1))
        assert done["frames_done"] == len(frames)
    with hostile.db():
        assert Worker.get(Worker.name == "honest").status == "enabled"
    assert not any("handler error" in r for r in hostile.reasons)
