"""``/health``: cheap liveness for load balancers and the operator."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import falcon
from peewee import PeeweeException

from api_gateway.events import EventSender
from common.models import DispatcherLeader, database_proxy

log = logging.getLogger(__name__)


class Health:
    """Checks the database with ``SELECT 1``; reports the last publish's outcome for the broker."""

    # The connection middleware leaves this resource alone: a database that
    # cannot be opened is an answer here, not an error.
    opens_database = False

    def __init__(self, events: EventSender, namespace: str = "corral",
                 clock: Callable[[], float] = time.time) -> None:
        self.events = events
        self.namespace = namespace
        self.clock = clock

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        answered, dispatcher = self._check_database()
        database = "ok" if answered else "error"
        resp.status = falcon.HTTP_200 if database == "ok" else falcon.HTTP_503
        resp.media = {"status": "ok" if database == "ok" else "error",
                      "database": database, "broker": self.events.broker_state, "dispatcher": dispatcher}

    def _check_database(self) -> tuple[bool, dict[str, Any] | None]:
        """Whether the database answers, and the dispatcher leader row (None if it cannot be read)."""
        try:
            database_proxy.connect(reuse_if_open=True)
            try:
                database_proxy.execute_sql("SELECT 1").fetchone()
                return True, _leader(self.namespace, self.clock())
            finally:
                database_proxy.close()
        except (PeeweeException, OSError) as exc:
            log.warning("health check: the database does not answer: %s", exc)
            return False, None


def _leader(namespace: str, now: float) -> dict[str, Any]:
    """Which dispatcher is active, from the row the dispatchers fence on (dispatcher/leader.py)."""
    row = DispatcherLeader.get_or_none(DispatcherLeader.namespace == namespace)
    if row is None or not row.holder:
        return {"active": None, "epoch": 0, "lease_expires_in_s": None}
    live = row.expires_at > now
    return {"active": row.holder if live else None, "epoch": row.epoch,
            "lease_expires_in_s": round(row.expires_at - now, 3) if live else None,
            **({} if live else {"last_active": row.holder})}
