"""Small broker helpers: queue depth, the broker's version, deleting a run's queues."""
from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import time

import pika
import pika.exceptions

log = logging.getLogger(__name__)

AMQP_URL = "amqp://guest:guest@localhost:5672/%2F"  # pika spelling
KOMBU_URL = "amqp://guest:guest@localhost:5672//"  # the same broker as CORRAL_BROKER_URL


def connect(patience_s: float = 30.0) -> pika.BlockingConnection:
    """A blocking connection; retries while the broker is briefly away (restarts by other tests)."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        except pika.exceptions.AMQPConnectionError:
            if time.monotonic() > deadline:
                raise
            log.warning("the broker does not answer; retrying")
            time.sleep(1.0)


class DepthProbe:
    """Reads a queue's ready-message count with a passive declare, over one connection."""

    def __init__(self) -> None:
        self._conn = connect()
        self._channel = self._conn.channel()

    def depth(self, queue: str) -> int | None:
        """Messages ready in ``queue``; None if it does not exist (yet) or the broker is away."""
        try:
            result = self._channel.queue_declare(queue, passive=True)
            return int(result.method.message_count)
        except pika.exceptions.ChannelClosedByBroker:
            self._channel = self._conn.channel()
            return None
        except pika.exceptions.AMQPConnectionError:
            self._conn = connect()
            self._channel = self._conn.channel()
            return None

    def consumers(self, queue: str) -> int:
        """Consumers of ``queue``; 0 if it does not exist (yet)."""
        try:
            return int(self._channel.queue_declare(queue, passive=True).method.consumer_count)
        except pika.exceptions.ChannelClosedByBroker:
            self._channel = self._conn.channel()
            return 0

    def close(self) -> None:
        try:
            self._conn.close()
        except pika.exceptions.AMQPError:
            pass


class RestartSentinel:
    """An idle connection held for the whole run: if it is gone at the end, the broker restarted.

    Other test suites on the same machine may restart RabbitMQ; a run that spans a
    restart has figures that mean nothing, and the table says so.
    """

    def __init__(self) -> None:
        params = pika.URLParameters(AMQP_URL)
        params.heartbeat = 0  # idle on purpose: no heartbeats to miss
        self._conn = pika.BlockingConnection(params)

    def broker_restarted(self) -> bool:
        try:
            self._conn.process_data_events(0)
            self._conn.channel().close()
        except pika.exceptions.AMQPError:
            return True
        with contextlib.suppress(pika.exceptions.AMQPError):
            self._conn.close()
        return False


def server_version() -> str:
    conn = connect()
    try:
        version = conn._impl.server_properties.get("version", b"?")  # noqa: SLF001 - no public accessor
    finally:
        conn.close()
    return version.decode() if isinstance(version, bytes) else str(version)


def _names(kind: str) -> list[str]:
    if shutil.which("rabbitmqctl") is None:
        return []
    out = subprocess.run(["rabbitmqctl", "-q", f"list_{kind}", "name", "--no-table-headers"],
                         capture_output=True, text=True, timeout=60)
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def delete_namespace(prefix: str, known_queues: tuple[str, ...] = ()) -> int:
    """Delete every queue and exchange whose name starts with ``prefix``; return how many queues."""
    queues = {q for q in _names("queues") if q.startswith(prefix)} | set(known_queues)
    exchanges = [x for x in _names("exchanges") if x.startswith(prefix)]
    conn = connect()
    deleted = 0
    try:
        for name in sorted(queues):
            channel = conn.channel()
            try:
                channel.queue_delete(name)
                channel.close()
                deleted += 1
            except pika.exceptions.ChannelClosedByBroker:
                pass
        for name in exchanges:
            channel = conn.channel()
            try:
                channel.exchange_delete(name)
                channel.close()
            except pika.exceptions.ChannelClosedByBroker:
                pass
    finally:
        conn.close()
    return deleted
