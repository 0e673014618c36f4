"""Queue types and several broker addresses: config, topology and connection order, no broker needed."""
from __future__ import annotations

import socket

import pytest
from kombu.exceptions import OperationalError

from common.bus import Bus
from common.config import load_config
from common.errors import ConfigError
from common.topology import Topology

NS = "unit"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def test_several_broker_addresses_are_read_in_order_and_spaces_are_ignored():
    config = load_config({"CORRAL_BROKER_URL": "amqp://a:5701// ; amqp://b:5702//;amqp://c:5703//"})
    assert config.broker_urls == ("amqp://a:5701//", "amqp://b:5702//", "amqp://c:5703//")


@pytest.mark.parametrize("url, field", [
    ("amqp://a//;redis://b//", "'redis://b//'"),
    ("memory://;amqp://a//", "memory://"),
    (" ; ", "empty"),
])
def test_a_bad_broker_address_list_is_refused_with_a_sentence(url, field):
    with pytest.raises(ConfigError, match="CORRAL_BROKER_URL") as caught:
        load_config({"CORRAL_BROKER_URL": url})
    assert field in str(caught.value)


def test_the_queue_type_must_be_classic_or_quorum():
    assert load_config({"CORRAL_QUEUE_TYPE": "quorum"}).queue_type == "quorum"
    with pytest.raises(ConfigError, match="CORRAL_QUEUE_TYPE 'stream' must be classic or quorum"):
        load_config({"CORRAL_QUEUE_TYPE": "stream"})


def test_the_amqp_heartbeat_may_be_off_but_not_negative():
    assert load_config({"CORRAL_AMQP_HEARTBEAT": "0"}).amqp_heartbeat_s == 0
    with pytest.raises(ConfigError, match="CORRAL_AMQP_HEARTBEAT"):
        load_config({"CORRAL_AMQP_HEARTBEAT": "-1"})


def test_quorum_makes_every_durable_queue_a_quorum_queue_and_drops_chunk_priorities():
    topo = Topology(NS, "quorum")
    durable = [topo.dispatcher_queue(), topo.heartbeat_queue(), topo.dead_queue(),
               topo.chunk_queue("default", "sleep")]
    assert all(q.queue_arguments["x-queue-type"] == "quorum" for q in durable)
    assert topo.chunk_queue("default", "sleep").max_priority is None
    assert topo.heartbeat_queue().queue_arguments["x-max-length"] > 0
    agent = topo.agent_queue("a1")  # quorum queues cannot auto-delete: stays classic
    # Agent queues stay classic: not durable, made by the dispatcher on hello, expiring when unused.
    assert not agent.durable and "x-expires" in agent.queue_arguments
    assert not agent.queue_arguments.get("x-queue-type")


def test_classic_keeps_broker_priorities_and_the_broker_default_queue_type():
    topo = Topology(NS)
    assert topo.chunk_queue("default", "sleep").max_priority == 9
    assert "x-queue-type" not in (topo.dispatcher_queue().queue_arguments or {})


def test_a_connection_tries_each_address_once_and_then_gives_up():
    ports = [closed_port(), closed_port()]
    bus = Bus(load_config({"CORRAL_BROKER_URL": ";".join(f"amqp://guest:guest@127.0.0.1:{p}//"
                                                         for p in ports)}))
    with pytest.raises(OperationalError):
        bus.connect()
    assert bus.connection().as_uri().endswith(f":{ports[0]}//")  # nothing answered: order kept


def test_new_connections_start_at_the_address_that_answered_last():
    urls = [f"amqp://guest:guest@127.0.0.1:{port}//" for port in (5701, 5702, 5703)]
    bus = Bus(load_config({"CORRAL_BROKER_URL": ";".join(urls)}))
    bus._preferred = 2
    conn = bus.connection()
    assert conn.as_uri().endswith(":5703//")
    assert [alt.rsplit(":", 1)[1] for alt in conn.alt] == ["5703//", "5701//", "5702//"]
