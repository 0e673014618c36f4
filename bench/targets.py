"""The issue's targets, judged on measures of the same run."""
from __future__ import annotations

from bench.results import Results, Target

BOUNDED_DEPTH = 10  # 4 agents + release_ahead, with room to spare
RSS_BOUND_MB = 512  # a dispatcher that holds a million-chunk task in memory is over this


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


def _at_least(results: Results, goal: str, key: str, floor: float, unit: str) -> Target:
    value = results.get(key)
    if value is None:
        return Target(goal, "not measured", None)
    return Target(goal, f"{value:,.1f} {unit} (at least {floor:g})", value >= floor)


def _heartbeats(results: Results) -> Target:
    goal = "10,000 agents heartbeating every 5 s: dispatcher < 25% of a core, no growing lag"
    cpu, end, age = (results.get(k) for k in ("hb10000_cpu", "hb10000_depth_end", "hb10000_age_max"))
    if cpu is None or end is None or age is None:
        return Target(goal, "not measured", None)
    # No growing lag: under one second of arrivals queued at the end, nobody older than 2 intervals.
    steady = end < 2000 and age < 10
    return Target(goal, f"CPU {cpu:.0f}%, queue at end {end:,.0f}, oldest heartbeat {age:.1f}s",
                  cpu < 25 and steady)


def judge(results: Results) -> list[Target]:
    return [
        _at_least(results, "noop, chunk 1, 4 agents, SQLite >= 400 chunks/s", "corral_k4", 400, "chunks/s"),
        _ratio(results, "K=4 SQLite >= 0.5x Celery without result backend", "corral_k4", "celery_none", 0.5),
        _ratio(results, "K=4 SQLite >= 1x Celery with result backend", "corral_k4", "celery_redis", 1),
        _at_least(results, "noop, chunk 1, 4 agents, PostgreSQL >= 250 chunks/s", "corral_k4_pg", 250,
                  "chunks/s"),
        _below(results, "dispatcher CPU per chunk <= 1 ms (K=4, SQLite)", "corral_k4_cpu_ms", 1.0001, "ms"),
        _heartbeats(results),
        _below(results, "dispatch latency p50 < 10 ms", "latency_dispatch_p50", 10, "ms"),
        _below(results, "dispatch latency p99 < 50 ms", "latency_dispatch_p99", 50, "ms"),
        _below(results, "GET /tasks?status=queued p99 < 50 ms (100,000 tasks)", "api_get_tasks_p99", 50,
               "ms"),
        _below(results, "big task: compiled in < 10 s", "size_compiled_s", 10, "s"),
        _below(results, "big task: dispatcher peak RSS bounded", "size_rss_mb", RSS_BOUND_MB, "MiB"),
        _below(results, "big task: chunk queue depth bounded", "size_depth_max", BOUNDED_DEPTH, "msgs"),
        _below(results, "GET /workers p99 < 50 ms", "api_get_workers_p99", 50, "ms"),
        _below(results, "GET /metrics p99 < 250 ms (100k tasks, 1k workers)", "metrics_scrape_sqlite_p99",
               250, "ms"),
        _below(results, "GET /metrics p99 < 250 ms on PostgreSQL", "metrics_scrape_postgresql_p99",
               250, "ms"),
    ]
