"""``/health``: cheap liveness for load balancers and the operator."""
from __future__ import annotations

import logging

import falcon
from peewee import PeeweeException

from api_gateway.events import EventSender
from common.models import database_proxy

log = logging.getLogger(__name__)


class Health:
    """Checks the database with ``SELECT 1``; reports the last publish's outcome for the broker."""

    # The connection middleware leaves this resource alone: a database that
    # cannot be opened is an answer here, not an error.
    opens_database = False

    def __init__(self, events: EventSender) -> None:
        self.events = events

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        database = "ok" if _database_answers() else "error"
        resp.status = falcon.HTTP_200 if database == "ok" else falcon.HTTP_503
        resp.media = {"status": "ok" if database == "ok" else "error",
                      "database": database, "broker": self.events.broker_state}


def _database_answers() -> bool:
    try:
        database_proxy.connect(reuse_if_open=True)
        try:
            database_proxy.execute_sql("SELECT 1").fetchone()
        finally:
            database_proxy.close()
    except (PeeweeException, OSError) as exc:
        log.warning("health check: the database does not answer: %s", exc)
        return False
    return True
