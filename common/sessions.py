"""Browser sessions for the web UI, and the one-time login codes that start them.

A session is started by presenting an API token (the login form) or a login
code (the link ``corral up`` prints). Its cookie secret and the code are
random; only their SHA-256 is stored, in the database, so every gateway
process sees every session. A session acts with the scopes of the token behind
it, read again on every request: revoking the token ends its sessions.
"""
from __future__ import annotations

import secrets
import time

from common import auth
from common.auth import Principal
from common.models import LoginCode, Session, Token, database_proxy

SESSION_TTL_S = 12 * 3600
LOGIN_CODE_TTL_S = 15 * 60
COOKIE = "corral_session"
CSRF_HEADER = "X-CSRF-Token"


def _principal_row(principal: Principal) -> dict:
    return {"token": principal.token_id, "name": principal.name, "scopes": sorted(principal.scopes)}


def start(principal: Principal, now: float | None = None, ttl_s: float = SESSION_TTL_S) -> tuple[str, str]:
    """Record a session for ``principal``; return ``(cookie secret, CSRF token)``."""
    now = time.time() if now is None else now
    secret, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    with database_proxy.atomic():
        Session.delete().where(Session.expires_at <= now).execute()
        Session.create(session_hash=auth.hash_token(secret), csrf_token=csrf, created_at=now,
                       expires_at=now + ttl_s, **_principal_row(principal))
    return secret, csrf


def lookup(secret: str | None, now: float | None = None) -> tuple[Principal, str] | None:
    """The principal and CSRF token of a live session, or None (unknown, expired, token revoked)."""
    if not secret or len(secret) > auth.MAX_TOKEN_CHARS:
        return None
    now = time.time() if now is None else now
    row = Session.get_or_none((Session.session_hash == auth.hash_token(secret)) & (Session.expires_at > now))
    if row is None:
        return None
    if row.token_id is not None:
        token = Token.get_or_none(Token.id == row.token_id)
        if token is None or auth.token_state(token, now) != "active":
            return None
        scopes = frozenset(token.scopes or ())
    else:
        scopes = frozenset(row.scopes or ())
    return Principal(row.name, scopes, row.token_id), row.csrf_token


def end(secret: str | None) -> int:
    """Delete the session (logout); returns how many rows went (0 or 1)."""
    if not secret:
        return 0
    return Session.delete().where(Session.session_hash == auth.hash_token(secret)).execute()


def issue_login_code(principal: Principal, now: float | None = None, ttl_s: float = LOGIN_CODE_TTL_S) -> str:
    """A single-use code that starts one session for ``principal`` within ``ttl_s``."""
    now = time.time() if now is None else now
    code = secrets.token_urlsafe(24)
    with database_proxy.atomic():
        LoginCode.delete().where(LoginCode.expires_at <= now).execute()
        LoginCode.create(code_hash=auth.hash_token(code), expires_at=now + ttl_s, **_principal_row(principal))
    return code


def redeem_login_code(code: str | None, now: float | None = None) -> Principal | None:
    """The principal a code was issued for; the code is spent whether or not it was still valid."""
    if not code or len(code) > auth.MAX_TOKEN_CHARS:
        return None
    now = time.time() if now is None else now
    with database_proxy.atomic():
        row = LoginCode.get_or_none(LoginCode.code_hash == auth.hash_token(code))
        if row is None:
            return None
        # Deleting decides the race between two redemptions: only one of them deletes the row.
        spent = LoginCode.delete().where(LoginCode.id == row.id).execute()
    if not spent or row.expires_at <= now:
        return None
    if row.token_id is not None:
        token = Token.get_or_none(Token.id == row.token_id)
        if token is None or auth.token_state(token, now) != "active":
            return None
    return Principal(row.name, frozenset(row.scopes or ()), row.token_id)
