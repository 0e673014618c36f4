"""Keyset paging of ``GET /tasks``: the opaque ``cursor`` a page hands out as ``next``.

A cursor names the last task of a page by its place in the order: the sort it
was made for, that task's value of the sort column and its id. The next page
starts strictly after that place, so it costs the same at task 100,000 as at
task 50 (an index seek, where ``offset`` walks every row it skips), and tasks
inserted or changed meanwhile never make a page repeat or skip the rows around
the place. A cursor holds only a position, nothing secret: it is not signed,
and any well-formed one is a valid place to start from.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from typing import Any

from common.errors import ValidationError

MAX_CURSOR_CHARS = 512
MAX_ID = 2**63 - 1
# The sort columns whose values are text, and those that may be null (never-started tasks).
TEXT_SORTS = ("status", "type")
NUMBER_SORTS = ("created_at", "started_at", "finished_at")
NULLABLE_SORTS = ("started_at", "finished_at")


@dataclasses.dataclass(frozen=True)
class Position:
    """Where a page ended: the sort column's value of its last task, and that task's id."""

    value: Any
    id: int


def encode(sort: str, descending: bool, position: Position) -> str:
    """The cursor for ``position`` in the order ``sort`` (``-`` in front when descending)."""
    raw = json.dumps([_sort_key(sort, descending), position.value, position.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(cursor: str, sort: str, descending: bool) -> Position:
    """The position ``cursor`` names; ``ValidationError`` on ``cursor`` if it is not one for this sort."""
    if len(cursor) > MAX_CURSOR_CHARS:
        raise ValidationError("cursor", f"must be at most {MAX_CURSOR_CHARS} characters")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        made_for, value, task_id = json.loads(raw, parse_constant=_refuse_constant)
    except (binascii.Error, ValueError, TypeError):
        raise ValidationError("cursor", "is not a cursor this API handed out (use a page's next)") from None
    wanted = _sort_key(sort, descending)
    if made_for != wanted:
        raise ValidationError("cursor", f"was made for sort={made_for!r}; it cannot page sort={wanted!r}")
    if not _is_int(task_id) or not 1 <= task_id <= MAX_ID:
        raise ValidationError("cursor", "names no task id")
    if not _fits(sort, value):
        raise ValidationError("cursor", f"holds a value that is not a {sort}")
    return Position(value, task_id)


def _sort_key(sort: str, descending: bool) -> str:
    return f"-{sort}" if descending else sort


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fits(sort: str, value: Any) -> bool:
    """Whether ``value`` can be a value of the sort column (so the query never sees a wrong type)."""
    if value is None:
        return sort in NULLABLE_SORTS
    if sort in TEXT_SORTS:
        return isinstance(value, str) and len(value) <= 64
    if sort in NUMBER_SORTS:
        return (_is_int(value) and abs(value) <= MAX_ID) or isinstance(value, float)
    return _is_int(value) and abs(value) <= MAX_ID  # id, priority
