"""Row 5, heartbeat scale: simulated agents heartbeating into a real dispatcher.

Load generators (separate processes, pika, transient messages) publish
``AgentHeartbeat`` on ``<ns>.events`` with routing key ``agent.heartbeat``, each
simulated agent once per interval, spread evenly. The simulated workers are
inserted beforehand as online rows, so the dispatcher sees a steady-state fleet.
Measured over the window: the dispatcher's CPU share (psutil cpu_times delta /
wall), the ``<ns>.heartbeats`` queue depth each second (passive declare), and at
the end the age of the workers' ``last_heartbeat`` in the database.
"""
from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import pika
import psutil

from bench import farm, profile
from bench.broker import DepthProbe, connect
from bench.results import Results, percentile
from common import messages
from common.topology import events_exchange_name, heartbeat_queue_name

ROW = "heartbeat scale"
INTERVAL_S = 5.0
GENERATORS = 2

READINGS = {"load_average": {"1min": 0.5, "5min": 0.4, "15min": 0.3}, "worker_cpu_percent": 7.0}
LESS_FREQUENT = {"worker_architecture": "x86_64", "worker_disk_percent": 40.1,
                 "worker_mem_percent": 12.5, "worker_num_cpus": 2}


def sim_name(i: int) -> str:
    return f"sim-{i:05d}"


def _generate(namespace: str, names: list[str], duration_s: float, sent: mp.Value) -> None:  # type: ignore[name-defined]
    conn = connect()
    channel = conn.channel()
    exchange = events_exchange_name(namespace)
    props = pika.BasicProperties(delivery_mode=1, content_type="application/json",
                                 content_encoding="utf-8")
    gap = INTERVAL_S / len(names)
    start = time.monotonic()
    count = 0
    while time.monotonic() - start < duration_s:
        for i, name in enumerate(names):
            due = start + count // len(names) * INTERVAL_S + i * gap
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            body = messages.encode(messages.AgentHeartbeat(
                agent=name, sent_at=time.time(), boot_id=name, update_frequent=READINGS,
                update_less_frequent=LESS_FREQUENT))
            channel.basic_publish(exchange, "agent.heartbeat", body, props)
            count += 1
            if time.monotonic() - start >= duration_s:
                break
    sent.value = count
    conn.close()


def seed_workers(database_url: str, count: int) -> None:
    """Insert the simulated fleet as online workers (the state after their hellos)."""
    from common.db import open_and_migrate
    from common.models import ONLINE, Worker, database_proxy

    open_and_migrate(database_url)
    now = time.time()
    rows = [{"name": sim_name(i), "hostname": sim_name(i), "system": "Linux 6.1.0",
             "pools": ["default"], "commands": ["noop", "sleep"], "boot_id": sim_name(i),
             "connection": ONLINE, "activity": "idle", "last_heartbeat": now,
             "update_frequent": READINGS, "update_less_frequent": LESS_FREQUENT} for i in range(count)]
    database_proxy.connect(reuse_if_open=True)
    with database_proxy.atomic():
        for start in range(0, len(rows), 500):
            Worker.insert_many(rows[start:start + 500]).execute()
    database_proxy.close()


def heartbeat_ages(database_url: str) -> list[float]:
    from common.db import open_database
    from common.models import Worker, database_proxy

    open_database(database_url)
    now = time.time()
    ages = [now - (w.last_heartbeat or 0) for w in
            Worker.select(Worker.last_heartbeat).where(Worker.name.startswith("sim-"))]
    database_proxy.close()
    return ages


def measure(namespace: str, agents: int, duration_s: float, workdir: Path, token: str) -> dict[str, float]:
    url = farm.sqlite_url(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    seed_workers(url, agents)
    # The load generators publish unsigned heartbeats: the dispatcher must not check them.
    with farm.Farm(namespace, url, workdir, token, {"CORRAL_INSECURE_AGENTS": "true"}) as f:
        proc = psutil.Process(f.dispatcher().pid)
        probe = DepthProbe()
        queue = heartbeat_queue_name(namespace)
        try:
            farm.wait_for(lambda: probe.depth(queue) is not None, 60, "the dispatcher's queues", 0.2)
            time.sleep(1.0)  # let it finish starting
            names = [sim_name(i) for i in range(agents)]
            ctx = mp.get_context("spawn")  # no fork: the probe's connection must stay ours
            counters = [ctx.Value("q", 0) for _ in range(GENERATORS)]
            gens = [ctx.Process(target=_generate,
                                args=(namespace, names[g::GENERATORS], duration_s, counters[g]))
                    for g in range(GENERATORS)]
            with profile.sampled(proc.pid, f"dispatcher-heartbeats-{agents}"):
                cpu0, wall0 = sum(proc.cpu_times()[:2]), time.monotonic()
                for gen in gens:
                    gen.start()
                depths = []
                while any(gen.is_alive() for gen in gens):
                    depths.append(probe.depth(queue) or 0)
                    time.sleep(1.0)
                cpu1, wall1 = sum(proc.cpu_times()[:2]), time.monotonic()
            for gen in gens:
                gen.join(10)
            end_depth = probe.depth(queue) or 0
            rss = proc.memory_info().rss
            ages = heartbeat_ages(url)
        finally:
            probe.close()
    half = depths[len(depths) // 2:] or [0]
    wall = wall1 - wall0
    return {"cpu": 100 * (cpu1 - cpu0) / wall, "sent_rate": sum(c.value for c in counters) / wall,
            "depth_max": max(depths or [0]), "depth_end": end_depth, "depth_mid": half[0],
            "age_p50": percentile(ages, 50), "age_max": max(ages or [0]), "rss_mb": rss / 2**20}


def run(results: Results, namespace: str, fleets: tuple[int, ...], duration_s: float, workdir: Path,
        token: str) -> None:
    for agents in fleets:
        m = measure(f"{namespace}.hb{agents}", agents, duration_s, workdir / f"hb{agents}", token)
        note = f"{agents:,} agents every {INTERVAL_S:g}s for {duration_s:g}s, sent {m['sent_rate']:,.0f}/s"
        results.add(ROW, f"hb{agents}_cpu", f"{agents:,} agents: dispatcher CPU", m["cpu"], "% of a core",
                    note)
        results.add(ROW, f"hb{agents}_depth_mid", f"{agents:,} agents: heartbeat queue depth at mid-run",
                    m["depth_mid"], "msgs", f"max {m['depth_max']:,.0f}")
        results.add(ROW, f"hb{agents}_depth_end", f"{agents:,} agents: heartbeat queue depth at end",
                    m["depth_end"], "msgs", f"{m['sent_rate']:,.0f} msgs/s arriving")
        results.add(ROW, f"hb{agents}_age_max", f"{agents:,} agents: oldest last_heartbeat at end",
                    m["age_max"], "s", f"p50 {m['age_p50']:.1f}s; interval {INTERVAL_S:g}s")
