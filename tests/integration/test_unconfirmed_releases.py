"""Chunk messages are sent without waiting for confirms; what the broker refuses or loses comes back.

``Publisher.send_all`` publishes and returns; ``Publisher.settle`` reads the
confirms that have arrived and hands back the token of every message the broker
nacked or that was in flight on a connection that broke. The dispatcher uses the
token (chunk id, lease) to withdraw the release (docs/architecture.md, the
dispatcher loop). These tests use a real RabbitMQ: a queue with
``x-overflow=reject-publish`` makes the broker nack for real.
"""
from __future__ import annotations

import time

import pytest
from kombu import Exchange, Queue

from common.bus import Bus, Outgoing
from common.config import load_config

pytestmark = pytest.mark.integration


def settle_all(publisher, timeout=10.0):
    """Settle until nothing is in flight; every token handed back on the way."""
    lost, deadline = [], time.monotonic() + timeout
    while True:
        lost += publisher.settle()
        if not publisher.unconfirmed or time.monotonic() > deadline:
            return lost
        time.sleep(0.01)


@pytest.fixture
def bus(broker_url, namespace):
    bus = Bus(load_config({}, broker_url=broker_url, namespace=namespace, insecure_agents=True))
    yield bus
    with bus.connect() as conn:  # the test's own exchange and queue
        channel = conn.channel()
        channel.queue_delete(f"{namespace}.full")
        channel.queue_delete(f"{namespace}.open")
        channel.exchange_delete(f"{namespace}.x")


@pytest.fixture
def publisher(bus):
    publisher = bus.publisher()
    yield publisher
    publisher.close()


def messages_to(bus, namespace, count):
    exchange = Exchange(f"{namespace}.x", type="direct", durable=False, auto_delete=False)
    queue = Queue(f"{namespace}.full", exchange, routing_key="full", durable=False,
                  queue_arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    with bus.connect() as conn:
        queue(conn.channel()).declare()
    return [(Outgoing(b"{}", exchange, "full", persistent=False), token) for token in range(count)]


def test_messages_the_broker_refuses_are_handed_back_and_the_rest_are_not(bus, namespace, publisher):
    publisher.send_all(messages_to(bus, namespace, 5))
    lost = settle_all(publisher)
    # The queue holds two; the broker nacks the three that overflow it.
    assert sorted(lost) == [2, 3, 4]
    assert publisher.unconfirmed == 0


def test_messages_in_flight_on_a_connection_that_breaks_are_handed_back(bus, namespace, publisher):
    publisher.send_all(messages_to(bus, namespace, 2))
    publisher.close()  # the connection goes before its confirms are read
    assert sorted(publisher.settle()) == [0, 1]
    assert publisher.settle() == []  # each token comes back once


def test_confirmed_messages_are_never_handed_back(bus, namespace, publisher):
    publisher.send_all(messages_to(bus, namespace, 2))
    assert settle_all(publisher) == []
    publisher.close()  # nothing in flight any more: nothing to lose
    assert publisher.settle() == []


def test_a_stream_of_unawaited_publishes_is_confirmed_without_loss_or_duplicates(bus, namespace, publisher):
    """Confirms arrive while later messages are still being published (py-amqp reads pending frames
    before every publish): none may be missed or taken as skipped (it would be published again, and
    the queue would hold duplicates)."""
    exchange = Exchange(f"{namespace}.x", type="direct", durable=False, auto_delete=False)
    queue = Queue(f"{namespace}.open", exchange, routing_key="open", durable=False)
    with bus.connect() as conn:
        queue(conn.channel()).declare()
    for first in range(0, 2000, 200):
        publisher.send_all([(Outgoing(b"{}", exchange, "open", persistent=False), token)
                            for token in range(first, first + 200)])
    assert settle_all(publisher) == []
    time.sleep(0.2)  # any re-send after the confirm gap would have gone out by now
    assert settle_all(publisher) == []
    with bus.connect() as conn:
        _, depth, _ = conn.channel().queue_declare(queue=f"{namespace}.open", passive=True)
    assert depth == 2000
