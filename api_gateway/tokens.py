"""Token resources (scope ``admin``): list, create (the secret is in that answer only), revoke."""
from __future__ import annotations

import logging
from collections.abc import Callable

import falcon

from api_gateway.media import read_body
from common import auth

log = logging.getLogger(__name__)
TOKEN_FIELDS = ("name", "scopes", "expires_in_s")


class TokenCollection:
    """``/tokens``."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        now = self.clock()
        resp.media = {"tokens": [auth.token_body(row, now) for row in auth.list_tokens(now=now)]}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_body(req)
        body.reject_unknown(TOKEN_FIELDS)
        expires_in_s = body.integer("expires_in_s", 1, auth.MAX_EXPIRES_IN_S)
        row, secret = auth.create_token(body.get("name"), body.get("scopes"), expires_in_s, self.clock())
        log.info("token %d %r (%s) created by %s", row.id, row.name, ",".join(row.scopes),
                 req.context.principal.name)
        resp.status = falcon.HTTP_201
        resp.media = {**auth.token_body(row, self.clock()), "token": secret}


class TokenItem:
    """``/tokens/{token_id}``."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock

    def on_delete(self, req: falcon.Request, resp: falcon.Response, token_id: int) -> None:
        row = auth.revoke_token(token_id, self.clock())
        log.info("token %d %r revoked by %s", row.id, row.name, req.context.principal.name)
        resp.media = auth.token_body(row, self.clock())
