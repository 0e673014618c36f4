"""Every message that crosses the broker, defined once.

A message on the wire is a JSON object (content type ``application/json``)::

    {"kind": "chunk.finished", "version": 1, "data": {...fields...}}

``kind`` is also the routing key on the events exchange. Schemas grow only by
adding fields with defaults; decoders ignore fields they do not know, so an
older dispatcher reads a newer agent's messages. ``docs/protocol.md`` is the
prose form of this module.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import msgspec

from common.errors import MessageError

_REGISTRY: dict[str, type[Message]] = {}


@dataclasses.dataclass(frozen=True)
class Message:
    """Base of every broker message; subclasses set ``kind`` and ``version``."""

    kind: ClassVar[str] = ""
    version: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            _REGISTRY[cls.kind] = cls


# ---------------------------------------------------------------- gateway -> dispatcher


@dataclasses.dataclass(frozen=True)
class TaskSubmitted(Message):
    """A task row was recorded by the gateway; the dispatcher compiles it."""

    kind: ClassVar[str] = "task.submitted"
    task_id: int


@dataclasses.dataclass(frozen=True)
class TaskUpdate(Message):
    """An operator changes a task's priority and/or pauses or resumes it."""

    kind: ClassVar[str] = "task.update"
    task_id: int
    priority: int | None = None
    status: str | None = None  # "paused" or "queued" (resume)


@dataclasses.dataclass(frozen=True)
class TaskCancel(Message):
    """An operator cancels a task."""

    kind: ClassVar[str] = "task.cancel"
    task_id: int


@dataclasses.dataclass(frozen=True)
class TaskBlocklistClear(Message):
    """An operator lets blocklisted agents take a task's chunks again (all, or one worker)."""

    kind: ClassVar[str] = "task.blocklist_clear"
    task_id: int
    worker_id: int | None = None


@dataclasses.dataclass(frozen=True)
class TaskRetry(Message):
    """An operator runs a task's failed chunks again; a failed task goes back to work."""

    kind: ClassVar[str] = "task.retry"
    task_id: int


@dataclasses.dataclass(frozen=True)
class WorkerUpdate(Message):
    """An operator (or a legacy worker) changes a worker's status."""

    kind: ClassVar[str] = "worker.update"
    worker_id: int
    status: str | None = None  # enabled | disabled
    activity: str | None = None  # legacy "rendering" | "available" reports
    # Operator control (docs/operations.md). None means "no change" for each.
    pools: list[str] | None = None  # the pools the agent takes chunks from from now on
    pools_reset: bool = False  # go back to the pools the agent itself asked for
    action: str | None = None  # WORKER_ACTIONS: stop | stop_now | restart
    action_clear: bool = False  # withdraw a pending action the agent has not acted on
    sleep_schedule: dict[str, Any] | None = None  # common.schedule form
    sleep_schedule_clear: bool = False


WORKER_ACTIONS = ("stop", "stop_now", "restart")


# ---------------------------------------------------------------- agent -> dispatcher


@dataclasses.dataclass(frozen=True)
class AgentHello(Message):
    """An agent starts (or reconnects) and says who it is and what it can run."""

    kind: ClassVar[str] = "agent.hello"
    agent: str
    hostname: str
    system: str
    pools: list[str]
    commands: list[str]
    ip_address: str = ""
    mac_address: str = ""
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    pid: int = 0
    boot_id: str = ""  # new for every agent process; tells restarts apart
    sent_at: float = 0.0  # a signed hello older than a few minutes, or than the last one, is refused
    # The first readings, so a new worker shows them before its first heartbeat (as in heartbeats).
    update_frequent: dict[str, Any] = dataclasses.field(default_factory=dict)
    update_less_frequent: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class AgentHeartbeat(Message):
    """Periodic liveness and machine readings (psutil)."""

    kind: ClassVar[str] = "agent.heartbeat"
    agent: str
    sent_at: float
    boot_id: str = ""
    lease_id: str | None = None  # the chunk lease the agent holds, if any
    update_frequent: dict[str, Any] = dataclasses.field(default_factory=dict)
    update_less_frequent: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class AgentGoodbye(Message):
    """The agent is shutting down cleanly; it holds no chunk any more."""

    kind: ClassVar[str] = "agent.goodbye"
    agent: str
    reason: str = ""
    boot_id: str = ""


