"""Opening the database and migrating its schema.

SQLite runs in WAL mode with a busy timeout so the gateway's readers never
block the dispatcher's writer. Migrations are numbered functions applied in
order inside a transaction; ``schema_version`` records what has run.
"""
from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from pathlib import Path

from peewee import Database, InterfaceError, OperationalError, PostgresqlDatabase, SqliteDatabase
from playhouse.db_url import parse as parse_url
from playhouse.migrate import SchemaMigrator
from playhouse.migrate import migrate as migrate_columns
from playhouse.shortcuts import ReconnectMixin

from common import models
from common.errors import ConfigError

log = logging.getLogger(__name__)

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "busy_timeout": 10_000,
    "foreign_keys": 1,
    # 32 MiB of page cache per connection (SQLite's default is 2 MiB): a million-chunk task's
    # index pages stay in memory while its windows are inserted.
    "cache_size": -32_768,
}


class ReconnectingPostgresqlDatabase(ReconnectMixin, PostgresqlDatabase):
    """Reconnects once when a query outside a transaction finds the server restarted."""

    reconnect_errors = (
        (OperationalError, "server closed the connection"),
        (OperationalError, "terminating connection"),
        (OperationalError, "connection to server"),
        (InterfaceError, "connection already closed"),
    )


def open_database(url: str) -> Database:
    """Connect the models to the database at ``url`` and return it."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        db: Database = SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, check_same_thread=False)
    elif url.startswith(("postgresql://", "postgres://")):
        parsed = parse_url(url.replace("postgres://", "postgresql://", 1))
        db = ReconnectingPostgresqlDatabase(**parsed)
    else:
        raise ConfigError(f"unsupported database URL {url!r}")
    models.database_proxy.initialize(db)
    return db


def _m1_initial(db: Database) -> None:
    db.create_tables(models.ALL_MODELS)


def _add_column_if_missing(db: Database, table: str, column: str, ddl: str) -> None:
    if column not in {c.name for c in db.get_columns(table)}:
        db.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN "{column}" {ddl}')


def _m_standby_dispatchers(db: Database) -> None:
    """The dispatcher leader row (dispatcher/leader.py) and the worker's departed boot."""
    db.create_tables([models.DispatcherLeader], safe=True)
    _add_column_if_missing(db, "workers", "departed_boot_id", "VARCHAR(64) NOT NULL DEFAULT ''")


