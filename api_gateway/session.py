"""``/session``: log in to the web UI (with an API token or a login code), see who you are, log out.

The session cookie is HttpOnly (scripts cannot read it) and SameSite=Strict
(other sites' pages cannot send it); it is marked Secure when the request came
over HTTPS. The answer to a login carries the CSRF token that the browser sends
back in ``X-CSRF-Token`` with every change.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import falcon

from api_gateway.auth import session_cookie
from api_gateway.errors import TooManyAttempts
from api_gateway.media import read_body
from api_gateway.ratelimit import FailureLimiter
from common import auth, sessions
from common.auth import Principal, Unauthorized
from common.errors import ValidationError

log = logging.getLogger(__name__)


def session_body(principal: Principal, csrf_token: str | None) -> dict[str, Any]:
    return {"name": principal.name, "scopes": sorted(auth.effective_scopes(principal.scopes)),
            "csrf_token": csrf_token}


class SessionResource:
    def __init__(self, admin_token: str, limiter: FailureLimiter, clock: Callable[[], float] = time.time,
                 ttl_s: float = sessions.SESSION_TTL_S) -> None:
        self.admin_token = admin_token
        self.limiter = limiter
        self.clock = clock
        self.ttl_s = ttl_s

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Who the request is authenticated as (bearer token or session); the session's CSRF token."""
        resp.media = session_body(req.context.principal, getattr(req.context, "csrf_token", None))
        resp.cache_control = ["no-store"]

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Start a session from ``{"token": ...}`` or ``{"code": ...}`` (a one-time login code)."""
        address = req.remote_addr or "unknown"
        wait = self.limiter.retry_after_s(address)
        if wait:
            raise TooManyAttempts(wait)
        body = read_body(req)
        body.reject_unknown(("token", "code"))
        token, code = body.get("token"), body.get("code")
        if (token is None) == (code is None):
            raise ValidationError("token", "give either token (an API token) or code (a login code)")
        for name, value in (("token", token), ("code", code)):
            if value is not None and not isinstance(value, str):
                raise ValidationError(name, "must be a string")
        if token is not None:
            principal = auth.authenticate(token.strip(), self.admin_token, self.clock())
        else:
            principal = sessions.redeem_login_code(code.strip(), self.clock())
        if principal is None:
            self.limiter.failed(address)
            log.warning("failed web UI login from %s (%s)", address, "token" if token else "login code")
            raise Unauthorized("that token is not valid (unknown, revoked, expired or mistyped)" if token
                               else "that login link is not valid any more (used, expired or mistyped)")
        secret, csrf = sessions.start(principal, self.clock(), self.ttl_s)
        resp.set_cookie(sessions.COOKIE, secret, max_age=int(self.ttl_s), path="/",
                        secure=req.scheme == "https", http_only=True, same_site="Strict")
        log.info("web UI session started for %s from %s", principal.name, address)
        resp.status = falcon.HTTP_201
        resp.media = session_body(principal, csrf)
        resp.cache_control = ["no-store"]

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Log out: the session row is deleted and the cookie cleared."""
        sessions.end(session_cookie(req))
        resp.unset_cookie(sessions.COOKIE, path="/")
        resp.status = falcon.HTTP_204
