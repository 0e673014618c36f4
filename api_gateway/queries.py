"""Every database statement the gateway runs.

The gateway reads anything but writes only two things: a new ``Task`` row and a
new ``Worker`` identity (and takes back a task row it could not hand over to
the dispatcher). Every later change is the dispatcher's.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from peewee import JOIN, IntegrityError, fn

from api_gateway.cache import Memo
from api_gateway.errors import Conflict
from api_gateway.inputs import NewTask, TaskQuery, WorkerRegistration
from api_gateway.serialize import attempt_body, chunk_body
from common.errors import NotFound
from common.models import ONLINE, QUEUED, Attempt, Blocklist, Chunk, Task, Worker, database_proxy


def get_task(task_id: int) -> Task:
    task = Task.get_or_none(Task.id == task_id)
    if task is None:
        raise NotFound("task", task_id)
    return task


def _filtered(query: TaskQuery) -> Any:
    select = Task.select()
    if query.statuses:
        select = select.where(Task.status.in_(query.statuses))
    if query.type is not None:
        select = select.where(Task.type == query.type)
    if query.search is not None:
        # The start of a client task_id, as an index range; or a task's own id.
        match = (Task.client_task_id >= query.search) & (Task.client_task_id < query.search + "\U0010ffff")
        if query.search.isdigit() and len(query.search) <= 18:
            match = match | (Task.id == int(query.search))
        select = select.where(match)
    return select


def list_tasks(query: TaskQuery) -> list[Task]:
    """One page of tasks in the query's order (newest first by default); ties broken by id."""
    column = getattr(Task, query.sort)
    nulls = "LAST" if column.null else None  # never-started tasks sort after the others either way
    order = [column.desc(nulls=nulls) if query.descending else column.asc(nulls=nulls)]
    if query.sort != "id":
        order.append(Task.id.desc() if query.descending else Task.id.asc())
    select = _filtered(query).order_by(*order).limit(query.limit).offset(query.offset)
    return list(select)


_counts = Memo(ttl_s=1.0)


def count_tasks(query: TaskQuery, cache_s: float = 1.0) -> int:
    """How many tasks match the filter; up to ``cache_s`` old (paging totals need no more)."""
    if cache_s <= 0:
        return _filtered(query).count()
    key = (id(database_proxy.obj), query.statuses, query.type, query.search)
    return _counts.get(key, lambda: _filtered(query).count())


def insert_task(new: NewTask, now: float) -> tuple[Task, bool]:
    """Insert the task, or return the one already recorded under the same client id.

    Returns ``(task, created)``. Two submissions racing with one client id meet
    the unique constraint: the loser returns the winner's row.
    """
    if new.client_task_id is not None:
        existing = Task.get_or_none(Task.client_task_id == new.client_task_id)
        if existing is not None:
            return existing, False
    v = new.validated
    try:
        with database_proxy.atomic():
            task = Task.create(
                client_task_id=new.client_task_id, type=new.type, parser=new.parser,
                settings=v.settings, pool=new.pool, priority=new.priority, status=QUEUED,
                compiled=False, frame_start=v.frame_start, frame_end=v.frame_end,
                frames_total=v.frames_total, format=v.format, max_retries=new.max_retries,
                stall_timeout_s=new.stall_timeout_s, blocklist_threshold=new.blocklist_threshold,
                created_at=now,
            )
    except IntegrityError:
        existing = Task.get_or_none(Task.client_task_id == new.client_task_id)
        if existing is None:
            raise Conflict(f"task_id {new.client_task_id} is being submitted by another request; "
                           "retry") from None
        return existing, False
    return task, True


def take_back_task(task_id: int) -> int:
    """Delete a task the dispatcher never heard of (only while it is not compiled)."""
    return Task.delete().where((Task.id == task_id) & (Task.compiled == False)).execute()  # noqa: E712


def chunk_counts(task_id: int) -> dict[str, int]:
    rows = (Chunk.select(Chunk.status, fn.COUNT(Chunk.id))
            .where(Chunk.task == task_id).group_by(Chunk.status).tuples())
    return {status: count for status, count in rows}


def step_counts(task_id: int) -> list[dict[str, Any]]:
    """Per job-type step, in the order its chunks start: its command and its chunks by status."""
    rows = (Chunk.select(Chunk.step, Chunk.command, Chunk.status, fn.COUNT(Chunk.id), fn.MIN(Chunk.index))
            .where(Chunk.task == task_id).group_by(Chunk.step, Chunk.command, Chunk.status).tuples())
    steps: dict[tuple[str, str], dict[str, Any]] = {}
    first: dict[tuple[str, str], int] = {}
    for step, command, status, count, lowest in rows:
        entry = steps.setdefault((step, command), {"name": step, "command": command, "chunks_total": 0,
                                                   "chunks_by_status": {}})
        entry["chunks_total"] += count
        entry["chunks_by_status"][status] = count
        first[(step, command)] = min(first.get((step, command), lowest), lowest)
    return [steps[key] for key in sorted(steps, key=first.__getitem__)]


