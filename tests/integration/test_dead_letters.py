"""Dead letters keep what a replay needs: the queue they came from and the original headers."""
from __future__ import annotations

import json
import subprocess
import time

import pytest
from kombu import Connection

from common import messages, signing, topology
from common.db import open_database
from common.models import Worker, database_proxy
from tests.conftest import wait_for
from tests.integration.farmproc import CORRAL

pytestmark = pytest.mark.integration


def dlq(farm, *args):
    out = subprocess.run([*CORRAL, "dlq", *args], env=farm.env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def dead_letters(farm):
    return json.loads(dlq(farm, "list", "--json"))


def test_a_signed_heartbeat_dead_lettered_for_want_of_a_key_passes_its_check_when_replayed(farm, broker_url):
    farm.gateway()
    farm.dispatcher()
    wait_for(lambda: farm.get("/health")["dispatcher"]["active"], timeout=30, what="an active dispatcher")
    ns = farm.env["CORRAL_NAMESPACE"]
    key = signing.new_key()
    beat = messages.encode(messages.AgentHeartbeat(agent="ghost", sent_at=time.time(), boot_id="g1"))
    with Connection(broker_url) as conn:
        producer = conn.Producer()
        producer.publish(beat, exchange=topology.events_exchange_name(ns), routing_key="agent.heartbeat",
                         content_type="application/json",
                         headers={signing.AGENT_HEADER: "ghost", signing.SIG_HEADER: signing.sign(key, beat)})
        producer.publish(b"not json", exchange=topology.events_exchange_name(ns),
                         routing_key="chunk.progress", content_type="application/json")
    letters = wait_for(lambda: (lambda rows: rows if len(rows) == 2 else None)(dead_letters(farm)),
                       timeout=15, what="two dead letters")
    by_key = {row["routing_key"]: row for row in letters}
    assert by_key["agent.heartbeat"]["queue"] == topology.heartbeat_queue_name(ns)
    assert "has no key" in by_key["agent.heartbeat"]["reason"]
    assert by_key["chunk.progress"]["queue"] == topology.dispatcher_queue_name(ns)
    # The agent registers (its key is now the dispatcher's): the replayed heartbeat checks out.
    open_database(farm.env["CORRAL_DATABASE_URL"])
    with database_proxy.connection_context():
        Worker.create(name="ghost", hostname="ghost", signing_key=key.hex(), boot_id="g1")
    dlq(farm, "replay", by_key["agent.heartbeat"]["id"])
    wait_for(lambda: farm.get("/workers").get("ghost", {}).get("connection") == "online", timeout=15,
             what="the replayed heartbeat applied")
    assert [row["routing_key"] for row in dead_letters(farm)] == ["chunk.progress"]
