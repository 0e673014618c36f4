"""Peewee models: the farm's durable state.

Who writes what (see docs/architecture.md): the gateway only inserts new
``Task`` rows and new ``Worker`` identities; every later change of a task,
chunk or worker is the dispatcher's.
"""
from __future__ import annotations

import json
import time
from typing import Any

from peewee import (
    AutoField,
    BooleanField,
    CharField,
    DatabaseProxy,
    DoubleField,
    ForeignKeyField,
    IntegerField,
    Model,
    ModelIndex,
    TextField,
)

database_proxy = DatabaseProxy()

# Task statuses
QUEUED, RENDERING, PAUSED, COMPLETED, FAILED, CANCELED = (
    "queued", "rendering", "paused", "completed", "failed", "canceled")
TASK_STATUSES = (QUEUED, RENDERING, PAUSED, COMPLETED, FAILED, CANCELED)
TASK_FINAL = (COMPLETED, FAILED, CANCELED)

# Chunk statuses (COMPLETED, FAILED and CANCELED are shared with tasks)
BLOCKED, PENDING, RELEASED, RUNNING = "blocked", "pending", "released", "running"
CHUNK_STATUSES = (BLOCKED, PENDING, RELEASED, RUNNING, COMPLETED, FAILED, CANCELED)
CHUNK_FINAL = (COMPLETED, FAILED, CANCELED)

# Worker fields
ENABLED, DISABLED = "enabled", "disabled"
ONLINE, OFFLINE = "online", "offline"


