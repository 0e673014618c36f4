"""Who may say what to the dispatcher (common/signing.py, docs/security.md).

Every message on the events exchange belongs to a routing-key family. Agent
families (``agent.*``, ``chunk.*``) must be signed by the agent they name: a
hello with the node's own enrolled key (or, as a bootstrap, the farm secret's
hello key), fresh and newer than that agent's last one; everything after it with
the key the welcome issued to that agent's current boot. Every other family
(``task.*``, ``worker.*`` and whatever is added later) is a command and must
carry the command key's signature, which agents never hold. The routing key
must be the message's kind, so a broker's per-family permissions mean what
they say. Refused messages are dead-lettered by the caller and change nothing.
"""
from __future__ import annotations

import logging
from typing import Any

from common import messages, signing, topology
from common.bus import Publisher
from common.config import Config
from common.models import OFFLINE, ONLINE, Enrollment, Worker
from dispatcher.context import Context
from dispatcher.leases import requeue_lost

log = logging.getLogger("dispatcher.identity")

AGENT_KINDS = (messages.AgentHello, messages.AgentHeartbeat, messages.AgentGoodbye,
               messages.ChunkStarted, messages.ChunkProgress, messages.ChunkFinished)
MAX_HELLO_POOLS, MAX_HELLO_COMMANDS = 32, 64
OWNERS_CACHED = 20_000  # lease -> the agent running that attempt (it never changes)


def startup_refusal(config: Config) -> str | None:
    """Why a dispatcher on a real broker must not start: no agent could prove who it is."""
    if config.embedded_broker or config.insecure_agents or config.agent_secret:
        return None
    if Enrollment.select().where(Enrollment.revoked_at.is_null()).exists():
        return None
    return ("refusing to start: no agent can authenticate (none is enrolled and CORRAL_AGENT_SECRET is "
            "not set); enroll nodes with `corral agent enroll NAME`, or pass --insecure-agents to accept "
            "unauthenticated agents on a trusted network")


