"""Broker topology: every exchange and queue name comes from the helpers here.

All names start with the namespace (``CORRAL_NAMESPACE``), so several farms or
test runs share one broker without seeing each other's messages.
"""
from __future__ import annotations

import re

from kombu import Exchange, Queue

MAX_PRIORITY = 9  # RabbitMQ recommends at most 10 priority levels
HEARTBEAT_QUEUE_MAX = 100_000
# An agent's control queue is made by the dispatcher when the agent says hello (agents may not
# declare anything) and outlives short reconnects; unused this long, the broker deletes it (a
# returning agent's hello makes it again).
AGENT_QUEUE_EXPIRES_MS = 300_000
AGENT_QUEUE_MAX = 10_000
AGENT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,199}$")
# Routing-key families on the events exchange: what agents publish, and everything else
# (gateway -> dispatcher commands: task.*, worker.*, ...), which must carry the command signature.
AGENT_FAMILIES = ("agent", "chunk")

# Routing keys (message kinds) the dispatcher's state queue receives.
DISPATCHER_BINDINGS = ("task.#", "worker.#", "chunk.#", "agent.hello", "agent.goodbye")


def events_exchange_name(ns: str) -> str:
    return f"{ns}.events"


def chunks_exchange_name(ns: str) -> str:
    return f"{ns}.chunks"


def control_exchange_name(ns: str) -> str:
    return f"{ns}.control"


def dead_exchange_name(ns: str) -> str:
    return f"{ns}.dead"


def changes_exchange_name(ns: str) -> str:
    """The dispatcher's change events (``farm.changed``) for the gateways: transient, never durable."""
    return f"{ns}.changes"


def change_listener_queue_name(ns: str, listener: str) -> str:
    return f"{ns}.changes.{listener}"


CHANGES_KEY = "farm.changed"


def dispatcher_queue_name(ns: str) -> str:
    return f"{ns}.dispatcher"


def heartbeat_queue_name(ns: str) -> str:
    return f"{ns}.heartbeats"


def dead_queue_name(ns: str) -> str:
    return f"{ns}.dead"


def chunk_routing_key(pool: str, command: str) -> str:
    return f"{pool}.{command}"


def chunk_queue_name(ns: str, pool: str, command: str) -> str:
    return f"{ns}.chunks.{pool}.{command}"


def agent_queue_name(ns: str, agent: str) -> str:
    return f"{ns}.agent.{agent}"


def agent_routing_key(agent: str) -> str:
    return f"agent.{agent}"


BROADCAST_KEY = "all"


def valid_agent_name(name: str) -> bool:
    return bool(AGENT_NAME_RE.match(name))


def family(kind: str) -> str:
    """``task.cancel`` -> ``task``: the part of a routing key that says who may publish it."""
    return kind.split(".", 1)[0]


def broker_priority(task_priority: int) -> int:
    """Map a task priority (0-100) onto the broker's 0-9 levels."""
    return max(0, min(MAX_PRIORITY, task_priority // 11))


def durable_queue_arguments(queue_type: str) -> dict[str, str]:
    """Arguments every durable queue is declared with: the queue type, when not the broker's default."""
    return {"x-queue-type": queue_type} if queue_type != "classic" else {}


class Topology:
    """The kombu entities of one namespace.

    ``queue_type`` "quorum" makes the durable queues (dispatcher, heartbeats, dead
    letters, chunks) replicated quorum queues for a RabbitMQ cluster. Quorum queues
    in RabbitMQ 3.10 have no message priorities, so chunk queues then go without
    ``x-max-priority``: bounded release keeps priorities right (docs/architecture.md).
    """

    def __init__(self, namespace: str, queue_type: str = "classic") -> None:
        ns = self.namespace = namespace
        self.queue_type = queue_type
        self._durable_args = durable_queue_arguments(queue_type)
        self.events = Exchange(events_exchange_name(ns), type="topic", durable=True)
        self.chunks = Exchange(chunks_exchange_name(ns), type="direct", durable=True)
        self.control = Exchange(control_exchange_name(ns), type="topic", durable=True)
        self.dead = Exchange(dead_exchange_name(ns), type="fanout", durable=True)
        self.changes = Exchange(changes_exchange_name(ns), type="topic", durable=False)

    def dispatcher_queue(self) -> Queue:
        return Queue(
            dispatcher_queue_name(self.namespace),
            exchange=self.events,
            bindings=[_binding(self.events, key) for key in DISPATCHER_BINDINGS],
            durable=True,
            queue_arguments=dict(self._durable_args),
        )

    def heartbeat_queue(self) -> Queue:
        # Bounded: a backlog of heartbeats only ever needs its newest entries.
        return Queue(
            heartbeat_queue_name(self.namespace),
            exchange=self.events,
            routing_key="agent.heartbeat",
            durable=True,
            queue_arguments={"x-max-length": HEARTBEAT_QUEUE_MAX, **self._durable_args},
        )

    def dead_queue(self) -> Queue:
        return Queue(dead_queue_name(self.namespace), exchange=self.dead, routing_key="#", durable=True,
                     queue_arguments=dict(self._durable_args))

    def chunk_queue(self, pool: str, command: str) -> Queue:
        return Queue(
            chunk_queue_name(self.namespace, pool, command),
            exchange=self.chunks,
            routing_key=chunk_routing_key(pool, command),
            durable=True,
            max_priority=MAX_PRIORITY if self.queue_type == "classic" else None,
            queue_arguments=dict(self._durable_args),
        )

    def change_listener_queue(self, listener: str) -> Queue:
        # One per gateway process: it lives as long as the process's connection does.
        return Queue(change_listener_queue_name(self.namespace, listener), exchange=self.changes,
                     routing_key="#", durable=False, exclusive=True, auto_delete=True,
                     queue_arguments={"x-max-length": 10_000})

    def agent_queue(self, agent: str) -> Queue:
        # Control messages only matter to a live agent. Always a classic queue, made by the
        # dispatcher when the agent says hello (agents declare nothing): it outlives short
        # reconnects and expires when unused; on another node after a failover, the agent's
        # hello there makes it again.
        return Queue(
            agent_queue_name(self.namespace, agent),
            exchange=self.control,
            bindings=[
                _binding(self.control, agent_routing_key(agent)),
                _binding(self.control, BROADCAST_KEY),
            ],
            durable=False,
            queue_arguments={"x-expires": AGENT_QUEUE_EXPIRES_MS, "x-max-length": AGENT_QUEUE_MAX},
        )


def _binding(exchange: Exchange, key: str):  # noqa: ANN202 - kombu type
    from kombu import binding

    return binding(exchange, routing_key=key)
