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

from peewee import EXCLUDED

from common.models import FarmCount

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


def add(rows: Iterable[Row]) -> None:
    """Add to the counts in one statement (inside the caller's transaction)."""
    values = [{"metric": m, "first": a[:64], "second": b[:64], "le": le, "value": v}
              for m, a, b, le, v in rows]
    if not values:
        return
    (FarmCount.insert_many(values)
     .on_conflict(conflict_target=[FarmCount.metric, FarmCount.first, FarmCount.second, FarmCount.le],
                  update={FarmCount.value: FarmCount.value + EXCLUDED.value})
     .execute())


def read_all() -> list[Row]:
    """Every count, for the scrape."""
    return list(FarmCount.select(FarmCount.metric, FarmCount.first, FarmCount.second, FarmCount.le,
                                 FarmCount.value).tuples())