class JSONField(TextField):
    """A JSON document stored as text (portable across SQLite and PostgreSQL)."""

    def db_value(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"))

    def python_value(self, value: str | None) -> Any:
        return None if value is None else json.loads(value)


class BaseModel(Model):
    class Meta:
        database = database_proxy


class Worker(BaseModel):
    id = AutoField()
    name = CharField(max_length=200, unique=True)
    hostname = CharField(max_length=255, default="")
    system = CharField(max_length=255, default="")
    ip_address = CharField(max_length=64, default="")
    mac_address = CharField(max_length=64, default="")
    port = IntegerField(null=True)
    pools = JSONField(default=list)
    commands = JSONField(default=list)
    versions = JSONField(default=dict)
    boot_id = CharField(max_length=64, default="")
    # The boot that said goodbye: its heartbeats still in flight must not bring the worker back.
    departed_boot_id = CharField(max_length=64, default="")
    signing_key = CharField(max_length=64, null=True)  # hex; issued to the agent's current boot
    hello_sent_at = DoubleField(null=True)  # of the last accepted hello: an older one is a replay
    status = CharField(max_length=16, default=ENABLED)
    connection = CharField(max_length=16, default=OFFLINE, index=True)
    activity = CharField(max_length=255, null=True)
    current_task = IntegerField(null=True)
    current_chunk = IntegerField(null=True)
    current_lease = CharField(max_length=64, null=True)
    last_heartbeat = DoubleField(null=True)
    update_frequent = JSONField(default=dict)
    update_less_frequent = JSONField(default=dict)
    registered_at = DoubleField(default=time.time)
    # Operator control (migration _m_worker_control). ``pools`` above is what scheduling uses: the
    # operator's ``operator_pools`` when set, else the agent's own ``agent_pools``.
    operator_pools = JSONField(null=True)
    agent_pools = JSONField(null=True)
    pending_action = CharField(max_length=16, null=True)  # stop | stop_now | restart
    sleep_schedule = JSONField(null=True)  # common.schedule form
    asleep = BooleanField(default=False)  # inside its sleep window, as the dispatcher last judged

    class Meta:
        table_name = "workers"


class Task(BaseModel):
    id = AutoField()
    client_task_id = CharField(max_length=200, null=True, unique=True)
    type = CharField(max_length=64)
    parser = CharField(max_length=64)
    settings = JSONField()
    pool = CharField(max_length=64, default="default")
    priority = IntegerField(default=50)
    status = CharField(max_length=16, default=QUEUED, index=True)
    compiled = BooleanField(default=False, index=True)
    # Chunks of the compile already inserted (indices 0..compiled_upto-1): where a windowed
    # compile resumes (dispatcher.tasks.compile_window). Migration _m_windowed_compile.
    compiled_upto = IntegerField(default=0)
    frame_start = IntegerField()
    frame_end = IntegerField()
    frame_current = IntegerField(null=True)
    frames_total = IntegerField(default=0)
    frames_done = IntegerField(default=0)
    format = CharField(max_length=32, default="")
    max_retries = IntegerField(default=3)
    stall_timeout_s = IntegerField(default=0)  # 0: no stall detection
    blocklist_threshold = IntegerField(default=3)
    waiting_reason = TextField(default="")  # why pending chunks cannot be released, if they cannot
    worker = ForeignKeyField(Worker, null=True, backref="tasks", on_delete="SET NULL")
    error = TextField(default="")
    created_at = DoubleField(default=time.time)
    started_at = DoubleField(null=True)
    finished_at = DoubleField(null=True)

    class Meta:
        table_name = "tasks"
        indexes = ((("status", "id"), False),)  # GET /tasks?status=... newest first


class Chunk(BaseModel):
    id = AutoField()
    # No index of its own: (task, index) below serves every lookup by task.
    task = ForeignKeyField(Task, backref="chunks", on_delete="CASCADE", index=False)
    index = IntegerField()
    command = CharField(max_length=64)
    parser = CharField(max_length=64, null=True)  # None: the task's parser
    params = JSONField(default=dict)
    frames = JSONField()  # inclusive [first, last] ranges
    frame_count = IntegerField()
    frames_done = JSONField(default=list)
    depends_on = JSONField(default=list)  # indices of chunks of the same task
    step = CharField(max_length=64, default="")  # the job type's step (render, video, ...)
    status = CharField(max_length=16, default=PENDING)
    priority = IntegerField(default=50)
    attempts = IntegerField(default=0)
    failures = IntegerField(default=0)
    lease_id = CharField(max_length=64, null=True)  # indexed where set: see CHUNK_PARTIAL_INDEXES
    # A worker row is never deleted, so SET NULL never has to look chunks up by worker.
    worker = ForeignKeyField(Worker, null=True, backref="chunks", on_delete="SET NULL", index=False)
    files = JSONField(default=list)
    released_at = DoubleField(null=True)
    started_at = DoubleField(null=True)
    finished_at = DoubleField(null=True)
    log_tail = TextField(default="")
    error = TextField(default="")

    class Meta:
        table_name = "chunks"
        indexes = (
            (("task", "index"), True),
            (("task", "status", "command"), False),  # "does this task have pending X chunks?"
        )


# The release order (dispatcher/release.py: priority DESC, task, index) read straight off the
# index: with priority ascending in it, SQLite sorted every pending chunk of a priority to
# find the first few (0.7 s per release with a million-chunk task pending).
RELEASE_ORDER_INDEX = ModelIndex(
    Chunk, (Chunk.status, Chunk.command, Chunk.priority.desc(), Chunk.task, Chunk.index),
    name="chunks_release_order")
Chunk.add_index(RELEASE_ORDER_INDEX)


# Indexes on columns a new chunk leaves NULL hold only the rows where they are set: a
# million-chunk compile inserts into none of them, and every query on them names a value
# (``lease_id = ?``, ``worker_id = ?``, ``finished_at >= ?``), which implies NOT NULL.
CHUNK_PARTIAL_INDEXES = (
    ModelIndex(Chunk, (Chunk.lease_id,), name="chunks_lease_id_set", where=Chunk.lease_id.is_null(False)),
    ModelIndex(Chunk, (Chunk.worker,), name="chunks_worker_id_set", where=Chunk.worker.is_null(False)),
    # The overview's frames rendered in the last hour.
    ModelIndex(Chunk, (Chunk.finished_at, Chunk.status, Chunk.frame_count), name="chunks_finished",
               where=Chunk.finished_at.is_null(False)),
)
for _index in CHUNK_PARTIAL_INDEXES:
    Chunk.add_index(_index)


class Attempt(BaseModel):
    """One run of a chunk on one agent; kept for the task's history."""

    id = AutoField()
    chunk = ForeignKeyField(Chunk, backref="attempt_rows", on_delete="CASCADE")
    number = IntegerField()
    lease_id = CharField(max_length=64, unique=True)
    worker = ForeignKeyField(Worker, null=True, on_delete="SET NULL")
    outcome = CharField(max_length=16, default=RUNNING)
    started_at = DoubleField(null=True)
    finished_at = DoubleField(null=True)
    exit_code = IntegerField(null=True)
    reason = TextField(default="")
    log_tail = TextField(default="")

    class Meta:
        table_name = "attempts"


class Blocklist(BaseModel):
    """Failures of one worker on one task; at the task's threshold the worker is blocked."""

    id = AutoField()
    task = ForeignKeyField(Task, backref="blocklist", on_delete="CASCADE")
    worker = ForeignKeyField(Worker, on_delete="CASCADE")
    failures = IntegerField(default=0)
    blocked_at = DoubleField(null=True)

    class Meta:
        table_name = "blocklist"
        indexes = ((("task", "worker"), True),)


class Token(BaseModel):
    """An API token: only its SHA-256 is stored; the secret is shown once at creation."""

    id = AutoField()
    name = CharField(max_length=100)
    scopes = JSONField(default=list)
    token_hash = CharField(max_length=64, unique=True)
    created_at = DoubleField(default=time.time)
    expires_at = DoubleField(null=True)
    revoked_at = DoubleField(null=True)
    last_used_at = DoubleField(null=True)

    class Meta:
        table_name = "tokens"


class Enrollment(BaseModel):
    """A node enrolled by an operator: its name, the pools it may serve, its credential's key.

    ``node_key`` is derived one-way from the credential (common/enrollment.py); the
    credential itself is shown once, at enrollment, and never stored.
    """

    id = AutoField()
    name = CharField(max_length=200, unique=True)
    node_key = CharField(max_length=64)
    pools = JSONField(default=list)  # empty: any pool
    created_at = DoubleField(default=time.time)
    revoked_at = DoubleField(null=True, index=True)

    class Meta:
        table_name = "enrollments"


class FarmSecret(BaseModel):
    """Secrets the manager side shares through the database, e.g. the command key."""

    name = CharField(max_length=64, primary_key=True)
    value = CharField(max_length=128)

    class Meta:
        table_name = "farm_secrets"


class DispatcherLeader(BaseModel):
    """Which dispatcher of a namespace is active (dispatcher/leader.py).

    ``epoch`` grows by one at every takeover; the active dispatcher checks it in
    every transaction it commits, so a paused old leader can never commit.
    """

    namespace = CharField(max_length=64, primary_key=True)
    epoch = IntegerField(default=0)
    holder = CharField(max_length=255, default="")  # host:pid:id of the active dispatcher
    acquired_at = DoubleField(default=0.0)
    renewed_at = DoubleField(default=0.0)
    expires_at = DoubleField(default=0.0)

    class Meta:
        table_name = "dispatcher_leader"


class Session(BaseModel):
    """A browser session (web UI): only the SHA-256 of its cookie is stored.

    The scopes are those of the token behind it, read again on every request, so
    revoking the token ends its sessions. ``token_id`` is None for the bootstrap
    admin token (``CORRAL_ADMIN_TOKEN``), which has no row.
    """

    id = AutoField()
    session_hash = CharField(max_length=64, unique=True)
    csrf_token = CharField(max_length=64)
    token = ForeignKeyField(Token, null=True, on_delete="CASCADE")
    name = CharField(max_length=100)
    scopes = JSONField(default=list)
    created_at = DoubleField(default=time.time)
    expires_at = DoubleField(index=True)

    class Meta:
        table_name = "sessions"


class LoginCode(BaseModel):
    """A short-lived, single-use code that ``corral up`` prints in a login link."""

    id = AutoField()
    code_hash = CharField(max_length=64, unique=True)
    token = ForeignKeyField(Token, null=True, on_delete="CASCADE")
    name = CharField(max_length=100)
    scopes = JSONField(default=list)
    expires_at = DoubleField()

    class Meta:
        table_name = "login_codes"


class SchemaVersion(BaseModel):
    version = IntegerField(primary_key=True)
    applied_at = DoubleField(default=time.time)

    class Meta:
        table_name = "schema_version"


class FarmCount(BaseModel):
    """A durable farm counter or histogram bucket (common/farmstats.py), summed by the dispatcher.

    Written in the same transaction as the state change it counts, so it is exact
    under redelivery and failover; the gateway reads the few rows at scrape time.
    """

    id = AutoField()
    metric = CharField(max_length=32)
    first = CharField(max_length=64, default="")  # the first label's value (command or pool)
    second = CharField(max_length=64, default="")  # the second label's value (outcome or phase)
    le = DoubleField(default=0.0)  # a histogram bucket's upper bound; 0 for counters and sums
    value = DoubleField(default=0.0)

    class Meta:
        table_name = "farm_counts"
        indexes = ((("metric", "first", "second", "le"), True),)


ALL_MODELS = (Worker, Task, Chunk, Attempt, Blocklist, Token, FarmCount, Enrollment, FarmSecret)
