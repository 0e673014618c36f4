"""What each request may carry, checked before anything touches the database.

Every function takes a parsed ``Body`` (or the request's query) and returns
plain values, or raises ``ValidationError`` naming the first bad field.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import Any

import falcon

from api_gateway import paging
from api_gateway.media import Body, check_text, parse_json, query_int
from common import jobtypes, schedule
from common.config import Config
from common.errors import ValidationError
from common.messages import WORKER_ACTIONS
from common.models import DISABLED, ENABLED, PAUSED, QUEUED, TASK_STATUSES

POOL_RE = re.compile(r"^[a-z0-9_-]{1,32}$")
WORKER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,199}$")
MAX_CLIENT_TASK_ID = 200
TASK_FIELDS = ("type", "settings", "parser", "priority", "task_id", "pool", "max_retries", "stall_timeout",
               "blocklist_threshold")
MAX_STALL_TIMEOUT_S = 7 * 24 * 3600
TASK_PATCH_STATUSES = (PAUSED, QUEUED)
WORKER_FIELDS = ("hostname", "system", "name", "ip_address", "port")
# Operator control of a worker, and the activity reports of legacy workers.
WORKER_CONTROL = (ENABLED, DISABLED)
WORKER_ACTIVITY = ("rendering", "available")
LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX = 50, 500
MAX_OFFSET = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class NewTask:
    """A checked task submission, ready to become a ``Task`` row."""

    type: str
    parser: str
    priority: int
    pool: str
    max_retries: int
    stall_timeout_s: int
    blocklist_threshold: int
    client_task_id: str | None
    validated: jobtypes.Validated


def parse_submission(body: Body, config: Config) -> NewTask:
    body.reject_unknown(TASK_FIELDS)
    if body.get("type") is None:
        raise ValidationError("type", "is required")
    ttype = jobtypes.task_type(body.get("type"), config.job_types_dir)
    validated = jobtypes.validate(ttype, _settings(body.get("settings")))
    jobtypes.check_paths(ttype, validated.settings, config.resolved_storage_roots)
    return NewTask(
        type=ttype.name,
        parser=jobtypes.resolve_parser(ttype, body.get("parser")),
        priority=_or(body.integer("priority", 0, 100), config.default_priority),
        pool=body.string("pool", 32, pattern=POOL_RE) or "default",
        max_retries=_or(body.integer("max_retries", 0, 100), config.default_max_retries),
        stall_timeout_s=_or(body.integer("stall_timeout", 0, MAX_STALL_TIMEOUT_S), 0),
        blocklist_threshold=_or(body.integer("blocklist_threshold", 0, 1000), 3),
        client_task_id=_client_task_id(body.get("task_id")),
        validated=validated,
    )


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def _settings(value: Any) -> dict[str, Any]:
    if value is None:
        raise ValidationError("settings", "is required")
    if isinstance(value, str):
        value = parse_json(value, "settings")
    if not isinstance(value, dict):
        raise ValidationError("settings", "must be a JSON object (or a string holding one)")
    return value


def _client_task_id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) >= 10**18:
            raise ValidationError("task_id", "must have at most 18 digits")
        return str(value)
    return check_text("task_id", value, MAX_CLIENT_TASK_ID)


@dataclasses.dataclass(frozen=True)
class TaskChange:
    priority: int | None
    status: str | None


def parse_task_patch(body: Body) -> TaskChange:
    body.reject_unknown(("priority", "status"))
    priority = body.integer("priority", 0, 100)
    status = body.get("status")
    if status is not None and status not in TASK_PATCH_STATUSES:
        raise ValidationError("status", "must be paused or queued")
    if priority is None and status is None:
        raise ValidationError("body", "give priority and/or status")
    return TaskChange(priority, status)


@dataclasses.dataclass(frozen=True)
class WorkerRegistration:
    name: str
    hostname: str
    system: str
    ip_address: str
    port: int | None


def parse_worker_registration(body: Body) -> WorkerRegistration:
    body.reject_unknown(WORKER_FIELDS)
    hostname = _required_text(body, "hostname", 255)
    system = _required_text(body, "system", 255)
    name = body.string("name", 200, pattern=WORKER_NAME_RE)
    if name is None:
        if not WORKER_NAME_RE.match(hostname):
            raise ValidationError("name", "is required when hostname is not a valid worker name "
                                          f"({WORKER_NAME_RE.pattern})")
        name = hostname
    return WorkerRegistration(name, hostname, system, _ip_address(body.get("ip_address")),
                              body.integer("port", 0, 65535))


def _required_text(body: Body, name: str, max_chars: int) -> str:
    value = body.get(name)
    if value is None:
        raise ValidationError(name, "is required")
    return check_text(name, value, max_chars)


def _ip_address(value: Any) -> str:
    if value is None:
        return ""
    text = check_text("ip_address", value, 64)
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValidationError("ip_address", "must be an IPv4 or IPv6 address") from None


@dataclasses.dataclass(frozen=True)
class WorkerChange:
    """A checked ``PATCH /workers/{id}``; its fields are those of ``WorkerUpdate``."""

    status: str | None = None
    activity: str | None = None
    pools: list[str] | None = None
    pools_reset: bool = False
    action: str | None = None
    action_clear: bool = False
    sleep_schedule: dict[str, Any] | None = None
    sleep_schedule_clear: bool = False


WORKER_PATCH_FIELDS = ("status", "pools", "action", "sleep_schedule")
MAX_POOLS = 16


def parse_worker_patch(body: Body) -> WorkerChange:
    """``status`` (forms may send only this), ``pools``, ``action``, ``sleep_schedule``; at least one.

    ``null`` is meaningful for the last three: back to the agent's own pools,
    withdraw a pending action, clear the schedule.
    """
    body.reject_unknown(("status",) if body.form else WORKER_PATCH_FIELDS)
    if not any(name in body.fields for name in WORKER_PATCH_FIELDS):
        raise ValidationError("body", f"give at least one of {', '.join(WORKER_PATCH_FIELDS)}")
    change = WorkerChange(**_worker_status(body.get("status")))
    fields = body.fields
    if "pools" in fields:
        pools = _pools(fields["pools"])
        change = dataclasses.replace(change, pools=pools, pools_reset=pools is None)
    if "action" in fields:
        action = fields["action"]
        if action is not None and action not in WORKER_ACTIONS:
            raise ValidationError("action", f"must be one of {', '.join(WORKER_ACTIONS)}, or null")
        change = dataclasses.replace(change, action=action, action_clear=action is None)
    if "sleep_schedule" in fields:
        raw = fields["sleep_schedule"]
        stored = None if raw is None else schedule.parse(raw).to_json()
        change = dataclasses.replace(change, sleep_schedule=stored, sleep_schedule_clear=stored is None)
    return change


def _worker_status(status: Any) -> dict[str, str]:
    if status is None:
        return {}
    if status in WORKER_CONTROL:
        return {"status": status}
    if status in WORKER_ACTIVITY:
        return {"activity": status}
    raise ValidationError("status", f"must be one of {', '.join(WORKER_CONTROL + WORKER_ACTIVITY)}")


def _pools(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_POOLS:
        raise ValidationError("pools", f"must be a list of 1 to {MAX_POOLS} pool names, or null")
    for index, pool in enumerate(value):
        if not isinstance(pool, str) or not POOL_RE.match(pool):
            raise ValidationError(f"pools[{index}]", f"must be a pool name matching {POOL_RE.pattern}")
        if pool in value[:index]:
            raise ValidationError(f"pools[{index}]", f"{pool!r} is given twice")
    return list(value)


# Orders GET /tasks can be sorted by (``sort=priority`` ascending, ``sort=-priority`` descending).
TASK_SORTS = ("id", "priority", "status", "type", "created_at", "started_at", "finished_at")
MAX_SEARCH_CHARS = 200


@dataclasses.dataclass(frozen=True)
class TaskQuery:
    statuses: tuple[str, ...]
    type: str | None
    limit: int
    offset: int
    search: str | None = None  # a task id, or the start of a client task_id
    sort: str = "id"
    descending: bool = True
    after: paging.Position | None = None  # from ``cursor``: the page starts after this task


def parse_task_query(req: falcon.Request, job_types_dir: str = "") -> TaskQuery:
    statuses: tuple[str, ...] = ()
    raw_status = req.get_param("status")
    if raw_status:
        statuses = tuple(s.strip() for s in raw_status.split(","))
        for status in statuses:
            if status not in TASK_STATUSES:
                raise ValidationError("status", f"must be among {', '.join(TASK_STATUSES)}")
    ttype = req.get_param("type") or None
    if ttype is not None:
        ttype = jobtypes.task_type(ttype, job_types_dir).name
    limit = query_int(req, "limit", LIST_LIMIT_DEFAULT, 1, LIST_LIMIT_MAX)
    offset = query_int(req, "offset", 0, 0, MAX_OFFSET)
    search = (req.get_param("q") or "").strip() or None
    if search is not None:
        search = check_text("q", search, MAX_SEARCH_CHARS)
    sort = req.get_param("sort") or "-id"
    if sort.lstrip("-") not in TASK_SORTS:
        raise ValidationError("sort", f"must be one of {', '.join(TASK_SORTS)} (- in front: descending)")
    column, descending = sort.lstrip("-"), sort.startswith("-")
    after = None
    cursor = req.get_param("cursor")
    if cursor is not None:
        if offset:
            raise ValidationError("cursor", "cannot be combined with offset (a cursor says where to start)")
        after = paging.decode(cursor, column, descending)
    return TaskQuery(statuses, ttype, limit, offset, search, column, descending, after)
