"""Authentication (bearer token or web UI session) and scope checks for every route, in one middleware.

The scope each operation needs is read from the OpenAPI document (its
``security`` entries), so the published contract and the enforced one cannot
drift apart. A responder the document does not list needs ``admin``: a route
added without documenting it is closed, not open.

A request without an ``Authorization`` header may carry the web UI's session
cookie instead (``common.sessions``). A cookie is sent by the browser on its
own, so a state-changing request authenticated by it must also carry the
session's CSRF token in ``X-CSRF-Token`` (a page of another site cannot read
it). Bearer-token requests are not affected.
"""
from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import falcon

from api_gateway.errors import TooManyAttempts
from api_gateway.ratelimit import FailureLimiter
from common import auth, sessions
from common.auth import Forbidden, Principal, Unauthorized

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

log = logging.getLogger(__name__)

_CONVERTER = re.compile(r"\{(\w+):[^}]*\}")
RouteScopes = dict[tuple[str, str], str | None]  # (path template, METHOD) -> scope; None: public


def plain_template(uri_template: str) -> str:
    """``/tasks/{task_id:int(min=1)}`` -> ``/tasks/{task_id}``, the form OpenAPI uses."""
    return _CONVERTER.sub(r"{\1}", uri_template)


class Authentication:
    """Checks ``Authorization: Bearer <token>`` and the route's scope; sets ``req.context.principal``."""

    def __init__(self, scopes: RouteScopes, admin_token: str, limiter: FailureLimiter,
                 clock: Callable[[], float] = time.time) -> None:
        self.scopes = scopes
        self.admin_token = admin_token
        self.limiter = limiter
        self.clock = clock

    def process_resource(self, req: falcon.Request, resp: falcon.Response,
                         resource: Any, params: dict[str, Any]) -> None:
        if resource is None:  # no route: Falcon answers 404
            return
        key = (plain_template(req.uri_template or ""), req.method)
        if key in self.scopes:
            scope = self.scopes[key]
        elif hasattr(resource, f"on_{req.method.lower()}"):
            scope = auth.ADMIN
        else:  # Falcon answers 405 (or OPTIONS) itself
            return
        if scope is None:
            return
        principal = self._authenticate(req)
        req.context.principal = principal
        if not principal.allows(scope):
            log.info("token %r refused %s %s: needs scope %s", principal.name, req.method, req.path, scope)
            raise Forbidden(scope)

    def _authenticate(self, req: falcon.Request) -> Principal:
        address = req.remote_addr or "unknown"
        wait = self.limiter.retry_after_s(address)
        if wait:
            raise TooManyAttempts(wait)
        header = req.get_header("Authorization")
        if not header:
            return self._from_session(req)
        scheme, _, secret = header.strip().partition(" ")
        principal = None
        if scheme.lower() == "bearer":
            principal = auth.authenticate(secret.strip(), self.admin_token, self.clock())
        if principal is None:
            self.limiter.failed(address)
            log.warning("failed authentication from %s for %s %s", address, req.method, req.path)
            raise Unauthorized("the token is not valid (unknown, revoked, expired or malformed)")
        return principal

    def _from_session(self, req: falcon.Request) -> Principal:
        cookie = session_cookie(req)
        if cookie is None:
            raise Unauthorized("missing Authorization: Bearer <token> header (or a web UI session)")
        found = sessions.lookup(cookie, self.clock())
        if found is None:
            raise Unauthorized("the session has ended (logged out, expired or token revoked); log in again")
        principal, csrf = found
        if req.method not in SAFE_METHODS:
            presented = req.get_header(sessions.CSRF_HEADER) or ""
            if not hmac.compare_digest(presented.encode(), csrf.encode()):
                log.warning("refused %s %s: session cookie without its CSRF token", req.method, req.path)
                raise Forbidden.csrf()
        req.context.csrf_token = csrf
        return principal


def session_cookie(req: falcon.Request) -> str | None:
    values = req.get_cookie_values(sessions.COOKIE)
    return values[0] if values else None
