"""Hand-written SQL for the dispatcher's hot paths, portable across SQLite and PostgreSQL.

Statements are written once with ``?`` placeholders and turned into the
driver's style (``%s`` for psycopg2) the first time they run, so applying an
event costs its statements' execution and nothing for building SQL text.
"""
from __future__ import annotations

import functools
from typing import Any

from common.models import database_proxy


@functools.lru_cache(maxsize=256)
def _text(sql: str, param: str) -> str:
    return sql if param == "?" else sql.replace("?", param)


def execute(sql: str, params: tuple[Any, ...] = ()) -> Any:
    """Run one statement; returns the cursor (``rowcount``, ``fetchone``)."""
    db = database_proxy.obj
    return db.execute_sql(_text(sql, db.param), params)


def one(sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
    return execute(sql, params).fetchone()


def changed(sql: str, params: tuple[Any, ...] = ()) -> int:
    """Rows an UPDATE or DELETE touched."""
    return int(execute(sql, params).rowcount)


def execute_many(sql: str, rows: list[tuple[Any, ...]]) -> None:
    if rows:
        db = database_proxy.obj
        db.cursor().executemany(_text(sql, db.param), rows)
