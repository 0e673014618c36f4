"""Request middleware: the body size limit, and the database connection of each serving thread."""
from __future__ import annotations

from typing import Any

import falcon

from api_gateway.errors import PayloadTooLarge
from common.models import database_proxy


class BodyLimit:
    """Refuses a declared body over ``max_body_bytes`` before anything reads it (413)."""

    def __init__(self, max_body_bytes: int) -> None:
        self.max_body_bytes = max_body_bytes

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.max_body_bytes = self.max_body_bytes
        length = req.content_length
        if length is not None and length > self.max_body_bytes:
            raise PayloadTooLarge(f"the body is larger than {self.max_body_bytes} bytes")


class DatabaseConnection:
    """Makes sure the serving thread has a database connection before a responder runs.

    The connection stays open for the thread's next request (opening one costs a
    round of pragmas on SQLite, a handshake on PostgreSQL); after a failed request
    it is closed, so a connection broken by a database restart is not reused.
    Resources with ``opens_database = False`` manage their own connection.
    """

    def process_resource(self, req: falcon.Request, resp: falcon.Response,
                         resource: Any, params: dict[str, Any]) -> None:
        if resource is not None and getattr(resource, "opens_database", True):
            database_proxy.connect(reuse_if_open=True)

    def process_response(self, req: falcon.Request, resp: falcon.Response,
                         resource: Any, req_succeeded: bool) -> None:
        if not req_succeeded and database_proxy.obj is not None and not database_proxy.is_closed():
            database_proxy.close()
