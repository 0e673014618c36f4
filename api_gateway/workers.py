"""Worker resources: list, register (legacy workers), show, and operator control."""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import falcon

from api_gateway import queries
from api_gateway.cache import Memo
from api_gateway.encoding import Encoded, dumps
from api_gateway.events import EventSender
from api_gateway.inputs import parse_worker_patch, parse_worker_registration
from api_gateway.media import query_int, read_body
from api_gateway.serialize import worker_detail, worker_summary
from common.messages import WorkerUpdate
from common.models import database_proxy

log = logging.getLogger(__name__)


class WorkerCollection:
    """``/workers``: every worker keyed by name; registration of a new identity."""

    def __init__(self, clock: Callable[[], float], cache_s: float = 1.0) -> None:
        self.clock = clock
        self.listing = Memo(cache_s)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        # The encoded (and compressed) body is what is memoised: encoding 1,000 workers costs as
        # much as reading them.
        self.listing.get(id(database_proxy.obj), self._encoded_listing).send(req, resp)

    @staticmethod
    def _encoded_listing() -> Encoded:
        listing = {worker.name: worker_summary(worker) for worker in queries.all_workers()}
        return Encoded.of(dumps(listing))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        registration = parse_worker_registration(read_body(req))
        worker, created = queries.register_worker(registration, self.clock())
        if created:
            log.info("worker %s (id %d) registered from %s", worker.name, worker.id, worker.hostname)
        resp.status = falcon.HTTP_201
        resp.media = {worker.name: worker_summary(worker)}


class WorkerItem:
    """``/workers/{worker_id}``: details; status changes go to the dispatcher."""

    def __init__(self, events: EventSender) -> None:
        self.events = events

    def on_get(self, req: falcon.Request, resp: falcon.Response, worker_id: int) -> None:
        resp.media = worker_detail(queries.get_worker(worker_id))

    def on_patch(self, req: falcon.Request, resp: falcon.Response, worker_id: int) -> None:
        worker = queries.get_worker(worker_id)
        change = parse_worker_patch(read_body(req))
        self.events.send(WorkerUpdate(worker_id=worker_id, **dataclasses.asdict(change)))
        resp.media = {"task_id": worker.current_task}


class WorkerAttempts:
    """``/workers/{worker_id}/attempts``: the worker's newest attempts, newest first."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, worker_id: int) -> None:
        queries.get_worker(worker_id)
        limit = query_int(req, "limit", 20, 1, 200)
        resp.media = {"worker_id": worker_id, "attempts": queries.recent_attempts(worker_id, limit)}