@dataclasses.dataclass(frozen=True)
class ChunkStarted(Message):
    """The agent took the chunk delivery for ``lease_id`` and started it."""

    kind: ClassVar[str] = "chunk.started"
    agent: str
    chunk_id: int
    lease_id: str
    started_at: float


@dataclasses.dataclass(frozen=True)
class ChunkProgress(Message):
    """Frames finished so far in this lease (cumulative, so duplicates are harmless)."""

    kind: ClassVar[str] = "chunk.progress"
    agent: str
    chunk_id: int
    lease_id: str
    frames_done: list[int]
    frame_current: int | None = None
    files: list[str] = dataclasses.field(default_factory=list)
    log_tail: str = ""


OUTCOMES = ("completed", "failed", "canceled", "declined")


@dataclasses.dataclass(frozen=True)
class ChunkFinished(Message):
    """The chunk's attempt ended; ``outcome`` is one of ``OUTCOMES``.

    ``declined`` hands the chunk back without counting a failure (the agent could
    not or should not run it, or it is shutting down). ``started_at`` is set when
    the agent sent no ``chunk.started`` for the attempt because it ended first
    (docs/protocol.md, "Taking a chunk").
    """

    kind: ClassVar[str] = "chunk.finished"
    agent: str
    chunk_id: int
    lease_id: str
    outcome: str
    finished_at: float
    frames_done: list[int] = dataclasses.field(default_factory=list)
    files: list[str] = dataclasses.field(default_factory=list)
    exit_code: int | None = None
    reason: str = ""
    log_tail: str = ""
    started_at: float | None = None


# ---------------------------------------------------------------- dispatcher -> agents


@dataclasses.dataclass(frozen=True)
class ChunkAssign(Message):
    """A unit of work on a chunk queue. ``lease_id`` is new for every release."""

    kind: ClassVar[str] = "chunk.assign"
    chunk_id: int
    task_id: int
    lease_id: str
    attempt: int
    command: str
    parser: str
    params: dict[str, Any]
    frames: list[list[int]]  # inclusive [first, last] ranges, in render order
    priority: int = 0
    exclude_agents: list[str] = dataclasses.field(default_factory=list)
    stall_timeout_s: int = 0  # kill and fail after this long with no output and no progress; 0: off


@dataclasses.dataclass(frozen=True)
class ControlHalt(Message):
    """Broadcast: stop chunks of ``task_id``. ``action`` is ``cancel`` or ``pause``.

    Agents kill running chunks of a canceled task and decline queued chunks of a
    halted task until a ``ControlResume`` arrives.
    """

    kind: ClassVar[str] = "control.halt"
    task_id: int
    action: str


@dataclasses.dataclass(frozen=True)
class ControlResume(Message):
    """Broadcast: chunks of ``task_id`` may run again."""

    kind: ClassVar[str] = "control.resume"
    task_id: int


@dataclasses.dataclass(frozen=True)
class ControlWelcome(Message):
    """To one agent: its signing key for this boot, wrapped with the farm's agent secret."""

    kind: ClassVar[str] = "control.welcome"
    agent: str
    boot_id: str
    nonce: str
    wrapped_key: str


@dataclasses.dataclass(frozen=True)
class ControlAbort(Message):
    """To one agent: kill the attempt holding ``lease_id`` (stale, canceled or reassigned)."""

    kind: ClassVar[str] = "control.abort"
    chunk_id: int
    lease_id: str
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class ControlPools(Message):
    """To one agent: take chunks from these pools from now on (re-subscribe, no restart)."""

    kind: ClassVar[str] = "control.pools"
    agent: str
    pools: list[str]


