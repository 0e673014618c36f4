"""Every database statement the gateway runs.

The gateway reads anything but writes only two things: a new ``Task`` row and a
new ``Worker`` identity (and takes back a task row it could not hand over to
the dispatcher). Every later change is the dispatcher's.
"""
from __future__ import annotations

from collections import defaultdict, namedtuple
from typing import Any

from peewee import JOIN, IntegrityError, fn

from api_gateway.cache import Memo
from api_gateway.errors import Conflict
from api_gateway.inputs import NewTask, TaskQuery, WorkerRegistration
from api_gateway.paging import Position
from api_gateway.serialize import TASK_COLUMNS, attempt_body, chunk_body, json_column, task_row_body
from common.errors import NotFound
from common.models import ONLINE, QUEUED, Attempt, Blocklist, Chunk, Task, Worker, database_proxy


def get_task(task_id: int) -> Task:
    task = Task.get_or_none(Task.id == task_id)
    if task is None:
        raise NotFound("task", task_id)
    return task


# GET /tasks is the read a dashboard and a pipeline poll hardest, so its SQL is written out here
# rather than built by peewee per request, and its rows come back as plain tuples: building a
# query and a model per row cost four times what the database does (docs/benchmarks.md). Only
# names from fixed tuples (TASK_COLUMNS, the whitelisted sort) are spliced in; values are bound.
_TASK_LIST_SELECT = "SELECT " + ", ".join(f'"{c}"' for c in TASK_COLUMNS) + ' FROM "tasks"'
_NULLABLE_SORTS = ("started_at", "finished_at")  # never-started (or unfinished) tasks sort last


def _where(clauses: list[str]) -> str:
    return " WHERE " + " AND ".join(clauses) if clauses else ""


def _task_filter(query: TaskQuery, p: str) -> tuple[list[str], list[Any]]:
    """The filter's SQL conditions and their parameters (``p`` is the driver's placeholder)."""
    clauses: list[str] = []
    params: list[Any] = []
    if query.statuses:
        clauses.append(f'"status" IN ({", ".join([p] * len(query.statuses))})')
        params.extend(query.statuses)
    if query.type is not None:
        clauses.append(f'"type" = {p}')
        params.append(query.type)
    if query.search is not None:
        # The start of a client task_id, as an index range; or a task's own id.
        match = f'("client_task_id" >= {p} AND "client_task_id" < {p})'
        params.extend((query.search, query.search + "\U0010ffff"))
        if query.search.isdigit() and len(query.search) <= 18:
            match = f'({match} OR "id" = {p})'
            params.append(int(query.search))
        clauses.append(match)
    return clauses, params


def _after(query: TaskQuery, after: Position, p: str) -> tuple[str, list[Any]]:
    """The keyset condition: strictly after ``after`` in the query's order."""
    op = "<" if query.descending else ">"
    column, value, task_id = f'"{query.sort}"', after.value, after.id
    if query.sort == "id":
        return f'"id" {op} {p}', [task_id]
    if value is None:  # among the tasks without a value, which come last: only the id orders them
        return f'({column} IS NULL AND "id" {op} {p})', [task_id]
    clause = f'({column}, "id") {op} ({p}, {p})'
    if query.sort in _NULLABLE_SORTS:
        clause = f"({clause} OR {column} IS NULL)"
    return clause, [value, task_id]


def _task_order(query: TaskQuery) -> str:
    direction = "DESC" if query.descending else "ASC"
    nulls = " NULLS LAST" if query.sort in _NULLABLE_SORTS else ""
    tie = f', "id" {direction}' if query.sort != "id" else ""
    return f' ORDER BY "{query.sort}" {direction}{nulls}{tie}'


def task_list_sql(query: TaskQuery, p: str) -> tuple[str, list[Any]]:
    """The SQL of one page of ``query`` and its parameters, reading one row beyond the page."""
    clauses, params = _task_filter(query, p)
    if query.after is not None:
        clause, after_params = _after(query, query.after, p)
        clauses.append(clause)
        params.extend(after_params)
    sql = f"{_TASK_LIST_SELECT}{_where(clauses)}{_task_order(query)} LIMIT {p} OFFSET {p}"
    return sql, [*params, query.limit + 1, query.offset]


def list_tasks(query: TaskQuery) -> tuple[list[dict[str, Any]], bool]:
    """One page of task bodies in the query's order (newest first by default), ties broken by id.

    Returns ``(bodies, more)``: ``more`` says whether any task follows the page.
    """
    db = database_proxy.obj
    rows = db.execute_sql(*task_list_sql(query, db.param)).fetchall()
    return [task_row_body(row) for row in rows[:query.limit]], len(rows) > query.limit


_counts = Memo(ttl_s=1.0)


def _count(query: TaskQuery) -> int:
    db = database_proxy.obj
    clauses, params = _task_filter(query, db.param)
    return db.execute_sql(f'SELECT COUNT(*) FROM "tasks"{_where(clauses)}', params).fetchone()[0]


def count_tasks(query: TaskQuery, cache_s: float = 1.0) -> int:
    """How many tasks match the filter; up to ``cache_s`` old (paging totals need no more)."""
    if cache_s <= 0:
        return _count(query)
    key = (id(database_proxy.obj), query.statuses, query.type, query.search)
    return _counts.get(key, lambda: _count(query))


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


# The columns GET /workers lists (no signing key, boot id or MAC address), read as plain tuples
# for the same reason as the task list: a model per worker cost more than the query.
SUMMARY_COLUMNS = ("id", "name", "activity", "connection", "current_task", "hostname", "ip_address", "port",
                   "status", "system", "pools", "commands", "versions", "last_heartbeat", "current_chunk",
                   "update_frequent", "update_less_frequent", "operator_pools", "pending_action",
                   "sleep_schedule", "asleep")
WorkerRow = namedtuple("WorkerRow", SUMMARY_COLUMNS)  # type: ignore[misc]  # read like a Worker
_JSON_SUMMARY_COLUMNS = [SUMMARY_COLUMNS.index(name) for name in
                         ("pools", "commands", "versions", "update_frequent", "update_less_frequent",
                          "operator_pools", "sleep_schedule")]
_ALL_WORKERS_SQL = ("SELECT " + ", ".join(f'"{c}"' for c in SUMMARY_COLUMNS)
                    + ' FROM "workers" ORDER BY "name"')


def all_workers() -> list[WorkerRow]:
    """Every worker with the list's columns only, by name."""
    return [_worker_row(row) for row in database_proxy.obj.execute_sql(_ALL_WORKERS_SQL).fetchall()]


def _worker_row(row: tuple[Any, ...]) -> WorkerRow:
    values = list(row)
    for index in _JSON_SUMMARY_COLUMNS:
        if values[index] is not None:
            values[index] = json_column(values[index])
    return WorkerRow(*values)


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
