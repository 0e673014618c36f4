"""Request middleware: one database connection per request."""
from __future__ import annotations

from typing import Any

import falcon

from common.models import database_proxy


class DatabaseConnection:
    """Opens the database connection before a responder runs and closes it after.

    Resources with ``opens_database = False`` manage their own connection.
    """

    def process_resource(self, req: falcon.Request, resp: falcon.Response,
                         resource: Any, params: dict[str, Any]) -> None:
        if resource is not None and getattr(resource, "opens_database", True):
            database_proxy.connect(reuse_if_open=True)

    def process_response(self, req: falcon.Request, resp: falcon.Response,
                         resource: Any, req_succeeded: bool) -> None:
        if not database_proxy.is_closed():
            database_proxy.close()
