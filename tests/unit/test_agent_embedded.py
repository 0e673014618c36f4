"""The agent on the in-process ``memory://`` broker (the embedded one-process mode)."""
from __future__ import annotations

import time
import uuid

import pytest

from agent.agent import Agent
from agent.registry import Registry, builtin_commands
from common.bus import Bus
from common.config import load_config
from common.frames import format_ranges
from common.messages import ChunkAssign, ChunkFinished, ControlHalt, decode

BUILTIN, _ = builtin_commands(load_config({}, blender="/nonexistent/blender", ffmpeg="/nonexistent/ffmpeg"))
REGISTRY = Registry(specs={name: BUILTIN[name] for name in ("noop", "sleep")})


@pytest.fixture
def bus():
    config = load_config({}, broker_url="memory://", namespace=f"u{uuid.uuid4().hex[:8]}",
                         heartbeat_interval_s=0.2, agent_timeout_s=2.0, progress_interval_s=0.05)
    return Bus(config)


def drain(bus: Bus, queue_factory, timeout: float, until=lambda events: False) -> list:
    events: list = []
    deadline = time.monotonic() + timeout
    with bus.connection() as conn:
        queue = queue_factory()(conn.channel())
        queue.declare()
        while time.monotonic() < deadline and not until(events):
            message = queue.get(no_ack=True)
            if message is None:
                time.sleep(0.02)
                continue
            events.append(decode(message.body))
    return events


def finished(events) -> list[ChunkFinished]:
    return [e for e in events if isinstance(e, ChunkFinished)]


def chunk(chunk_id: int, command: str = "noop", **kw) -> ChunkAssign:
    frames = kw.pop("frames", [[1, 2]])
    # What the compiler gives the sleep job type's chunks: the sleeper's arguments.
    args = [f"--frames={format_ranges(frames)}", "--seconds", "0.05"]
    params = {"args": args} if command == "sleep" else {}
    return ChunkAssign(chunk_id=chunk_id, task_id=kw.pop("task_id", 1), lease_id=f"L{chunk_id}",
                       attempt=1, command=command, parser=command, params=params, frames=frames, **kw)


def test_embedded_agents_take_chunks_and_report_them(bus):
    agents = [Agent(bus.config, f"a{i}", ["default"], REGISTRY, bus) for i in (1, 2)]
    for agent in agents:
        agent.start(timeout=5)
    publisher = bus.publisher()
    try:
        for chunk_id in range(1, 5):
            publisher.chunk(chunk(chunk_id, "sleep" if chunk_id % 2 else "noop"), "default", 50)
        events = drain(bus, bus.topology.dispatcher_queue, 20, lambda ev: len(finished(ev)) == 4)
    finally:
        for agent in agents:
            assert agent.stop(timeout=10)
        publisher.close()
    done = finished(events)
    assert sorted(e.chunk_id for e in done) == [1, 2, 3, 4]
    assert {e.outcome for e in done} == {"completed"}
    assert all(e.frames_done == [1, 2] for e in done)
    kinds = [e.kind for e in events]
    assert kinds.count("agent.hello") == 2


def test_embedded_agent_declines_halted_and_excluded_chunks(bus):
    agent = Agent(bus.config, "a1", ["default"], REGISTRY, bus)
    agent.start(timeout=5)
    publisher = bus.publisher()
    try:
        publisher.control(ControlHalt(task_id=7, action="pause"))
        time.sleep(0.3)
        publisher.chunk(chunk(1, task_id=7), "default", 50)
        publisher.chunk(chunk(2, exclude_agents=["a1"]), "default", 50)
        events = drain(bus, bus.topology.dispatcher_queue, 10, lambda ev: len(finished(ev)) == 2)
    finally:
        agent.stop(timeout=10)
        publisher.close()
    reasons = {e.chunk_id: (e.outcome, e.reason) for e in finished(events)}
    assert reasons == {1: ("declined", "task 7 is halted"), 2: ("declined", "agent a1 is excluded")}


def test_the_agents_hello_carries_its_first_readings(bus):
    agent = Agent(bus.config, "a1", ["default"], REGISTRY, bus)
    agent.start(timeout=5)
    try:
        events = drain(bus, bus.topology.dispatcher_queue, 5,
                       lambda ev: any(e.kind == "agent.hello" for e in ev))
    finally:
        assert agent.stop(timeout=10)
    (hello,) = [e for e in events if e.kind == "agent.hello"][:1]
    assert set(hello.update_frequent) == {"load_average", "worker_cpu_percent"}
    assert hello.update_less_frequent["worker_num_cpus"] >= 1
