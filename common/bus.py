"""The one way Corral processes talk to the broker (kombu).

``Bus`` opens connections, declares the topology a publisher needs, publishes
versioned messages with publisher confirms and bounded retries, and turns a
message that fails to decode into a dead letter that carries its reason.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Iterator
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
    import amqp.transport

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
        read_ahead(conn)
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


@dataclasses.dataclass(frozen=True)
class Outgoing:
    """One message ready to publish: its wire body and where it goes."""

    body: bytes
    exchange: Any
    routing_key: str
    priority: int = 0
    persistent: bool = True
    declare: Any = None  # a queue to declare before the first publish to it
    headers: dict[str, Any] | None = None
    expiration_s: float | None = None  # unread this long, the broker drops it (a chunk message)

    @property
    def delivery_mode(self) -> int:
        return 2 if self.persistent else 1

    def properties(self) -> dict[str, Any]:
        """The AMQP properties beside the body's (the per-message TTL in milliseconds, as AMQP wants)."""
        found: dict[str, Any] = {"delivery_mode": self.delivery_mode}
        if self.expiration_s is not None:
            found["expiration"] = str(int(self.expiration_s * 1000))
        return found


def _confirms_on(channel: Any) -> bool:
    """True if ``channel`` is a py-amqp channel publishing with confirms (not memory://)."""
    connection = getattr(channel, "connection", None)
    return bool(getattr(connection, "confirm_publish", False)) and hasattr(channel, "_basic_publish")


# A confirm still missing this long after a later message was confirmed is taken as lost (RabbitMQ
# 3.10 was seen to confirm tag N+1 and never N): N is published again.
CONFIRM_GAP_S = 0.05


class _Confirms:
    """The broker's confirms for one batch, by delivery tag (acks may be cumulative or out of order)."""

    def __init__(self) -> None:
        self.pending: dict[int, Outgoing] = {}
        self.highest = 0
        self.refused: list[int] = []

    def on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self.highest = max(self.highest, delivery_tag)
        if multiple:
            for tag in [t for t in self.pending if t <= delivery_tag]:
                del self.pending[tag]
        else:
            self.pending.pop(delivery_tag, None)

    def on_nack(self, delivery_tag: int, multiple: bool) -> None:
        if multiple or delivery_tag in self.pending:
            self.refused.append(delivery_tag)

    def overtaken(self) -> list[int]:
        """Tags still unconfirmed although a later one was confirmed."""
        return sorted(t for t in self.pending if t < self.highest)


READ_AHEAD_BYTES = 8192


def read_ahead(conn: Connection) -> None:
    """Let py-amqp read what the broker has sent in one system call, not one per frame part.

    py-amqp asks the socket for exactly the bytes it needs next (a frame's
    header, its payload, its end byte): nine ``recv`` calls per delivered
    message, half of the dispatcher's time at 10,000 heartbeating agents. Its
    reader keeps whatever a ``recv`` returns beyond the request for the next
    read, so asking for up to ``READ_AHEAD_BYTES`` each time changes only how
    many system calls it takes. Plain TCP only (TLS reads whole records anyway).
    """
    transport = getattr(getattr(conn, "connection", None), "transport", None)
    sock = getattr(transport, "sock", None)
    if isinstance(transport, amqp.transport.TCPTransport) and sock is not None:
        recv = sock.recv
        transport._quick_recv = lambda n: recv(max(n, READ_AHEAD_BYTES))


@contextlib.contextmanager
def coalesced_writes(connection: Any) -> Iterator[None]:
    """Send the frames of every publish made inside the block with one system call at its end.

    py-amqp writes each message with its own ``sendall``; a dispatcher releasing
    a burst of chunks spent a quarter of its time in those writes. The frames
    are copied (py-amqp hands a view of a buffer it reuses) and written in
    order, so what reaches the broker is byte for byte the same. A transport
    without a plain socket writer (memory://) is left alone.
    """
    transport = getattr(connection, "transport", None)
    write = getattr(transport, "_write", None)
    if write is None:
        yield
        return
    own = "_write" in vars(transport)  # plain TCP sets it per socket; TLS has it as a method
    frames: list[bytes] = []
    transport._write = lambda data: frames.append(bytes(data))
    try:
        yield
    finally:
        if own:
            transport._write = write
        else:
            del transport._write
        if frames:
            write(b"".join(frames))


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


