"""The issue's targets, judged on measures of the same run."""
from __future__ import annotations

from bench.results import Results, Target

BOUNDED_DEPTH = 10  # 4 agents + release_ahead, with room to spare


def _ratio(results: Results, goal: str, key: str, other: str, factor: float) -> Target:
    mine, theirs = results.get(key), results.get(other)
    if mine is None or theirs is None:
        return Target(goal, "not measured", None)
    return Target(goal, f"{mine:,.0f} vs {factor:g} x {theirs:,.0f} = {factor * theirs:,.0f} "
                        f"(ratio {mine / theirs:.2f})", mine >= factor * theirs)


def _below(results: Results, goal: str, key: str, limit: float, unit: str) -> Target:
    value = results.get(key)
    if value is None:
        return Target(goal, "not measured", None)
    return Target(goal, f"{value:,.1f} {unit} (limit {limit:g})", value < limit)


def _heartbeats(results: Results) -> Target:
    goal = "10,000 agents: dispatcher < 50% of a core, no growing lag"
    cpu, end, age = (results.get(k) for k in ("hb10000_cpu", "hb10000_depth_end", "hb10000_age_max"))
    if cpu is None or end is None or age is None:
        return Target(goal, "not measured", None)
    # No growing lag: under one second of arrivals queued at the end, nobody older than 2 intervals.
    steady = end < 2000 and age < 10
    return Target(goal, f"CPU {cpu:.0f}%, queue at end {end:,.0f}, oldest heartbeat {age:.1f}s",
                  cpu < 50 and steady)


def judge(results: Results) -> list[Target]:
    return [
        _ratio(results, "throughput K=4 >= Celery without result backend", "corral_k4", "celery_none", 1),
        _ratio(results, "throughput K=4 >= 2x Celery with result backend", "corral_k4", "celery_redis", 2),
        _ratio(results, "throughput K=4 >= 0.5x broker floor (prefetch 1)", "corral_k4", "floor_p1", 0.5),
        _below(results, "dispatch latency p50 < 20 ms", "latency_dispatch_p50", 20, "ms"),
        _below(results, "dispatch latency p99 < 100 ms", "latency_dispatch_p99", 100, "ms"),
        _heartbeats(results),
        _below(results, "GET /workers p99 < 50 ms", "api_get_workers_p99", 50, "ms"),
        _below(results, "GET /tasks?status=queued p99 < 50 ms", "api_get_tasks_p99", 50, "ms"),
        _below(results, "GET /metrics p99 < 250 ms (100k tasks, 1k workers)", "metrics_scrape_sqlite_p99",
               250, "ms"),
        _below(results, "GET /metrics p99 < 250 ms on PostgreSQL", "metrics_scrape_postgresql_p99",
               250, "ms"),
        _below(results, "100k-frame task: chunk queue depth bounded", "size_depth_max", BOUNDED_DEPTH,
               "msgs"),
    ]
