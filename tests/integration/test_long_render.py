"""A chunk that runs longer than RabbitMQ's consumer timeout is neither cut off nor redelivered.

RabbitMQ 3.10 closes a channel that holds a delivery unacknowledged past
``consumer_timeout`` (30 minutes by default, broker-wide). Corral agents ack a
chunk when they start it and hold it by a lease instead. The test shortens the
broker's timeout (and its check interval) for its own duration, shows that a
plain consumer holding a delivery is cut off, and that a Corral chunk of the
same length completes in one attempt.
"""
from __future__ import annotations

import subprocess
import time

import pytest
from kombu import Connection, Queue

from tests.conftest import wait_for
from tests.integration.farmproc import sleep_settings
from tests.integration.test_farm import chunk_rows

pytestmark = pytest.mark.integration
TIMEOUT_MS = 2000


def rabbit_env(consumer_timeout_ms: int, tick_ms: int) -> None:
    subprocess.run(["rabbitmqctl", "-q", "eval",
                    f"application:set_env(rabbit, consumer_timeout, {consumer_timeout_ms}), "
                    f"application:set_env(rabbit, channel_tick_interval, {tick_ms})."],
                   check=True, timeout=30, capture_output=True)


@pytest.fixture
def short_consumer_timeout():
    rabbit_env(TIMEOUT_MS, 500)
    yield
    rabbit_env(1_800_000, 60_000)


def held_delivery_is_cut_off(broker_url: str, queue_name: str, hold_s: float) -> bool:
    """True when the broker closes a plain consumer's channel for holding a delivery too long."""
    with Connection(broker_url) as conn:
        queue = Queue(queue_name, auto_delete=True)(conn.channel())
        queue.declare()
        conn.Producer().publish(b"held", routing_key=queue_name)
        consumer = conn.Consumer([queue], callbacks=[lambda body, message: None])
        consumer.qos(prefetch_count=1)
        with consumer:
            started = time.monotonic()
            try:
                while time.monotonic() - started < hold_s:
                    try:
                        conn.drain_events(timeout=0.5)
                    except TimeoutError:
                        pass
            except Exception as exc:  # noqa: BLE001 - the broker's close arrives as a channel error
                return "PRECONDITION_FAILED" in str(exc)
    return False


def test_a_chunk_longer_than_the_consumer_timeout_completes_in_one_attempt(
        short_consumer_timeout, farm, broker_url, namespace):
    assert held_delivery_is_cut_off(broker_url, f"{namespace}.held", hold_s=6)
    farm.gateway()
    farm.dispatcher()
    farm.agent("long1")
    farm.wait_online(["long1"])
    task = farm.submit("sleep", sleep_settings(1, 4, 4, 2.0))  # 8 s: four times the timeout
    done = farm.wait_task(task["id"], timeout=60)
    assert done["frames_done"] == 4
    (row,) = chunk_rows(farm.env, task["id"])
    assert row["attempts"] == 1 and row["failures"] == 0
    assert row["finished_at"] - row["started_at"] >= 4 * TIMEOUT_MS / 1000
    assert "connection lost" not in (farm.logdir / "agent-long1.log").read_text()
    wait_for(lambda: farm.get("/workers")["long1"]["connection"] == "online", timeout=5,
             what="the agent still online")