def _m_sessions_and_listing_indexes(db: Database) -> None:
    """Web UI sessions and login codes; indexes for the tasks table's sort orders and the overview."""
    db.create_tables([models.Session, models.LoginCode], safe=True)
    for table, columns in (("tasks", ("priority",)), ("tasks", ("type", "id")), ("tasks", ("started_at",)),
                           ("tasks", ("finished_at",)), ("chunks", ("finished_at", "status", "frame_count")),
                           ("workers", ("status",))):
        name = f"idx_ui_{table}_{'_'.join(columns)}"
        cols = ", ".join(f'"{c}"' for c in columns)
        db.execute_sql(f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" ({cols})')
    # The overview's "tasks waiting and why": only the few tasks that wait are in this index.
    db.execute_sql('CREATE INDEX IF NOT EXISTS "idx_ui_tasks_waiting" ON "tasks" ("id") '
                   "WHERE waiting_reason <> ''")


def _m_agent_security(db: Database) -> None:
    """Enrollments, the farm's command key, and the replay guard on hellos (issue 14)."""
    db.create_tables([models.Enrollment, models.FarmSecret], safe=True)
    _add_column_if_missing(db, "workers", "hello_sent_at", "DOUBLE PRECISION")
    if models.FarmSecret.get_or_none(models.FarmSecret.name == "command_key") is None:
        models.FarmSecret.create(name="command_key", value=secrets.token_hex(32))


# Append only: a released migration never changes. Migration 1 creates every
# model's table as the models stand; later migrations must therefore be
# idempotent (add a column only if it is missing, create tables with safe=True)
# so that they are right both on databases made by an older release and on new ones.
def _m_farm_counts(db: Database) -> None:
    """The durable counters behind corral_chunks_finished_total and the chunk histograms."""
    db.create_tables([models.FarmCount], safe=True)


def _m_chunk_step(db: Database) -> None:
    """chunks.step: the job-type step a chunk belongs to (render, video, ...)."""
    if "step" not in {c.name for c in db.get_columns("chunks")}:
        migrator = SchemaMigrator.from_database(db)
        migrate_columns(migrator.add_column("chunks", "step", models.Chunk.step))


def _m_worker_control(db: Database) -> None:
    """Operator control of workers: pools set at runtime, a pending action, a sleep schedule."""
    present = {column.name for column in db.get_columns(models.Worker._meta.table_name)}
    fields = models.Worker._meta.fields
    wanted = ("operator_pools", "agent_pools", "pending_action", "sleep_schedule", "asleep")
    migrator = SchemaMigrator.from_database(db)
    migrate_columns(*(migrator.add_column(models.Worker._meta.table_name, name, fields[name])
                      for name in wanted if name not in present))


def _m_windowed_compile(db: Database) -> None:
    """tasks.compiled_upto, where a windowed compile resumes; chunk indexes a compile need not fill.

    The chunks' own task_id index goes ((task_id, index) serves it), and the
    lease, worker and finished-at indexes hold only the rows where those are set
    (models.CHUNK_PARTIAL_INDEXES): every chunk inserted paid for all four. The
    release order index gets its priority descending (models.RELEASE_ORDER_INDEX).
    """
    # 0 is right for every existing task: one compiled before windows existed is never resumed.
    _add_column_if_missing(db, "tasks", "compiled_upto", "INTEGER NOT NULL DEFAULT 0")
    replaced = ("chunk_task_id", "chunk_lease_id", "chunk_worker_id",
                "chunk_status_command_priority_task_id_index",
                "idx_ui_chunks_finished_at_status_frame_count")
    for name in replaced:
        db.execute_sql(f'DROP INDEX IF EXISTS "{name}"')
    for index in (*models.CHUNK_PARTIAL_INDEXES, models.RELEASE_ORDER_INDEX):
        db.execute_sql(*db.get_sql_context().sql(index.safe(True)).query())


def _m_task_list_indexes(db: Database) -> None:
    """The task list's newest-first and by-status-by-priority orders, served by an index each.

    Measured on the bench's 100,000 tasks: ``sort=-created_at`` 222 -> 0.8 ms a
    request, ``status=rendering&sort=-priority`` 7.7 -> 1.3 ms.
    """
    db.execute_sql('CREATE INDEX IF NOT EXISTS "idx_ui_tasks_created_at_id" ON "tasks" ("created_at", "id")')
    db.execute_sql('CREATE INDEX IF NOT EXISTS "idx_ui_tasks_status_priority_id" ON "tasks" '
                   '("status", "priority", "id")')


MIGRATIONS: list[Callable[[Database], None]] = [
    _m1_initial, _m_farm_counts, _m_chunk_step, _m_standby_dispatchers, _m_sessions_and_listing_indexes,
    _m_worker_control, _m_agent_security, _m_windowed_compile, _m_task_list_indexes]


def migrate(db: Database) -> int:
    """Apply every migration not yet applied; return the schema version."""
    db.create_tables([models.SchemaVersion], safe=True)
    # SQLite: take the write lock up front, so a second migrator waits (busy timeout)
    # instead of failing with "database is locked" when it tries to upgrade its lock.
    with db.atomic("IMMEDIATE") if isinstance(db, SqliteDatabase) else db.atomic():
        if isinstance(db, PostgresqlDatabase):
            # One migrator at a time across processes.
            db.execute_sql("SELECT pg_advisory_xact_lock(4242)")
        done = {row.version for row in models.SchemaVersion.select()}
        for number, step in enumerate(MIGRATIONS, start=1):
            if number in done:
                continue
            log.info("applying schema migration %d (%s)", number, step.__name__)
            step(db)
            models.SchemaVersion.create(version=number)
    return len(MIGRATIONS)


def open_and_migrate(url: str, attempts: int = 3) -> Database:
    """Open the database and bring its schema up to date."""
    db = open_database(url)
    for attempt in range(attempts):
        try:
            migrate(db)
            break
        except OperationalError:
            # Another process created the tables at the same instant.
            if attempt == attempts - 1:
                raise
    if not db.is_closed():
        db.close()
    return db
