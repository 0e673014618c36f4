"""Corral on a real three-node RabbitMQ cluster with quorum queues: losing a node loses nothing.

A session fixture starts corral-c1..c3@localhost (AMQP 5701-5703, distribution
25701-25703, data under the session's temporary directory), clusters them and
stops them at the end. Every Corral process gets all three addresses in
``CORRAL_BROKER_URL`` and ``CORRAL_QUEUE_TYPE=quorum``.
"""
from __future__ import annotations

import json
import time

import pytest
import requests

from common.bus import CONNECTION_ERRORS, Bus
from common.config import load_config
from common.db import open_database
from common.models import Attempt, Chunk, database_proxy
from common.topology import (
    chunk_queue_name,
    dead_queue_name,
    dispatcher_queue_name,
    heartbeat_queue_name,
)
from tests.conftest import delete_namespace_queues, farm_environment, missing, wait_for
from tests.integration.farmproc import Farm, sleep_settings
from tests.integration.logtimes import first_after
from tests.integration.test_farm import assert_a_high_priority_task_overtakes_a_low_one, chunk_rows
from tests.rabbitnodes import RabbitCluster, RabbitNode, rabbitmq_available

pytestmark = pytest.mark.integration

NODES = [("corral-c1", 5701, 25701), ("corral-c2", 5702, 25702), ("corral-c3", 5703, 25703)]
AGENTS = ("q1", "q2", "q3")
# A reconnect must not wait for anything but the process's own first retry.
RECONNECT_BOUND_S = 15.0


@pytest.fixture(scope="session")
def rabbit_cluster(tmp_path_factory):
    problem = rabbitmq_available()
    if problem:
        missing(f"RabbitMQ server binaries: {problem}")
    cluster = RabbitCluster(tmp_path_factory.mktemp("rabbit-cluster"), NODES)
    cluster.start()
    yield cluster
    cluster.close()


@pytest.fixture
def cluster_farm(rabbit_cluster, namespace, sqlite_url, tmp_path):
    env = farm_environment(rabbit_cluster.urls(), namespace, sqlite_url, tmp_path)
    env["CORRAL_QUEUE_TYPE"] = "quorum"
    logdir = tmp_path / "logs"
    logdir.mkdir()
    farm = Farm(env, logdir)
    yield farm
    farm.close()


def queues(node: RabbitNode) -> dict[str, dict]:
    out = node.ctl("list_queues", "name", "type", "leader", "members", "--formatter", "json", "-q")
    return {row["name"]: row for row in json.loads(out)}


def survivor(cluster: RabbitCluster, lost: RabbitNode) -> RabbitNode:
    return next(node for node in cluster if node is not lost)


def attempts_by_chunk(env, task_id) -> dict[int, list[str]]:
    open_database(env["CORRAL_DATABASE_URL"])
    with database_proxy.connection_context():
        rows = Attempt.select(Attempt, Chunk).join(Chunk).where(Chunk.task == task_id)
        found: dict[int, list[str]] = {}
        for row in rows:
            found.setdefault(row.chunk.index, []).append(row.outcome)
        return found


