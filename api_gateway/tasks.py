"""Task resources: submit, list, show, change, cancel, and list a task's chunks.

The gateway records a submitted task and tells the dispatcher; changes and
cancellations are only requests to the dispatcher, which applies them.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import falcon

from api_gateway import paging, queries
from api_gateway.errors import Conflict
from api_gateway.events import EventSender
from api_gateway.inputs import TaskQuery, parse_submission, parse_task_patch, parse_task_query
from api_gateway.media import read_body
from api_gateway.serialize import task_body
from common.config import Config
from common.errors import BrokerUnavailable
from common.messages import TaskBlocklistClear, TaskCancel, TaskRetry, TaskSubmitted, TaskUpdate
from common.models import CANCELED, COMPLETED, TASK_FINAL, Task

log = logging.getLogger(__name__)


def _refuse_final(task: Task, action: str) -> None:
    if task.status in TASK_FINAL:
        raise Conflict(f"task {task.id} is {task.status}; it cannot be {action}")


def _next_cursor(query: TaskQuery, page: list[dict[str, Any]]) -> str:
    """The cursor of the page after ``page``: the place of its last task in the query's order."""
    last = page[-1]
    return paging.encode(query.sort, query.descending, paging.Position(last[query.sort], last["id"]))


class TaskCollection:
    """``/tasks``: submit a task, list tasks."""

    def __init__(self, config: Config, events: EventSender, clock: Callable[[], float]) -> None:
        self.config = config
        self.events = events
        self.clock = clock

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query = parse_task_query(req, self.config.job_types_dir)
        tasks, more = queries.list_tasks(query)
        resp.media = {
            "tasks": tasks,
            "total": queries.count_tasks(query, self.config.api_cache_s),
            "limit": query.limit,
            "offset": query.offset,
            "next": _next_cursor(query, tasks) if more else None,
        }

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        new = parse_submission(read_body(req), self.config)
        task, created = queries.insert_task(new, self.clock())
        if created:
            self._hand_over(task)
            log.info("task %d (%s, client id %s) submitted", task.id, task.type, task.client_task_id)
        resp.status = falcon.HTTP_202
        resp.media = task_body(task)

    def _hand_over(self, task: Task) -> None:
        """Tell the dispatcher; if the broker cannot take it, the task was never submitted."""
        try:
            self.events.send(TaskSubmitted(task_id=task.id))
        except BrokerUnavailable:
            queries.take_back_task(task.id)
            log.warning("task %d taken back: the broker did not accept task.submitted", task.id)
            raise


class TaskItem:
    """``/tasks/{task_id}``: show, change priority or pause/resume, cancel."""

    def __init__(self, events: EventSender) -> None:
        self.events = events

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: int) -> None:
        task = queries.get_task(task_id)
        counts = queries.chunk_counts(task_id)
        resp.media = {**task_body(task), "chunks_total": sum(counts.values()), "chunks_by_status": counts,
                      "steps": queries.step_counts(task_id), "blocklist": queries.blocklist_of(task_id)}

    def on_patch(self, req: falcon.Request, resp: falcon.Response, task_id: int) -> None:
        task = queries.get_task(task_id)
        change = parse_task_patch(read_body(req))
        _refuse_final(task, "changed")
        self.events.send(TaskUpdate(task_id=task_id, priority=change.priority, status=change.status))
        resp.status = falcon.HTTP_204

    def on_delete(self, req: falcon.Request, resp: falcon.Response, task_id: int) -> None:
        task = queries.get_task(task_id)
        _refuse_final(task, "canceled")
        self.events.send(TaskCancel(task_id=task_id))
        resp.status = falcon.HTTP_202
        resp.media = task_body(task)


class TaskChunks:
    """``/tasks/{task_id}/chunks``: the chunks of a task with their attempts."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: int) -> None:
        queries.get_task(task_id)
        resp.media = {"task_id": task_id, "chunks": queries.chunks_of(task_id)}


class TaskChunk:
    """``/tasks/{task_id}/chunks/{chunk_id}``: one chunk with its attempts and log tail."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: int, chunk_id: int) -> None:
        queries.get_task(task_id)
        resp.media = queries.chunk_of(task_id, chunk_id)


class TaskRetryResource:
    """``/tasks/{task_id}/retry``: run the failed chunks again (a failed task goes back to work)."""

    def __init__(self, events: EventSender) -> None:
        self.events = events

    def on_post(self, req: falcon.Request, resp: falcon.Response, task_id: int) -> None:
        task = queries.get_task(task_id)
        if task.status in (COMPLETED, CANCELED):
            raise Conflict(f"task {task.id} is {task.status}; only failed chunks can be retried")
        self.events.send(TaskRetry(task_id=task_id))
        resp.status = falcon.HTTP_202
        resp.media = {"task_id": task_id, "failed_chunks": queries.chunk_counts(task_id).get("failed", 0)}


class TaskBlocklist:
    """``/tasks/{task_id}/blocklist``: see which agents are blocked from a task, and clear them."""

    def __init__(self, events: EventSender) -> None:
        self.events = events

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: int) -> None:
        queries.get_task(task_id)
        resp.media = {"task_id": task_id, "blocklist": queries.blocklist_of(task_id)}

    def on_delete(self, req: falcon.Request, resp: falcon.Response, task_id: int) -> None:
        """Clear the whole blocklist, or one worker's entry with ``?worker_id=N``."""
        queries.get_task(task_id)
        worker_id = req.get_param_as_int("worker_id", min_value=1, max_value=2**63 - 1)
        if worker_id is not None:
            queries.get_worker(worker_id)
        self.events.send(TaskBlocklistClear(task_id=task_id, worker_id=worker_id))
        resp.status = falcon.HTTP_202
        resp.media = {"task_id": task_id, "cleared": "all" if worker_id is None else worker_id}