@dataclasses.dataclass(frozen=True)
class ControlStop(Message):
    """To one agent: leave the farm. ``mode`` is one of ``WORKER_ACTIONS``.

    ``stop``: finish the running chunk, take no more, say goodbye, exit 0.
    ``stop_now``: kill the running chunk, hand it back (``declined``), goodbye, exit 0.
    ``restart``: like ``stop``, then exit 75 so that a supervisor starts it again.
    """

    kind: ClassVar[str] = "control.stop"
    agent: str
    mode: str


@dataclasses.dataclass(frozen=True)
class ControlSleep(Message):
    """To one agent: its sleep schedule's window opened (``asleep``) or closed.

    While asleep the agent takes no chunk (it stops consuming its chunk queues
    and declines a delivery already in flight); a running chunk finishes.
    """

    kind: ClassVar[str] = "control.sleep"
    agent: str
    asleep: bool
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class ControlRevoke(Message):
    """To one agent: an operator revoked its enrollment; it stops at once and exits."""

    kind: ClassVar[str] = "control.revoke"
    agent: str
    reason: str = ""


# ---------------------------------------------------------------- dispatcher -> gateways


@dataclasses.dataclass(frozen=True)
class FarmChanged(Message):
    """After a commit: what it changed, for the gateways' ``GET /events`` (transient, best effort).

    Each change is ``{"type": "task"|"chunk"|"worker"|"heartbeats", ...}`` with
    ``id`` (task, chunk or worker id), ``task`` (a chunk's task, when known),
    ``name`` (a worker's name, when known) or ``count`` (heartbeats applied).
    ``committed_at`` is the dispatcher's clock at the (oldest) commit.
    """

    kind: ClassVar[str] = "farm.changed"
    changes: list[dict[str, Any]]
    committed_at: float = 0.0


# ---------------------------------------------------------------- codec
# msgspec encodes and validates the dataclasses above in C: the dispatcher decodes every event and
# heartbeat, so the codec is on its hottest path (about a tenth of the pure-Python cost).

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def encode(message: Message) -> bytes:
    """Serialise a message to its wire form."""
    return _encoder.encode({"kind": message.kind, "version": message.version, "data": message})


def decode(body: bytes | str | dict[str, Any]) -> Message:
    """Parse and validate a wire message; raise MessageError saying what is wrong."""
    if isinstance(body, dict):
        envelope: Any = body
    else:
        try:
            envelope = _decoder.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise MessageError(f"body is not JSON: {exc}") from None
    if not isinstance(envelope, dict):
        raise MessageError("body is not a JSON object")
    kind = envelope.get("kind")
    cls = _REGISTRY.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise MessageError(f"unknown message kind {kind!r}")
    version = envelope.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise MessageError(f"{kind}: version must be a positive integer")
    data = envelope.get("data")
    if not isinstance(data, dict):
        raise MessageError(f"{kind}: data must be an object")
    try:
        return msgspec.convert(data, cls, strict=True)
    except msgspec.ValidationError as exc:
        text = str(exc)
        if "missing required field" in text:
            raise MessageError(f"{kind}: field {_field_named(text)} is missing") from None
        raise MessageError(f"{kind}: field {_field_named(text)} has the wrong type ({text})") from None


def _field_named(error: str) -> str:
    """The top-level field a msgspec error is about: "... - at `$.frames_done[1]`" -> 'frames_done'."""
    if "`$." in error:
        return repr(error.split("`$.", 1)[1].split("`", 1)[0].split("[", 1)[0].split(".", 1)[0])
    if "field `" in error:
        return repr(error.split("field `", 1)[1].split("`", 1)[0])
    return "?"


def message_kinds() -> dict[str, type[Message]]:
    """Every registered message class by kind (used by docs tests)."""
    return dict(_REGISTRY)
