"""Enrollment resources (scope ``admin``): enroll a node (its credential is in that answer only),
list enrollments, revoke one. The dispatcher cuts a revoked node off within one tick."""
from __future__ import annotations

import logging
from collections.abc import Callable

import falcon

from api_gateway.media import read_body
from common import enrollment

log = logging.getLogger(__name__)
ENROLL_FIELDS = ("name", "pools")


class AgentCollection:
    """``/agents``."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"agents": [enrollment.body(row) for row in enrollment.list_enrollments()]}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_body(req)
        body.reject_unknown(ENROLL_FIELDS)
        row, credential = enrollment.enroll(body.get("name"), body.get("pools"), self.clock())
        log.info("agent %r enrolled (pools %s) by %s", row.name, row.pools or "any",
                 req.context.principal.name)
        resp.status = falcon.HTTP_201
        resp.media = {**enrollment.body(row), "credential": credential}


class AgentItem:
    """``/agents/{name}``."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        row = enrollment.revoke(name, self.clock())
        log.info("agent %r revoked by %s", row.name, req.context.principal.name)
        resp.media = enrollment.body(row)