def test_losing_the_node_that_leads_the_dispatcher_queue_mid_task_loses_nothing(rabbit_cluster,
                                                                              cluster_farm):
    farm, ns = cluster_farm, cluster_farm.env["CORRAL_NAMESPACE"]
    farm.gateway()
    farm.dispatcher()
    for name in AGENTS:
        farm.agent(name)
    farm.wait_online(list(AGENTS))
    task = farm.submit("sleep", sleep_settings(1, 60, 2, 0.2))
    wait_for(lambda: farm.get(f"/tasks/{task['id']}")["frames_done"] >= 8, timeout=30, what="progress")

    seed = rabbit_cluster.nodes[0]
    before = queues(seed)
    durable = [dispatcher_queue_name(ns), heartbeat_queue_name(ns), dead_queue_name(ns),
               chunk_queue_name(ns, "default", "sleep")]
    assert {name: before[name]["type"] for name in durable} == {name: "quorum" for name in durable}
    assert all(len(before[name]["members"]) == 3 for name in durable)
    leader = rabbit_cluster[before[dispatcher_queue_name(ns)]["leader"]]
    assert json.loads(leader.ctl("list_connections", "name", "--formatter", "json", "-q")), \
        "the farm should be connected to the leader, the first address it was given"

    lost_at = time.time()
    leader.kill()
    try:
        # The gateway publishes to a survivor: the first request after the loss is still a 202.
        posted = time.monotonic()
        second = requests.post(f"{farm.api}/tasks", json={"type": "noop", "settings": {
            "frame_start": 1, "frame_end": 6, "chunk_size": 1}}, headers=farm.headers, timeout=30)
        gateway_s = time.monotonic() - posted
        assert second.status_code == 202, second.text
        logs = {name: farm.logdir / f"{name}.log" for name in ("dispatcher", *[f"agent-{a}" for a in AGENTS])}
        needles = {"dispatcher": "dispatcher consuming from"}
        needles.update({f"agent-{a}": f"agent {a} reconnected to" for a in AGENTS})
        reconnected = wait_for(lambda: (lambda found: found if all(found.values()) else None)(
            {name: first_after(path, needles[name], lost_at) for name, path in logs.items()}),
            timeout=RECONNECT_BOUND_S * 2, what=f"every process to reconnect\n{farm.logs()}")
        delays = {name: round(when - lost_at, 2) for name, when in reconnected.items()}
        delays["gateway (first POST)"] = round(gateway_s, 2)
        print(f"\nbroker node {leader.name} lost -> reconnected (s): {delays}")
        assert max(delays.values()) < RECONNECT_BOUND_S, delays

        done = farm.wait_task(task["id"], timeout=120)
        assert done["frames_done"] == 60
        farm.wait_task(second.json()["id"], timeout=60)
        attempts = attempts_by_chunk(farm.env, task["id"])
        assert sorted(attempts) == list(range(30))
        assert all(outcomes.count("completed") == 1 for outcomes in attempts.values()), attempts
        frames = sorted(f for row in chunk_rows(farm.env, task["id"]) for f in row["frames_done"])
        assert frames == list(range(1, 61))

        after = queues(survivor(rabbit_cluster, leader))
        assert after[dispatcher_queue_name(ns)]["leader"] != leader.name
        workers = farm.get("/workers")
        assert all(workers[a]["connection"] == "online" for a in AGENTS), workers
        for name in ("gateway", "dispatcher", *[f"agent-{a}" for a in AGENTS]):
            assert farm.procs[name].poll() is None, f"{name} died\n{farm.logs()}"
    finally:
        rabbit_cluster.restart(leader)
        wait_for(lambda: len(rabbit_cluster.running_nodes(leader)) == 3, timeout=60,
                 what=f"{leader.name} back in the cluster")


def test_on_quorum_queues_a_high_priority_task_waits_behind_at_most_release_ahead_chunks(cluster_farm):
    # Quorum queues deliver first in, first out; the dispatcher's bounded release decides the order.
    farm = cluster_farm
    farm.env["CORRAL_RELEASE_AHEAD"] = "1"
    assert_a_high_priority_task_overtakes_a_low_one(farm)


def test_a_queue_type_that_does_not_match_the_namespace_s_queues_is_named_in_the_log(broker_url, namespace,
                                                                                     caplog):
    classic = Bus(load_config({"CORRAL_BROKER_URL": broker_url, "CORRAL_NAMESPACE": namespace}))
    quorum = Bus(load_config({"CORRAL_BROKER_URL": broker_url, "CORRAL_NAMESPACE": namespace,
                              "CORRAL_QUEUE_TYPE": "quorum"}))
    try:
        with classic.connect() as conn:
            classic.declare_core(conn.channel())
        with quorum.connect() as conn, pytest.raises(CONNECTION_ERRORS):
            quorum.declare_core(conn.channel())
        assert f"queue {dispatcher_queue_name(namespace)} exists with other arguments than " \
               "CORRAL_QUEUE_TYPE=quorum" in caplog.text
    finally:
        delete_namespace_queues(broker_url, namespace)
