"""Rows to JSON-ready dicts: the response bodies ``docs/api.md`` describes."""
from __future__ import annotations

from typing import Any

import msgspec

from common.models import Attempt, Chunk, Task, Worker

# The task body, field by field: (key in the answer, column of the ``tasks`` table). Both the
# body of one task (from a model) and the rows of ``GET /tasks`` (from plain tuples) follow it.
TASK_FIELDS = (
    ("id", "id"), ("task_id", "client_task_id"), ("type", "type"), ("parser", "parser"),
    ("worker_id", "worker_id"), ("priority", "priority"), ("pool", "pool"),
    ("frame_start", "frame_start"), ("frame_end", "frame_end"), ("frame_current", "frame_current"),
    ("frames_total", "frames_total"), ("frames_done", "frames_done"), ("status", "status"),
    ("format", "format"), ("settings", "settings"), ("max_retries", "max_retries"),
    ("stall_timeout", "stall_timeout_s"), ("blocklist_threshold", "blocklist_threshold"),
    ("error", "error"), ("waiting_reason", "waiting_reason"), ("created_at", "created_at"),
    ("started_at", "started_at"), ("finished_at", "finished_at"),
)
TASK_KEYS = tuple(key for key, _ in TASK_FIELDS)
TASK_COLUMNS = tuple(column for _, column in TASK_FIELDS)


json_column = msgspec.json.Decoder().decode  # a JSON column's text, read 2-3x faster than json.loads


def task_body(task: Task) -> dict[str, Any]:
    return {key: getattr(task, column) for key, column in TASK_FIELDS}


def task_row_body(row: tuple[Any, ...]) -> dict[str, Any]:
    """A task body from a row of ``TASK_COLUMNS`` as the driver returns it (settings still JSON text)."""
    body = dict(zip(TASK_KEYS, row, strict=True))
    body["settings"] = json_column(body["settings"])
    return body


def chunk_body(chunk: Chunk, worker_name: str | None,
               attempts: list[dict[str, Any]]) -> dict[str, Any]:
    frames = chunk.frames or []
    return {
        "id": chunk.id,
        "index": chunk.index,
        "step": chunk.step,
        "command": chunk.command,
        "frames": frames,
        "frame_start": frames[0][0] if frames else None,
        "frame_end": frames[-1][1] if frames else None,
        "frame_count": chunk.frame_count,
        "frames_done": len(chunk.frames_done or []),
        "status": chunk.status,
        "attempts": chunk.attempts,
        "failures": chunk.failures,
        "worker": worker_name,
        "worker_id": chunk.worker_id,
        "started_at": chunk.started_at,
        "finished_at": chunk.finished_at,
        "log_tail": chunk.log_tail,
        "error": chunk.error,
        "files": chunk.files,
        "depends_on": chunk.depends_on,
        "attempts_history": attempts,
    }


def attempt_body(attempt: Attempt, worker_name: str | None) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "worker": worker_name,
        "outcome": attempt.outcome,
        "started_at": attempt.started_at,
        "finished_at": attempt.finished_at,
        "exit_code": attempt.exit_code,
        "reason": attempt.reason,
        "log_tail": attempt.log_tail,
    }


def worker_summary(worker: Any) -> dict[str, Any]:
    """A worker as the Manager document's ``GET /workers`` lists it, plus Corral's fields."""
    return {
        "activity": worker.activity,
        "connection": worker.connection,
        "current_task": worker.current_task,
        "hostname": worker.hostname,
        "id": worker.id,
        "ip_address": worker.ip_address,
        "log": None,
        "port": worker.port,
        "status": worker.status,
        "system": worker.system,
        "time_cost": None,
        "pools": worker.pools,
        "commands": worker.commands,
        "versions": worker.versions,
        "last_heartbeat": worker.last_heartbeat,
        "current_chunk": worker.current_chunk,
        "readings": readings(worker),
        **worker_control(worker),
    }


def worker_control(worker: Any) -> dict[str, Any]:
    """The operator's settings: who chose the pools, the action awaited, the sleep schedule."""
    return {
        "pools_set_by": "agent" if worker.operator_pools is None else "operator",
        "pending_action": worker.pending_action,
        "sleep_schedule": worker.sleep_schedule,
        "asleep": bool(worker.asleep),
    }


def readings(worker: Any) -> dict[str, Any]:
    """The headline machine readings of the heartbeats: CPU %, memory %, 1-minute load."""
    frequent, less = worker.update_frequent or {}, worker.update_less_frequent or {}
    load = frequent.get("load_average") or {}
    return {"cpu_percent": frequent.get("worker_cpu_percent"), "mem_percent": less.get("worker_mem_percent"),
            "load_1min": load.get("1min") if isinstance(load, dict) else None}


def worker_detail(worker: Worker) -> dict[str, Any]:
    return {
        "id": worker.id,
        "name": worker.name,
        "hostname": worker.hostname,
        "mac_address": worker.mac_address,
        "ip_address": worker.ip_address,
        "system": worker.system,
        "status": worker.status,
        "connection": worker.connection,
        "activity": worker.activity,
        "current_task": worker.current_task,
        "current_chunk": worker.current_chunk,
        "readings": readings(worker),
        "last_heartbeat": worker.last_heartbeat,
        "update_frequent": worker.update_frequent,
        "update_less_frequent": worker.update_less_frequent,
        "pools": worker.pools,
        "commands": worker.commands,
        "versions": worker.versions,
        **worker_control(worker),
    }
