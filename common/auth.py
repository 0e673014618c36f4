"""API tokens: scopes, creation, verification, listing and revocation.

A token is ``corral_<43 url-safe characters>`` (32 random bytes). Only its
SHA-256 is stored (``common.models.Token``); the secret is shown once, when it is
made. The gateway verifies tokens here, and ``corral token ...`` manages them
straight in the database, so both share one implementation.
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable
from typing import Any

from common.errors import CorralError, NotFound, ValidationError
from common.models import Token, database_proxy

READ, SUBMIT, OPERATE, ADMIN, AGENT = "read", "submit", "operate", "admin", "agent"
SCOPES = (READ, SUBMIT, OPERATE, ADMIN, AGENT)
# What each scope grants besides itself: admin is everything; submitting or
# operating is useless without seeing the tasks. ``agent`` grants nothing else.
IMPLIED: dict[str, frozenset[str]] = {
    ADMIN: frozenset(SCOPES),
    SUBMIT: frozenset({READ}),
    OPERATE: frozenset({READ}),
}
PREFIX = "corral_"
MAX_TOKEN_CHARS = 200
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,99}$")
MAX_EXPIRES_IN_S = 10 * 365 * 86400
TOUCH_EVERY_S = 60.0  # last_used_at is written at most this often per token
ENV_ADMIN_NAME = "CORRAL_ADMIN_TOKEN"


class AuthError(CorralError):
    """Base class of authentication and authorisation failures."""


class Unauthorized(AuthError):
    """No token, a malformed one, or one that is unknown, revoked or expired."""


class Forbidden(AuthError):
    """The token is valid but lacks the scope the request needs."""

    def __init__(self, scope: str, message: str | None = None) -> None:
        super().__init__(message or f"this token lacks the '{scope}' scope")
        self.scope = scope

    @classmethod
    def csrf(cls) -> Forbidden:
        """A cookie-authenticated change without the session's CSRF token (``X-CSRF-Token``)."""
        return cls("csrf", "a request authenticated by the session cookie must carry the session's "
                           "X-CSRF-Token header (GET /session gives it)")


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who a verified token belongs to and what it may do."""

    name: str
    scopes: frozenset[str]
    token_id: int | None = None

    def allows(self, scope: str) -> bool:
        return scope in effective_scopes(self.scopes)


def effective_scopes(scopes: Iterable[str]) -> frozenset[str]:
    granted = set(scopes)
    for scope in list(granted):
        granted |= IMPLIED.get(scope, frozenset())
    return frozenset(granted)


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def parse_scopes(value: Any, field: str = "scopes") -> list[str]:
    """A list of scope names, or one comma-separated string of them, in ``SCOPES`` order."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not value or len(value) > len(SCOPES):
        raise ValidationError(field, f"must name 1 to {len(SCOPES)} scopes among {', '.join(SCOPES)}")
    for scope in value:
        if scope not in SCOPES:
            raise ValidationError(field, f"must be among {', '.join(SCOPES)}")
    return [scope for scope in SCOPES if scope in value]


def check_name(value: Any, field: str = "name") -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise ValidationError(field, f"must match {NAME_RE.pattern}")
    return value


def create_token(name: str, scopes: Any, expires_in_s: int | None = None,
                 now: float | None = None) -> tuple[Token, str]:
    """Record a new token; return the row and the secret (which is not stored)."""
    now = time.time() if now is None else now
    name, scope_list = check_name(name), parse_scopes(scopes)
    if expires_in_s is not None and not 1 <= expires_in_s <= MAX_EXPIRES_IN_S:
        raise ValidationError("expires_in_s", f"must be between 1 and {MAX_EXPIRES_IN_S} seconds")
    secret = new_secret()
    with database_proxy.atomic():
        row = Token.create(name=name, scopes=scope_list, token_hash=hash_token(secret), created_at=now,
                           expires_at=None if expires_in_s is None else now + expires_in_s)
    return row, secret


def list_tokens(include_inactive: bool = True, now: float | None = None) -> list[Token]:
    rows = list(Token.select().order_by(Token.id))
    if include_inactive:
        return rows
    return [row for row in rows if token_state(row, now) == "active"]


def token_state(row: Token, now: float | None = None) -> str:
    now = time.time() if now is None else now
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "active"


def find_token(ident: int | str) -> Token:
    """A token by id, or by name when exactly one token that is not revoked has it."""
    if isinstance(ident, int) or (isinstance(ident, str) and ident.isdigit()):
        row = Token.get_or_none(Token.id == int(ident))
        if row is None:
            raise NotFound("token", ident)
        return row
    rows = list(Token.select().where((Token.name == ident) & Token.revoked_at.is_null()))
    if not rows:
        raise NotFound("token", ident)
    if len(rows) > 1:
        raise ValidationError("token", f"{len(rows)} tokens are named {ident!r}; give the id")
    return rows[0]


def revoke_token(ident: int | str, now: float | None = None) -> Token:
    """Revoke a token (idempotent: a revoked token keeps its first revocation time)."""
    row = find_token(ident)
    if row.revoked_at is None:
        row.revoked_at = time.time() if now is None else now
        Token.update(revoked_at=row.revoked_at).where(Token.id == row.id).execute()
    return row


def authenticate(secret: str, admin_token: str = "", now: float | None = None) -> Principal | None:
    """The principal a presented token stands for, or None if it is not a valid token."""
    if not secret or len(secret) > MAX_TOKEN_CHARS:
        return None
    presented = hash_token(secret)
    if admin_token and hmac.compare_digest(presented, hash_token(admin_token)):
        return Principal(ENV_ADMIN_NAME, frozenset({ADMIN}))
    row = Token.get_or_none(Token.token_hash == presented)
    if row is None or not hmac.compare_digest(presented, row.token_hash):
        return None
    now = time.time() if now is None else now
    if token_state(row, now) != "active":
        return None
    if row.last_used_at is None or now - row.last_used_at >= TOUCH_EVERY_S:
        Token.update(last_used_at=now).where(Token.id == row.id).execute()
    return Principal(row.name, frozenset(row.scopes or ()), row.id)


def token_body(row: Token, now: float | None = None) -> dict[str, Any]:
    """A token as the API and the CLI show it: never its secret nor its hash."""
    return {
        "id": row.id,
        "name": row.name,
        "scopes": list(row.scopes or []),
        "state": token_state(row, now),
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "revoked_at": row.revoked_at,
        "last_used_at": row.last_used_at,
    }
