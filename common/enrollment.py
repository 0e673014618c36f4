"""Per-node enrollment: each render node gets a credential of its own.

An operator enrolls a node by name (``corral agent enroll NAME``, or
``POST /agents``). Corral makes a random credential, shows it once, and keeps
only ``node_key(credential)``, a one-way derivation the dispatcher checks the
node's hello against (common/signing.py). Enrolling a name again issues a new
credential and the old one stops working (rotation); revoking a name cuts the
node off (the dispatcher notices within one tick, see dispatcher/identity.py).
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from typing import Any

from common.errors import NotFound, ValidationError
from common.models import Enrollment, database_proxy
from common.topology import valid_agent_name

PREFIX = "corralnode_"
MAX_POOLS = 32
POOL_RE = re.compile(r"^[a-z0-9_-]{1,32}$")  # as a task's pool (api_gateway/openapi.yaml)


def new_credential() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def node_key(credential: str) -> bytes:
    """What the node signs its hello with, and the only form of the credential the manager keeps."""
    return hmac.new(credential.encode(), b"corral node key v1", hashlib.sha256).digest()


def check_pools(value: Any, field: str = "pools") -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_POOLS:
        raise ValidationError(field, f"must be a list of at most {MAX_POOLS} pool names")
    for pool in value:
        if not isinstance(pool, str) or not POOL_RE.match(pool):
            raise ValidationError(field, f"must hold pool names matching {POOL_RE.pattern}")
    return sorted(set(value))


def check_name(value: Any, field: str = "name") -> str:
    if not isinstance(value, str) or not valid_agent_name(value):
        raise ValidationError(field, "must be 1-200 letters, digits, '.', '_', '@', ':' or '-', "
                                     "starting with a letter or digit")
    return value


def enroll(name: Any, pools: Any = None, now: float | None = None) -> tuple[Enrollment, str]:
    """Enroll (or re-enroll) a node; return the row and the credential, which is not stored."""
    name, pools = check_name(name), check_pools(pools)
    now = time.time() if now is None else now
    credential = new_credential()
    key = node_key(credential).hex()
    with database_proxy.atomic():
        row = Enrollment.get_or_none(Enrollment.name == name)
        if row is None:
            row = Enrollment.create(name=name, node_key=key, pools=pools, created_at=now)
        else:
            Enrollment.update(node_key=key, pools=pools, created_at=now, revoked_at=None).where(
                Enrollment.id == row.id).execute()
            row = Enrollment.get_by_id(row.id)
    return row, credential


def revoke(name: str, now: float | None = None) -> Enrollment:
    """Revoke a node's enrollment (idempotent: the first revocation time stays)."""
    row = Enrollment.get_or_none(Enrollment.name == name)
    if row is None:
        raise NotFound("agent", name)
    if row.revoked_at is None:
        row.revoked_at = time.time() if now is None else now
        Enrollment.update(revoked_at=row.revoked_at).where(Enrollment.id == row.id).execute()
    return row


def list_enrollments() -> list[Enrollment]:
    return list(Enrollment.select().order_by(Enrollment.name))


def body(row: Enrollment) -> dict[str, Any]:
    """An enrollment as the API and the CLI show it: never the key."""
    return {"name": row.name, "pools": list(row.pools or []),
            "state": "revoked" if row.revoked_at is not None else "active",
            "enrolled_at": row.created_at, "revoked_at": row.revoked_at}