@dataclasses.dataclass
class _InFlight:
    """A message sent with ``send_all`` whose confirm has not come back yet."""

    item: Outgoing
    token: Any  # handed back by ``settle`` if the broker refuses or loses it
    sent_at: float


class Publisher:
    """A thread-safe publisher over its own connection.

    ``publish``/``publish_all`` wait for the broker's confirm (on RabbitMQ) and
    retry with backoff for up to ``give_up_s`` seconds, then raise
    BrokerUnavailable. ``send_all`` does not wait: its confirms are collected by
    ``settle``, which hands back the token of every message the broker refused
    or that was lost with its connection, so the caller can undo what it
    recorded for it (the dispatcher withdraws the chunk's lease).
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
        self._sequence = 0  # messages published on the current channel: the confirms' delivery tags
        self._in_flight: dict[int, _InFlight] = {}  # by delivery tag, sent by send_all
        self._acked_up_to = 0  # the highest delivery tag the broker confirmed on this channel
        self._lost: list[Any] = []  # tokens of refused or lost send_all messages, for settle
        self._chunk_queues: dict[tuple[str, str], Any] = {}

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
            self._sequence = self._acked_up_to = 0
            if _confirms_on(channel):
                channel._confirm_selected = True
                channel.confirm_select()
                channel.events["basic_ack"].add(self._on_ack)
                channel.events["basic_nack"].add(self._on_nack)
        return self._producer

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._acked_up_to = max(self._acked_up_to, delivery_tag)
        if multiple:
            for tag in [t for t in self._in_flight if t <= delivery_tag]:
                del self._in_flight[tag]
        else:
            self._in_flight.pop(delivery_tag, None)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        tags = [t for t in self._in_flight if t <= delivery_tag] if multiple else [delivery_tag]
        for tag in tags:
            refused = self._in_flight.pop(tag, None)
            if refused is not None:
                log.warning("the broker refused a message to %s", refused.item.routing_key)
                self._lost.append(refused.token)

    def _reset(self) -> None:
        # Whatever was sent on this connection and not confirmed may never have arrived.
        self._lost += [flight.token for flight in self._in_flight.values()]
        self._in_flight.clear()
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
        self.publish_all([Outgoing(body, exchange, routing_key, priority, persistent, declare, headers,
                                   expiration_s)])

    def prepare(self, message: messages.Message, exchange: Any, routing_key: str, priority: int = 0,
                persistent: bool = True, declare: Any = None, expiration_s: float | None = None) -> Outgoing:
        """A message encoded (and signed, on an agent) for ``publish_all``."""
        body = messages.encode(message)
        signer = self.bus.signer
        headers = signer.headers(message.kind, body) if signer is not None else None
        return Outgoing(body, exchange, routing_key, priority, persistent, declare, headers, expiration_s)

    def publish_all(self, batch: list[Outgoing]) -> None:
        """Publish ``batch`` in order; return once the broker confirmed every message of it.

        The confirms are awaited together, so a batch costs one round trip to the
        broker, not one per message. A failure retries the whole batch (at least
        once: a message may then arrive twice, which every consumer tolerates).
        """
        deadline = time.monotonic() + self.give_up_s
        delay = 0.1
        with self._lock:
            while True:
                try:
                    self._publish_confirmed(self._ensure(), batch)
                    return
                except PUBLISH_RETRY_ERRORS as exc:
                    self._reset()
                    if time.monotonic() + delay > deadline:
                        raise BrokerUnavailable(f"cannot publish to the broker: {exc}") from exc
                    log.warning("publish failed (%s); retrying in %.1fs", str(exc) or type(exc).__name__,
                                delay)
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)

    def _declare_for(self, batch: list[Outgoing], channel: Any) -> None:
        for item in batch:
            if item.declare is not None and item.declare.name not in self._declared_queues:
                item.declare(channel).declare()
                self._declared_queues.add(item.declare.name)

    def _publish_plain(self, producer: Producer, batch: list[Outgoing]) -> None:
        """Publish through kombu on a transport without confirms (memory://)."""
        for item in batch:
            extra = {} if item.expiration_s is None else {"expiration": item.expiration_s}
            producer.publish(item.body, exchange=item.exchange, routing_key=item.routing_key,
                             priority=item.priority, delivery_mode=item.delivery_mode,
                             content_type=CONTENT_TYPE, content_encoding="utf-8",
                             headers=item.headers or {}, **extra)
            self._sequence += 1

    def _publish_confirmed(self, producer: Producer, batch: list[Outgoing]) -> None:
        channel = producer.channel
        self._declare_for(batch, channel)
        if not _confirms_on(channel):
            self._publish_plain(producer, batch)
            return
        confirms = _Confirms()
        channel.events["basic_ack"].add(confirms.on_ack)
        channel.events["basic_nack"].add(confirms.on_nack)
        try:
            for item in batch:
                self._send(channel, item, confirms)
            deadline = time.monotonic() + CONFIRM_TIMEOUT_S
            while confirms.pending and not confirms.refused:
                if time.monotonic() > deadline:
                    # A dead or partitioned connection: publish_all retries on a new one.
                    raise TimeoutError(f"no confirm from the broker in {CONFIRM_TIMEOUT_S:g}s")
                try:
                    channel.connection.drain_events(timeout=CONFIRM_GAP_S)
                except TimeoutError:
                    for tag in confirms.overtaken():
                        log.debug("no confirm for message %d of a batch; publishing it again", tag)
                        self._send(channel, confirms.pending.pop(tag), confirms)
        finally:
            channel.events["basic_ack"].discard(confirms.on_ack)
            channel.events["basic_nack"].discard(confirms.on_nack)
        if confirms.refused:
            # Sent again by publish_all, like a nack of a single publish.
            raise amqp.exceptions.MessageNacked(f"the broker refused message {confirms.refused[0]}")

    def _send(self, channel: Any, item: Outgoing, confirms: _Confirms) -> None:
        """Publish without waiting; the confirm for it is expected under the next delivery tag."""
        confirms.pending[self._sequence + 1] = item
        self._basic_publish(channel, item)

    def _basic_publish(self, channel: Any, item: Outgoing) -> None:
        message = channel.prepare_message(item.body, item.priority, CONTENT_TYPE, "utf-8",
                                          item.headers or {}, item.properties())
        channel._basic_publish(message, exchange=getattr(item.exchange, "name", item.exchange),
                               routing_key=item.routing_key)
        self._sequence += 1

    # -- sending without waiting ----------------------------------------------

    def send_all(self, batch: list[tuple[Outgoing, Any]]) -> None:
        """Publish ``batch`` in order without waiting for the broker's confirms.

        Each message comes with a token; ``settle`` hands the token back if the
        broker refuses the message or its connection is lost before the
        confirm. A connection that fails here is tried once more afresh; if that
        fails too, every token of the batch is lost and BrokerUnavailable is
        raised (the caller reconnects with backoff and settles later).
        """
        if not batch:
            return
        ours = {token for _, token in batch}
        with self._lock:
            for attempt in (1, 2):
                try:
                    self._send_nowait(self._ensure(), batch)
                    return
                except CONNECTION_ERRORS as exc:
                    self._reset()
                    # Whatever of the batch went out is lost with the connection: each token once.
                    self._lost = [token for token in self._lost if token not in ours]
                    if attempt == 2:
                        self._lost += [token for _, token in batch]
                        raise BrokerUnavailable(f"cannot publish to the broker: {exc}") from exc

    def _send_nowait(self, producer: Producer, batch: list[tuple[Outgoing, Any]]) -> None:
        channel = producer.channel
        self._declare_for([item for item, _ in batch], channel)
        if not _confirms_on(channel):  # memory://: published when this returns
            self._publish_plain(producer, [item for item, _ in batch])
            return
        now = time.monotonic()
        with coalesced_writes(channel.connection):
            for item, token in batch:
                self._in_flight[self._sequence + 1] = _InFlight(item, token, now)
                self._basic_publish(channel, item)

    def settle(self) -> list[Any]:
        """Collect the confirms that have arrived; return (and forget) the tokens of lost messages.

        A message still unconfirmed after a later one was confirmed is sent
        again (RabbitMQ 3.10 was seen to skip a confirm); one unconfirmed for
        CONFIRM_TIMEOUT_S means a dead connection, so everything in flight on it
        is lost.
        """
        with self._lock:
            if self._in_flight and self._conn is not None:
                try:
                    self._read_confirms()
                except CONNECTION_ERRORS as exc:
                    log.warning("publisher connection lost with %d messages unconfirmed (%s)",
                                len(self._in_flight), exc)
                    self._reset()
            lost, self._lost = self._lost, []
            return lost

    def _read_confirms(self) -> None:
        assert self._conn is not None and self._producer is not None
        while True:
            try:
                self._conn.drain_events(timeout=0)
            except TimeoutError:
                break
        now = time.monotonic()
        overtaken = [t for t, f in self._in_flight.items()
                     if t < self._acked_up_to and now - f.sent_at > CONFIRM_GAP_S]
        for tag in overtaken:
            flight = self._in_flight.pop(tag, None)
            if flight is None:  # confirmed while an earlier one of these was published again
                continue
            log.debug("no confirm for message %d; publishing it again", tag)
            self._in_flight[self._sequence + 1] = _InFlight(flight.item, flight.token, now)
            self._basic_publish(self._producer.channel, flight.item)
        if any(now - f.sent_at > CONFIRM_TIMEOUT_S for f in self._in_flight.values()):
            raise TimeoutError(f"no confirm from the broker in {CONFIRM_TIMEOUT_S:g}s")

    @property
    def unconfirmed(self) -> int:
        """Messages sent with ``send_all`` whose confirm has not been collected yet."""
        return len(self._in_flight)

    # -- the message families ------------------------------------------------

    def event(self, message: messages.Message, persistent: bool = True) -> None:
        """Publish to the events exchange with the message kind as routing key."""
        self.publish(message, self.topology.events, message.kind, persistent=persistent)

    def events(self, batch: list[messages.Message]) -> None:
        """Several events, in order, confirmed together."""
        self.publish_all([self.prepare(m, self.topology.events, m.kind) for m in batch])

    def chunk(self, message: messages.ChunkAssign, pool: str, task_priority: int) -> None:
        """One chunk assignment to its (pool, command) queue, confirmed (the dispatcher uses send_all)."""
        self.publish_all([self.chunk_message(message, pool, task_priority)])

    def chunk_message(self, message: messages.ChunkAssign, pool: str, task_priority: int) -> Outgoing:
        """A chunk assignment ready for its (pool, command) queue.

        A chunk message expires unread after ``release_timeout_s`` (the dispatcher then releases
        the chunk again), so a lease that has been given up on can never reach an agent late.
        """
        key = (pool, message.command)
        queue = self._chunk_queues.get(key)
        if queue is None:  # an unbound kombu Queue: one per (pool, command) will do
            queue = self._chunk_queues[key] = self.topology.chunk_queue(pool, message.command)
        return self.prepare(message, self.topology.chunks, queue.routing_key, broker_priority(task_priority),
                            declare=queue, expiration_s=self.bus.config.release_timeout_s)

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
