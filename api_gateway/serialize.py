"""Rows to JSON-ready dicts: the response bodies ``docs/api.md`` describes."""
from __future__ import annotations

from typing import Any

from common.models import Attempt, Chunk, Task, Worker


def task_body(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "task_id": task.client_task_id,
        "type": task.type,
        "parser": task.parser,
        "worker_id": task.worker_id,
        "priority": task.priority,
        "pool": task.pool,
        "frame_start": task.frame_start,
        "frame_end": task.frame_end,
        "frame_current": task.frame_current,
        "frames_total": task.frames_total,
        "frames_done": task.frames_done,
        "status": task.status,
        "format": task.format,
        "settings": task.settings,
        "max_retries": task.max_retries,
        "stall_timeout": task.stall_timeout_s,
        "blocklist_threshold": task.blocklist_threshold,
        "error": task.error,
        "waiting_reason": task.waiting_reason,
        "created_at": task.created_at,
        "started_at": task.started_at,
        "finished_at": task.finished_at,
    }


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


def worker_summary(worker: Worker) -> dict[str, Any]:
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


def worker_control(worker: Worker) -> dict[str, Any]:
    """The operator's settings: who chose the pools, the action awaited, the sleep schedule."""
    return {
        "pools_set_by": "agent" if worker.operator_pools is None else "operator",
        "pending_action": worker.pending_action,
        "sleep_schedule": worker.sleep_schedule,
        "asleep": bool(worker.asleep),
    }


def readings(worker: Worker) -> dict[str, Any]:
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