class Verifier:
    """Knows each agent's current key and the command key; says why a message must be refused."""

    def __init__(self, config: Config, command_key: bytes | None = None) -> None:
        self.config = config
        self.secret = config.agent_secret
        self.command_key = command_key
        self.keys: dict[str, bytes] = {}
        if config.insecure_agents:
            log.warning("--insecure-agents: agent messages are NOT authenticated; any broker user can "
                        "speak for any agent")

    def remember(self, agent: str, key: bytes) -> None:
        self.keys[agent] = key

    def forget(self, agent: str) -> None:
        self.keys.pop(agent, None)

    def refusal(self, msg: messages.Message, body: bytes, headers: dict[str, Any], now: float,
                routing_key: str = "") -> str | None:
        """Why the message must be refused, or None when it may be applied."""
        if routing_key and routing_key != msg.kind:
            return f"routing key {routing_key!r} does not match the message kind {msg.kind!r}"
        if topology.family(msg.kind) not in topology.AGENT_FAMILIES:
            if self.command_key is None or not signing.verify(
                    self.command_key, body, headers.get(signing.COMMAND_SIG_HEADER)):
                return f"command signature check failed for a {msg.kind} (not signed by the gateway)"
            return None
        if self.config.insecure_agents or not isinstance(msg, AGENT_KINDS):
            return None
        agent = msg.agent  # type: ignore[attr-defined]
        if headers.get(signing.AGENT_HEADER) != agent:
            return f"signature check failed: sender header does not name agent {agent!r}"
        if isinstance(msg, messages.AgentHello):
            return self._hello_refusal(msg, body, headers, now)
        key = self._key(agent)
        if key is None:
            return f"signature check failed: agent {agent!r} has no key (not welcomed, or revoked)"
        if not signing.verify(key, body, headers.get(signing.SIG_HEADER)):
            return f"signature check failed for a {msg.kind} from {agent!r}"
        # Whether the agent owns the attempt it reports on is checked where the attempts are,
        # inside the burst's transaction (dispatcher/chunks.py check_owner).
        return None

    def _hello_refusal(self, msg: messages.AgentHello, body: bytes, headers: dict[str, Any],
                       now: float) -> str | None:
        agent = msg.agent
        if abs(now - msg.sent_at) > signing.HELLO_MAX_AGE_S:
            return f"signature check failed: hello from {agent!r} is not fresh (replayed?)"
        if not topology.valid_agent_name(agent) or len(msg.pools) > MAX_HELLO_POOLS \
                or len(msg.commands) > MAX_HELLO_COMMANDS \
                or not all(topology.valid_agent_name(n) and "." not in n for n in msg.pools + msg.commands):
            return f"hello from {agent!r}: bad agent, pool or command names"
        key, why = self._hello_key(agent, msg.pools)
        if key is None:
            return why
        if not signing.verify(key, body, headers.get(signing.SIG_HEADER)):
            return f"signature check failed for a hello from {agent!r}"
        last = Worker.select(Worker.hello_sent_at).where(Worker.name == agent).scalar()
        if last is not None and msg.sent_at <= last:
            return f"signature check failed: hello from {agent!r} is not newer than its last one (replayed?)"
        return None

    def _hello_key(self, agent: str, pools: list[str]) -> tuple[bytes | None, str]:
        row = Enrollment.get_or_none(Enrollment.name == agent)
        if row is not None:
            if row.revoked_at is not None:
                return None, f"agent {agent!r} is revoked"
            if row.pools and not set(pools) <= set(row.pools):
                return None, f"agent {agent!r} is enrolled for pools {row.pools} only, not {sorted(pools)}"
            return bytes.fromhex(row.node_key), ""
        if self.secret:
            return signing.hello_key(self.secret), ""
        return None, f"agent {agent!r} is not enrolled (`corral agent enroll {agent}`)"

    def _key(self, agent: str) -> bytes | None:
        if agent not in self.keys:
            row = Worker.select(Worker.signing_key).where(Worker.name == agent).first()
            if row is None or not row.signing_key:
                return None
            self.keys[agent] = bytes.fromhex(row.signing_key)
        return self.keys[agent]

    def cut_off_revoked(self, ctx: Context) -> int:
        """Agents whose enrollment was revoked: forget their key, requeue their chunk, tell them to go.

        Runs every tick (``tick_interval_s``, shorter than a heartbeat interval), so a
        revocation takes effect within one heartbeat interval whoever wrote it.
        """
        rows = list(Worker.select().join(Enrollment, on=(Enrollment.name == Worker.name)).where(
            Enrollment.revoked_at.is_null(False),
            Worker.signing_key.is_null(False) | (Worker.connection == ONLINE)))
        for worker in rows:
            self.forget(worker.name)
            lost = requeue_lost(ctx, worker, "agent revoked")
            Worker.update(signing_key=None, connection=OFFLINE, activity="revoked").where(
                Worker.id == worker.id).execute()
            ctx.send(messages.ControlRevoke(agent=worker.name, reason="enrollment revoked"), worker.name)
            log.warning("worker %s: %s -> offline (enrollment revoked; %d chunk(s) requeued)",
                        worker.name, worker.connection, lost)
            ctx.wake_release()
        return len(rows)


def wrap_secret_for(config: Config, agent: str) -> str:
    """What the agent's welcome key is wrapped with: its node key, else the farm secret ("" for none)."""
    row = Enrollment.get_or_none(Enrollment.name == agent)
    if row is not None and row.revoked_at is None:
        return signing.wrap_secret(bytes.fromhex(row.node_key))
    return config.agent_secret


def declare_joined(ctx: Context, publisher: Publisher) -> None:
    """Make the queues of agents that said hello, before their welcome goes out: agents declare nothing."""
    joined, ctx.joined = ctx.joined, []
    topo = publisher.topology
    for agent, pools, commands in joined:
        for pool in pools:
            for command in commands:
                publisher.declare(topo.chunk_queue(pool, command))
        publisher.declare(topo.agent_queue(agent))
