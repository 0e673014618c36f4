"""Identity on the broker: HMAC-SHA256 signatures over message bodies.

Commands (every routing-key family but ``agent.*`` and ``chunk.*``: ``task.*``,
``worker.*``, ...) carry ``x-corral-cmd-sig``, made with the command key that
only the gateway and the dispatcher hold (``command_key``); agents never see it.

An agent proves who it is with its own credential from ``corral agent enroll``
(common/enrollment.py): its ``agent.hello`` is signed with ``node_key(credential)``.
As a bootstrap, a farm may instead share ``CORRAL_AGENT_SECRET`` and sign hellos
with a key derived from it. The dispatcher answers with a ``control.welcome`` carrying a random key for this
agent process, wrapped (XOR with a one-time pad derived from the node key or farm secret, the
agent's name, its boot id and a fresh nonce) so that a reader of the control
queue without the secret learns nothing. Every later message from the agent is
signed with that key; the dispatcher dead-letters messages whose signature does
not match the key of the agent they name, so one agent cannot report on
another agent's chunk. See docs/security.md for the threat model.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading

SIG_HEADER = "x-corral-sig"
AGENT_HEADER = "x-corral-agent"
COMMAND_SIG_HEADER = "x-corral-cmd-sig"
KEY_BYTES = 32
HELLO_MAX_AGE_S = 300.0
COMMAND_KEY_NAME = "command_key"


def _prf(secret: str, label: str) -> bytes:
    return hmac.new(secret.encode(), label.encode(), hashlib.sha256).digest()


def hello_key(secret: str) -> bytes:
    """The key a registering agent signs its hello with."""
    return _prf(secret, "corral hello v1")


def sign(key: bytes, body: bytes) -> str:
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(key: bytes, body: bytes, signature: object) -> bool:
    return isinstance(signature, str) and hmac.compare_digest(sign(key, body), signature)


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def _pad(secret: str, agent: str, boot_id: str, nonce: str) -> bytes:
    return _prf(secret, f"corral wrap v1:{agent}:{boot_id}:{nonce}")


def wrap(secret: str, agent: str, boot_id: str, nonce: str, key: bytes) -> str:
    pad = _pad(secret, agent, boot_id, nonce)
    return bytes(a ^ b for a, b in zip(key, pad, strict=True)).hex()


def unwrap(secret: str, agent: str, boot_id: str, nonce: str, wrapped: str) -> bytes:
    return bytes.fromhex(wrap(secret, agent, boot_id, nonce, bytes.fromhex(wrapped)))


def command_key(configured: str) -> bytes:
    """The command key: derived from ``CORRAL_COMMAND_KEY``, else the one kept in the database.

    Migration 2 (common/db.py) stores a random one in ``farm_secrets``, so the
    gateway and the dispatcher share it with no setting; agents have no database.
    """
    if configured:
        return _prf(configured, "corral command v1")
    from common.models import FarmSecret, database_proxy

    with database_proxy.connection_context():
        row = FarmSecret.get_by_id(COMMAND_KEY_NAME)
    return bytes.fromhex(row.value)


def wrap_secret(node_key: bytes) -> str:
    """The string an enrolled node's welcome key is wrapped with (the farm secret's counterpart)."""
    return node_key.hex()


class Signer:
    """The keys one agent process signs with: the hello key, then the issued key.

    With a ``credential`` (enrollment) the hello key is its node key; otherwise the
    key derived from the farm-wide ``secret`` (bootstrap).
    """

    def __init__(self, agent: str, secret: str = "", credential: str = "") -> None:
        from common.enrollment import node_key

        self.agent = agent
        if credential:
            key = node_key(credential)
            self.secret, self._hello_key = wrap_secret(key), key
        else:
            self.secret, self._hello_key = secret, hello_key(secret)
        self._key: bytes | None = None
        self.welcomed = threading.Event()

    def accept(self, boot_id: str, nonce: str, wrapped: str) -> None:
        self._key = unwrap(self.secret, self.agent, boot_id, nonce, wrapped)
        self.welcomed.set()

    def headers(self, kind: str, body: bytes) -> dict[str, str]:
        key = self._hello_key if kind == "agent.hello" else self._key
        if key is None:
            return {AGENT_HEADER: self.agent}  # unsigned: the dispatcher will refuse it
        return {AGENT_HEADER: self.agent, SIG_HEADER: sign(key, body)}
