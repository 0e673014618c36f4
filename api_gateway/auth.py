"""Bearer-token authentication and scope checks for every route, in one middleware.

The scope each operation needs is read from the OpenAPI document (its
``security`` entries), so the published contract and the enforced one cannot
drift apart. A responder the document does not list needs ``admin``: a route
added without documenting it is closed, not open.
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

import falcon

from api_gateway.errors import TooManyAttempts
from api_gateway.ratelimit import FailureLimiter
from common import auth
from common.auth import Forbidden, Principal, Unauthorized

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
            raise Unauthorized("missing Authorization: Bearer <token> header")
        scheme, _, secret = header.strip().partition(" ")
        principal = None
        if scheme.lower() == "bearer":
            principal = auth.authenticate(secret.strip(), self.admin_token, self.clock())
        if principal is None:
            self.limiter.failed(address)
            log.warning("failed authentication from %s for %s %s", address, req.method, req.path)
            raise Unauthorized("the token is not valid (unknown, revoked, expired or malformed)")
        return principal
