"""Forged and replayed agent messages on the real broker are dead-lettered and change nothing."""
from __future__ import annotations

import time

import pytest
from kombu import Connection, Queue

from common import messages, signing, topology
from tests.conftest import wait_for
from tests.integration.farmproc import sleep_settings
from tests.integration.test_farm import chunk_rows

pytestmark = pytest.mark.integration


def dead_reasons(broker_url, namespace):
    reasons = []
    with Connection(broker_url) as conn:
        dead = Queue(topology.dead_queue_name(namespace), no_declare=True)(conn.default_channel)
        while (message := dead.get(no_ack=True)) is not None:
            reasons.append(message.headers["x-corral-reason"])
    return reasons


def test_forged_and_replayed_agent_messages_are_refused(farm, broker_url):
    farm.gateway()
    farm.dispatcher()
    farm.agent("honest")
    farm.wait_online(["honest"])
    ns, secret = farm.env["CORRAL_NAMESPACE"], farm.env["CORRAL_AGENT_SECRET"]
    task = farm.submit("sleep", sleep_settings(1, 2, 2, 6.0))  # long enough to outlast the forgeries
    def running():  # the chunk exists once the dispatcher has compiled the task
        rows = chunk_rows(farm.env, task["id"])
        return bool(rows) and rows[0]["status"] == "running"
    wait_for(running, timeout=20, what="the chunk to run")
    row = chunk_rows(farm.env, task["id"])[0]
    forged_finish = messages.ChunkFinished(agent="honest", chunk_id=row["id"], lease_id=row["lease_id"],
                                           outcome="completed", finished_at=time.time(),
                                           frames_done=[1, 2])
    old_hello = messages.AgentHello(agent="intruder", hostname="h", system="Linux", pools=["default"],
                                    commands=["sleep"], boot_id="b", sent_at=time.time() - 3600)
    with Connection(broker_url) as conn:
        producer = conn.Producer()
        exchange = topology.events_exchange_name(ns)
        body = messages.encode(forged_finish)
        # 1. unsigned, 2. signed with a key the attacker made up, 3. a stale hello signed properly.
        producer.publish(body, exchange=exchange, routing_key="chunk.finished",
                         headers={signing.AGENT_HEADER: "honest"}, content_type="application/json")
        producer.publish(body, exchange=exchange, routing_key="chunk.finished",
                         headers={signing.AGENT_HEADER: "honest",
                                  signing.SIG_HEADER: signing.sign(signing.new_key(), body)},
                         content_type="application/json")
        hello = messages.encode(old_hello)
        producer.publish(hello, exchange=exchange, routing_key="agent.hello",
                         headers={signing.AGENT_HEADER: "intruder",
                                  signing.SIG_HEADER: signing.sign(signing.hello_key(secret), hello)},
                         content_type="application/json")
    reasons: list[str] = []

    def three_dead_letters():
        reasons.extend(dead_reasons(broker_url, ns))
        return len(reasons) >= 3
    wait_for(three_dead_letters, timeout=15, what="three dead letters")
    assert sum("signature check failed" in r for r in reasons) == 3, reasons
    assert any("not fresh" in r for r in reasons)
    assert chunk_rows(farm.env, task["id"])[0]["status"] == "running"  # the forgery changed nothing
    assert "intruder" not in farm.get("/workers")
    done = farm.wait_task(task["id"], timeout=45)  # the honest agent's own report still counts
    assert done["frames_done"] == 2