def chunks_of(task_id: int) -> list[dict[str, Any]]:
    """Every chunk of the task in index order, each with its attempts (three queries)."""
    history: dict[int, list[dict[str, Any]]] = defaultdict(list)
    attempts = (Attempt.select(Attempt, Worker.name.alias("worker_name"))
                .join(Chunk, on=(Attempt.chunk == Chunk.id))
                .switch(Attempt)
                .join(Worker, JOIN.LEFT_OUTER, on=(Attempt.worker == Worker.id))
                .where(Chunk.task == task_id)
                .order_by(Attempt.chunk, Attempt.number)
                .objects())
    for attempt in attempts:
        history[attempt.chunk_id].append(attempt_body(attempt, attempt.worker_name))
    chunks = (Chunk.select(Chunk, Worker.name.alias("worker_name"))
              .join(Worker, JOIN.LEFT_OUTER, on=(Chunk.worker == Worker.id))
              .where(Chunk.task == task_id)
              .order_by(Chunk.index)
              .objects())
    return [chunk_body(chunk, chunk.worker_name, history[chunk.id]) for chunk in chunks]


SUMMARY_COLUMNS = (Worker.id, Worker.name, Worker.activity, Worker.connection, Worker.current_task,
                   Worker.hostname, Worker.ip_address, Worker.port, Worker.status, Worker.system,
                   Worker.pools, Worker.commands, Worker.versions, Worker.last_heartbeat,
                   Worker.current_chunk, Worker.update_frequent, Worker.update_less_frequent,
                   Worker.operator_pools, Worker.pending_action, Worker.sleep_schedule, Worker.asleep)


def all_workers() -> list[Worker]:
    """Every worker with the list's columns only (no signing key, boot id, MAC address)."""
    return list(Worker.select(*SUMMARY_COLUMNS).order_by(Worker.name))


def get_worker(worker_id: int) -> Worker:
    worker = Worker.get_or_none(Worker.id == worker_id)
    if worker is None:
        raise NotFound("worker", worker_id)
    return worker


def register_worker(reg: WorkerRegistration, now: float) -> tuple[Worker, bool]:
    """Get the worker named ``reg.name``, creating it if unknown; tolerates the unique race."""
    existing = Worker.get_or_none(Worker.name == reg.name)
    if existing is not None:
        return existing, False
    try:
        with database_proxy.atomic():
            worker = Worker.create(
                name=reg.name, hostname=reg.hostname, system=reg.system,
                ip_address=reg.ip_address, port=reg.port, connection=ONLINE,
                last_heartbeat=now, registered_at=now,
            )
    except IntegrityError:
        return Worker.get(Worker.name == reg.name), False
    return worker, True


def files_of(task_id: int) -> list[str]:
    """Every output file the task's chunks reported, oldest chunk first."""
    files: list[str] = []
    rows = Chunk.select(Chunk.files).where(Chunk.task == task_id).order_by(Chunk.index).tuples()
    for (chunk_files,) in rows:
        files.extend(chunk_files or [])
    return files


def blocklist_of(task_id: int) -> list[dict[str, Any]]:
    """The workers that failed chunks of a task, and whether they are blocked from it."""
    rows = (Blocklist.select(Blocklist, Worker).join(Worker)
            .where(Blocklist.task == task_id).order_by(Worker.name))
    return [{"worker": row.worker.name, "worker_id": row.worker.id, "failures": row.failures,
             "blocked": row.blocked_at is not None, "blocked_at": row.blocked_at} for row in rows]


def chunk_of(task_id: int, chunk_id: int) -> dict[str, Any]:
    """One chunk of a task with its attempts (the task page follows a running chunk's log with it)."""
    chunk = (Chunk.select(Chunk, Worker.name.alias("worker_name"))
             .join(Worker, JOIN.LEFT_OUTER, on=(Chunk.worker == Worker.id))
             .where(Chunk.id == chunk_id, Chunk.task == task_id).objects().first())
    if chunk is None:
        raise NotFound("chunk", chunk_id)
    attempts = (Attempt.select(Attempt, Worker.name.alias("worker_name"))
                .join(Worker, JOIN.LEFT_OUTER, on=(Attempt.worker == Worker.id))
                .where(Attempt.chunk == chunk_id).order_by(Attempt.number).objects())
    return chunk_body(chunk, chunk.worker_name, [attempt_body(a, a.worker_name) for a in attempts])


def recent_attempts(worker_id: int, limit: int) -> list[dict[str, Any]]:
    """A worker's newest attempts, with the task and chunk each belonged to."""
    rows = (Attempt.select(Attempt, Chunk.task.alias("task_id"), Chunk.index.alias("chunk_index"))
            .join(Chunk, on=(Attempt.chunk == Chunk.id))
            .where(Attempt.worker == worker_id).order_by(Attempt.id.desc()).limit(limit).objects())
    return [{**attempt_body(row, None), "task_id": row.task_id, "chunk_id": row.chunk_id,
             "chunk_index": row.chunk_index} for row in rows]
