"""The one way Corral processes talk to the broker (kombu).

``Bus`` opens connections, declares the topology a publisher needs, publishes
versioned messages with publisher confirms and bounded retries, and turns a
message that fails to decode into a dead letter that carries its reason.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from kombu import Connection, Producer
from kombu.exceptions import KombuError, OperationalError

from common import messages
from common.config import Config
from common.errors import BrokerUnavailable, MessageError
from common.signing import COMMAND_SIG_HEADER, Signer, sign
from common.topology import AGENT_FAMILIES, Topology, broker_priority, family

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/json"
# Headers a dead letter gets (docs/protocol.md); a replay drops them again.
DEAD_HEADERS = ("x-corral-dead-id", "x-corral-reason", "x-corral-routing-key", "x-corral-queue",
                "x-corral-dead-at")
# A confirm not back by then means a dead or partitioned connection (publisher connections
# carry no AMQP heartbeats): the publish is retried on a new connection.
CONFIRM_TIMEOUT_S = 5.0
# Errors that mean "the broker is not there right now" rather than a bug.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (OSError, KombuError, OperationalError)
# Errors after which a publish is tried again (on a fresh connection, maybe another node).
PUBLISH_RETRY_ERRORS: tuple[type[BaseException], ...] = CONNECTION_ERRORS
try:  # py-amqp's own errors (channel closed, connection forced, ...)
    import amqp.exceptions

    CONNECTION_ERRORS += (amqp.exceptions.AMQPError,)
    # A nack: the broker did not take the message (a quorum queue electing a new leader
    # after a node loss does this), so it is sent again; every consumer is idempotent.
    PUBLISH_RETRY_ERRORS = CONNECTION_ERRORS + (amqp.exceptions.MessageNacked,)
except ImportError:  # pragma: no cover - amqp is a kombu dependency
    pass


def is_not_found(exc: BaseException) -> bool:
    """A declare-passive of something that does not exist (RabbitMQ 404, or kombu's memory transport)."""
    import amqp.exceptions

    return isinstance(exc, amqp.exceptions.NotFound) or "NOT_FOUND" in str(exc)


class Bus:
    """Connection factory and topology for one namespace."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.topology = Topology(config.namespace, config.queue_type)
        # Set on an agent's bus: every event it publishes is signed (common/signing.py).
        self.signer: Signer | None = None
        # Set on the gateway's bus: every command (task.*, worker.*, ...) it publishes is signed.
        self.command_key: bytes | None = None
        # Set on an authenticated agent's bus: it declares nothing, only checks that the
        # topology the dispatcher made is there (agents have no configure permission).
        self.passive = False
        self.urls = config.broker_urls
        # The address that answered last: new connections try it first, so after a
        # node is lost every thread goes straight to a survivor.
        self._preferred = 0

    def connection(self, heartbeat: float = 0) -> Connection:
        """A new, not yet connected, kombu connection over every broker address.

        Its failover list starts at the address that answered last.
        """
        options: dict[str, Any] = {}
        if self.config.embedded_broker:
            options["polling_interval"] = 0.005
        else:
            options["confirm_publish"] = True
        first = self._preferred
        return Connection(
            ";".join(self.urls[first:] + self.urls[:first]),
            heartbeat=heartbeat,
            transport_options=options,
            connect_timeout=5,
            ssl=tls_options(self.config),
            failover_strategy="round-robin",
        )

    def connect(self, heartbeat: float = 0) -> Connection:
        """A connected connection: each broker address is tried once, in turn.

        Raises one of CONNECTION_ERRORS when none answers; callers retry with backoff.
        """
        first, failed = self._preferred, []
        conn = self.connection(heartbeat)
        try:
            # max_retries counts retries after the first attempt: one attempt per address.
            # Each failure moves kombu on to the next address (round-robin).
            conn.ensure_connection(max_retries=len(self.urls) - 1, interval_start=0,
                                   errback=lambda exc, _interval: failed.append(exc))
        except BaseException:
            conn.release()
            raise
        self._preferred = (first + len(failed)) % len(self.urls)
        if failed:
            log.info("%d broker address(es) did not answer (%s); connected to %s",
                     len(failed), failed[-1], conn.as_uri(include_password=False))
        return conn

    def declare_core(self, channel: Any) -> None:
        """Declare exchanges plus the dispatcher's and dead-letter queues.

        Every publisher of events declares the dispatcher's queues, so a message
        sent before the dispatcher ever ran waits for it instead of vanishing.
        """
        topo = self.topology
        for exchange in (topo.events, topo.chunks, topo.control, topo.dead):
            exchange(channel).declare(passive=self.passive)
        for queue in (topo.dispatcher_queue(), topo.heartbeat_queue(), topo.dead_queue()):
            if self.passive:
                queue(channel).queue_declare(passive=True)
                continue
            try:
                queue(channel).declare()
            except CONNECTION_ERRORS as exc:
                if "inequivalent arg" in str(exc):
                    log.error("queue %s exists with other arguments than CORRAL_QUEUE_TYPE=%s gives it (%s); "
                              "every process of a namespace needs the same queue type (deploy/README.md)",
                              queue.name, topo.queue_type, exc)
                raise

    def publisher(self) -> Publisher:
        return Publisher(self)


def tls_options(config: Config) -> dict[str, Any] | bool:
    """kombu's ``ssl`` for an ``amqps://`` URL: verify the broker's certificate and host name."""
    if not config.broker_url.startswith("amqps://"):
        return False
    import ssl
    from urllib.parse import urlparse

    # The name the certificate must match. kombu would use the host of the URL in use (None) but
    # turns "localhost" into 127.0.0.1 first; give the URL's own name unless there are alternates.
    url = config.broker_url
    host = None if ";" in url else urlparse(url).hostname
    options: dict[str, Any] = {"cert_reqs": ssl.CERT_REQUIRED, "server_hostname": host}
    if config.broker_ca_file:
        options["ca_certs"] = config.broker_ca_file
    if config.broker_cert_file:
        options["certfile"] = config.broker_cert_file
        options["keyfile"] = config.broker_key_file or None
    return options


class Publisher:
    """A thread-safe publisher over its own connection.

    Every publish waits for the broker's confirm (on RabbitMQ) and retries with
    backoff for up to ``give_up_s`` seconds, then raises BrokerUnavailable.
    """

    def __init__(self, bus: Bus, give_up_s: float = 10.0) -> None:
        self.bus = bus
        self.topology = bus.topology
        self.give_up_s = give_up_s
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._producer: Producer | None = None
        self._declared_queues: set[str] = set()
        self._had_connection = False

    def _ensure(self) -> Producer:
        if self._producer is None:
            conn = self.bus.connect()
            channel = conn.channel()
            self.bus.declare_core(channel)
            if self._had_connection:
                log.info("publisher reconnected to %s", conn.as_uri(include_password=False))
            self._had_connection = True
            self._conn, self._producer = conn, Producer(channel)
            self._declared_queues.clear()
        return self._producer

    def _reset(self) -> None:
        conn, self._conn, self._producer = self._conn, None, None
        if conn is not None:
            try:
                conn.release()
            except Exception:  # noqa: BLE001 - the connection is already broken
                pass

    def publish(
        self,
        message: messages.Message,
        exchange: Any,
        routing_key: str,
        priority: int = 0,
        persistent: bool = True,
        declare: Any = None,
        headers: dict[str, Any] | None = None,
        expiration_s: float | None = None,
    ) -> None:
        body = messages.encode(message)
        signer, command_key = self.bus.signer, self.bus.command_key
        if family(message.kind) in AGENT_FAMILIES:
            if signer is not None:
                headers = {**(headers or {}), **signer.headers(message.kind, body)}
        elif command_key is not None:
            headers = {**(headers or {}), COMMAND_SIG_HEADER: sign(command_key, body)}
        self.publish_raw(body, exchange, routing_key, priority, persistent, declare, headers, expiration_s)

    def publish_raw(
        self,
        body: bytes,
        exchange: Any,
        routing_key: str,
        priority: int = 0,
        persistent: bool = True,
        declare: Any = None,
        headers: dict[str, Any] | None = None,
        expiration_s: float | None = None,
    ) -> None:
        deadline = time.monotonic() + self.give_up_s
        extra = {} if expiration_s is None else {"expiration": expiration_s}
        delay = 0.1
        with self._lock:
            while True:
                try:
                    producer = self._ensure()
                    if declare is not None and declare.name not in self._declared_queues:
                        declare(producer.channel).declare()
                        self._declared_queues.add(declare.name)
                    producer.publish(
                        body,
                        exchange=exchange,
                        routing_key=routing_key,
                        priority=priority,
                        delivery_mode=2 if persistent else 1,
                        content_type=CONTENT_TYPE,
                        content_encoding="utf-8",
                        headers=headers or {},
                        **extra,
                        confirm_timeout=None if self.bus.config.embedded_broker else CONFIRM_TIMEOUT_S,
                    )
                    return
                except PUBLISH_RETRY_ERRORS as exc:
                    self._reset()
                    if time.monotonic() + delay > deadline:
                        raise BrokerUnavailable(f"cannot publish to the broker: {exc}") from exc
                    log.warning("publish failed (%s); retrying in %.1fs", str(exc) or type(exc).__name__,
                                delay)
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)

    # -- the message families ------------------------------------------------

    def event(self, message: messages.Message, persistent: bool = True) -> None:
        """Publish to the events exchange with the message kind as routing key."""
        self.publish(message, self.topology.events, message.kind, persistent=persistent)

    def chunk(self, message: messages.ChunkAssign, pool: str, task_priority: int) -> None:
        """A chunk message expires unread after ``release_timeout_s`` (the dispatcher then releases
        the chunk again), so a lease that has been given up on can never reach an agent late."""
        queue = self.topology.chunk_queue(pool, message.command)
        self.publish(
            message,
            self.topology.chunks,
            queue.routing_key,
            priority=broker_priority(task_priority),
            declare=queue,
            expiration_s=self.bus.config.release_timeout_s,
        )

    def forget_declared(self) -> None:
        """Declare chunk queues again before the next publish to them (one may have been deleted)."""
        with self._lock:
            self._declared_queues.clear()

    def control(self, message: messages.Message, agent: str | None = None) -> None:
        """To one agent, or to all agents when ``agent`` is None."""
        from common.topology import BROADCAST_KEY, agent_routing_key

        key = agent_routing_key(agent) if agent else BROADCAST_KEY
        self.publish(message, self.topology.control, key, persistent=False)

    def declare(self, queue: Any) -> None:
        """Declare (or re-declare: it may have expired) a queue and its bindings."""
        deadline = time.monotonic() + self.give_up_s
        with self._lock:
            while True:
                try:
                    queue(self._ensure().channel).declare()
                    return
                except CONNECTION_ERRORS as exc:
                    self._reset()
                    if time.monotonic() + 0.2 > deadline:
                        raise BrokerUnavailable(f"cannot declare {queue.name}: {exc}") from exc
                    time.sleep(0.2)

    def dead_letter(self, body: bytes, reason: str, routing_key: str, queue: str,
                    original_headers: dict[str, Any] | None = None) -> None:
        """Republish ``body`` unchanged to the dead exchange, keeping its original headers.

        Keeping them (``x-corral-agent``, ``x-corral-sig``) is what lets
        ``corral dlq replay`` resend a signed agent message that still checks out.
        """
        kept = {k: v for k, v in (original_headers or {}).items() if k not in DEAD_HEADERS}
        headers = {**kept, "x-corral-dead-id": uuid.uuid4().hex[:12], "x-corral-reason": reason[:500],
                   "x-corral-routing-key": routing_key, "x-corral-queue": queue,
                   "x-corral-dead-at": time.time()}
        self.publish_raw(body, self.topology.dead, routing_key or "dead", headers=headers)

    def dead_letter_delivery(self, message: Any, reason: str, queue: str) -> None:
        """Dead-letter a received kombu message consumed from ``queue``: body, routing key, headers."""
        self.dead_letter(body_bytes(message), reason, message.delivery_info.get("routing_key", ""),
                         queue, message.headers)

    def close(self) -> None:
        with self._lock:
            self._reset()


def body_bytes(message: Any) -> bytes:
    """A received kombu message's body as the bytes that were published (some transports hand a str)."""
    body = message.body
    return body if isinstance(body, bytes) else str(body).encode()


def decode_or_dead_letter(publisher: Publisher, message: Any, queue: str) -> messages.Message | None:
    """Decode a received kombu message; dead-letter it with its reason on failure.

    Returns None after acking a message that was dead-lettered, so the caller just
    moves on: no consumer ever dies of bad input.
    """
    raw = body_bytes(message)
    try:
        return messages.decode(raw)
    except MessageError as exc:
        log.warning("dead-lettering a message from %s: %s", queue, exc)
        publisher.dead_letter_delivery(message, str(exc), queue)
        message.ack()
        return None
