"""Soak: 200 chunks on 4 agents while agents, the dispatcher and the broker are killed."""
from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time

import pytest

from common.db import open_database
from common.models import Chunk, Task, database_proxy
from tests.integration.farmproc import Farm, sleep_settings
from tests.integration.test_faults import wait_broker

pytestmark = pytest.mark.integration
CHUNKS = 200
AGENTS = ("s1", "s2", "s3", "s4")


def test_two_hundred_chunks_complete_exactly_once_through_repeated_kills(farm, broker_url):
    farm.gateway()
    farm.dispatcher()
    for name in AGENTS:
        farm.agent(name)
    farm.wait_online(list(AGENTS))
    task = farm.submit("sleep", sleep_settings(1, CHUNKS, 1, 0.15))
    chaos(farm, task["id"], broker_url)
    done = farm.wait_task(task["id"], timeout=180)
    open_database(farm.env["CORRAL_DATABASE_URL"])
    with database_proxy.connection_context():
        chunks = list(Chunk.select().where(Chunk.task == task["id"]))
        assert len(chunks) == CHUNKS
        assert {c.status for c in chunks} == {"completed"}
        frames = sorted(f for c in chunks for f in c.frames_done)
        assert frames == list(range(1, CHUNKS + 1))  # every frame exactly once
        assert Task.get_by_id(task["id"]).frames_done == CHUNKS
    assert done["frame_current"] == CHUNKS
    for name, proc in farm.procs.items():  # only the killed processes may have died
        assert proc.poll() is None, f"{name} died:\n{farm.logs()}"


def chaos(farm: Farm, task_id: int, broker_url: str, period_s: float = 2.5, limit_s: float = 120) -> None:
    """Kill an agent every few seconds (restarting it), the dispatcher once and the broker once."""
    started = time.monotonic()
    victims = itertools.cycle(AGENTS)
    dispatcher_killed = broker_restarted = False
    while time.monotonic() - started < limit_s:
        if farm.get(f"/tasks/{task_id}")["status"] == "completed":
            break
        name = next(victims)
        os.killpg(farm.procs.pop(f"agent-{name}").pid, signal.SIGKILL)
        time.sleep(0.5)
        farm.agent(name)
        elapsed = time.monotonic() - started
        if not dispatcher_killed and elapsed > 5:
            os.killpg(farm.procs.pop("dispatcher").pid, signal.SIGKILL)
            time.sleep(1.5)
            farm.dispatcher()
            dispatcher_killed = True
        elif dispatcher_killed and not broker_restarted and elapsed > 10:
            subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True, timeout=60)
            time.sleep(1)
            subprocess.run(["rabbitmqctl", "-q", "start_app"], check=True, timeout=120)
            wait_broker(broker_url)
            broker_restarted = True
        time.sleep(period_s)
    assert dispatcher_killed and broker_restarted, "the task finished before every fault was injected"
