"""Durable farm statistics: chunks finished, chunk durations and waits, as rows of ``farm_counts``.

The dispatcher adds to them inside the transaction that applies the event they
count, so a redelivered or rolled-back event never counts twice, and a restart
or a failover to a standby dispatcher loses nothing. The gateway reads the few
rows at scrape time (``api_gateway/metrics.py``), so every gunicorn process
serves the same numbers. Histograms are stored one row per bucket (the count of
observations that fell in it, not cumulative) plus one ``*_sum`` row.
"""
from __future__ import annotations

import bisect
import math
from collections.abc import Iterable

from common.models import FarmCount, database_proxy

# Chunk durations: one second to a day.
DURATION_BUCKETS_S = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
                      7200.0, 14400.0, 28800.0, 43200.0, 86400.0)
# Waiting to start: from a second (an idle farm) to half a day (a saturated one).
WAIT_BUCKETS_S = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
                  14400.0, 43200.0, 86400.0)

FINISHED = "finished"  # first: command, second: outcome
DURATION = "duration"  # first: command
WAIT = "wait"  # first: pool, second: phase (released or pending)
SUM_SUFFIX = "_sum"
BUCKETS = {DURATION: DURATION_BUCKETS_S, WAIT: WAIT_BUCKETS_S}

Row = tuple[str, str, str, float, float]  # metric, first, second, le, amount


def bucket_of(value: float, buckets: tuple[float, ...]) -> float:
    """The upper bound of the bucket ``value`` falls in (``inf`` past the last one)."""
    index = bisect.bisect_left(buckets, value)
    return buckets[index] if index < len(buckets) else math.inf


def counter(metric: str, first: str, second: str = "", amount: float = 1.0) -> list[Row]:
    return [(metric, first, second, 0.0, amount)]


def observation(metric: str, first: str, second: str, value: float) -> list[Row]:
    """The two rows one histogram observation adds to: its bucket and the sum."""
    value = max(0.0, value)
    return [(metric, first, second, bucket_of(value, BUCKETS[metric]), 1.0),
            (metric + SUM_SUFFIX, first, second, 0.0, value)]


Key = tuple[str, str, str, float]  # metric, first, second, le
_ADD = ('INSERT INTO farm_counts (metric, "first", "second", le, value) VALUES (?, ?, ?, ?, ?) '
        'ON CONFLICT (metric, "first", "second", le) '
        'DO UPDATE SET value = farm_counts.value + excluded.value')


def accumulate(pending: dict[Key, float], rows: Iterable[Row]) -> None:
    """Add ``rows`` to counts held in memory until the transaction writes them (``add``)."""
    for metric, first, second, le, amount in rows:
        key = (metric, first[:64], second[:64], le)
        pending[key] = pending.get(key, 0.0) + amount


def add(rows: Iterable[Row]) -> None:
    """Add to the counts with one prepared statement (inside the caller's transaction).

    The dispatcher calls it once per transaction with what the transaction's
    events accumulated, so a burst of 500 chunk reports costs one ``executemany``
    of a few dozen rows, not two upserts per report.
    """
    pending: dict[Key, float] = {}
    accumulate(pending, rows)
    if not pending:
        return
    db = database_proxy.obj
    db.cursor().executemany(_ADD.replace("?", db.param), [(*key, value) for key, value in pending.items()])


def read_all() -> list[Row]:
    """Every count, for the scrape."""
    return list(FarmCount.select(FarmCount.metric, FarmCount.first, FarmCount.second, FarmCount.le,
                                 FarmCount.value).tuples())
