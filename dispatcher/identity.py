"""Checking that each agent message comes from the agent it names (common/signing.py).

With ``CORRAL_AGENT_SECRET`` set, a hello must be signed with the farm's hello
key and be fresh; every other agent message must be signed with the key issued
to that agent's current boot. Without a secret nothing is checked (the
dispatcher says so once at start).
"""
from __future__ import annotations

import logging
from typing import Any

from common import messages, signing
from common.models import Worker

log = logging.getLogger("dispatcher.identity")

AGENT_KINDS = (messages.AgentHello, messages.AgentHeartbeat, messages.AgentGoodbye,
               messages.ChunkStarted, messages.ChunkProgress, messages.ChunkFinished)


class Verifier:
    """Knows each agent's current key; refuses what does not carry a matching signature."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.keys: dict[str, bytes] = {}
        if not secret:
            log.warning("CORRAL_AGENT_SECRET is not set: agent messages are NOT authenticated")

    def remember(self, agent: str, key: bytes) -> None:
        self.keys[agent] = key

    def refusal(self, msg: messages.Message, body: bytes, headers: dict[str, Any], now: float) -> str | None:
        """Why the message must be refused, or None when it may be applied."""
        if not self.secret or not isinstance(msg, AGENT_KINDS):
            return None
        agent = msg.agent  # type: ignore[attr-defined]
        if headers.get(signing.AGENT_HEADER) != agent:
            return f"signature check failed: sender header does not name agent {agent!r}"
        if isinstance(msg, messages.AgentHello):
            if abs(now - msg.sent_at) > signing.HELLO_MAX_AGE_S:
                return f"signature check failed: hello from {agent!r} is not fresh (replayed?)"
            key = signing.hello_key(self.secret)
        else:
            key = self._key(agent)
            if key is None:
                return f"signature check failed: agent {agent!r} has no key (not registered)"
        if not signing.verify(key, body, headers.get(signing.SIG_HEADER)):
            return f"signature check failed for a {msg.kind} from {agent!r}"
        return None

    def _key(self, agent: str) -> bytes | None:
        if agent not in self.keys:
            row = Worker.select(Worker.signing_key).where(Worker.name == agent).first()
            if row is None or not row.signing_key:
                return None
            self.keys[agent] = bytes.fromhex(row.signing_key)
        return self.keys[agent]
