"""The agent's side of worker control on the in-process ``memory://`` broker."""
from __future__ import annotations

import time

from agent.agent import EXIT_RESTART, Agent
from common.messages import ControlPools, ControlSleep, ControlStop
from tests.unit.test_agent_embedded import REGISTRY, bus, chunk, drain, finished  # noqa: F401 - fixture


def started(bus, name="a1", pools=("default",)) -> Agent:  # noqa: F811
    agent = Agent(bus.config, name, list(pools), REGISTRY, bus)
    agent.start(timeout=5)
    return agent


def wait(predicate, timeout=5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_control_pools_moves_the_agent_to_the_new_pools_queues_without_a_restart(bus):  # noqa: F811
    agent = started(bus)
    publisher = bus.publisher()
    try:
        publisher.control(ControlPools(agent="a1", pools=["gpu"]), "a1")
        assert wait(lambda: agent.pools == ["gpu"])
        publisher.chunk(chunk(1), "gpu", 50)
        events = drain(bus, bus.topology.dispatcher_queue, 10, lambda ev: finished(ev))
        assert [(e.chunk_id, e.outcome) for e in finished(events)] == [(1, "completed")]
        assert agent._thread.is_alive() and not agent.wait(0)
    finally:
        agent.kill(timeout=10)
        publisher.close()


def test_control_pools_for_another_agent_is_ignored(bus):  # noqa: F811
    agent = started(bus)
    publisher = bus.publisher()
    try:
        publisher.control(ControlPools(agent="someone-else", pools=["gpu"]))
        time.sleep(0.5)
        assert agent.pools == ["default"]
    finally:
        agent.kill(timeout=10)
        publisher.close()


def test_an_asleep_agent_takes_no_chunk_until_it_is_awake_again(bus):  # noqa: F811
    agent = started(bus)
    publisher = bus.publisher()
    try:
        publisher.control(ControlSleep(agent="a1", asleep=True, reason="mon 09:00-19:00 UTC"), "a1")
        assert wait(lambda: agent.asleep)
        publisher.chunk(chunk(1), "default", 50)
        quiet = drain(bus, bus.topology.dispatcher_queue, 1.0)
        assert [e.kind for e in quiet if e.kind == "chunk.started"] == []
        publisher.control(ControlSleep(agent="a1", asleep=False), "a1")
        events = drain(bus, bus.topology.dispatcher_queue, 10,
                       lambda ev: any(e.outcome == "completed" for e in finished(ev)))
        assert any(e.chunk_id == 1 and e.outcome == "completed" for e in finished(events))
    finally:
        agent.kill(timeout=10)
        publisher.close()


def test_control_stop_restart_finishes_the_chunk_then_ends_with_the_restart_code(bus):  # noqa: F811
    agent = started(bus)
    publisher = bus.publisher()
    try:
        publisher.chunk(chunk(1, "sleep", frames=[[1, 6]]), "default", 50)
        assert wait(lambda: agent.held is not None)
        publisher.control(ControlStop(agent="a1", mode="restart"), "a1")
        assert agent.wait(10)
        events = drain(bus, bus.topology.dispatcher_queue, 2)
    finally:
        publisher.close()
    assert agent.exit_code == EXIT_RESTART == 75
    assert [(e.chunk_id, e.outcome) for e in finished(events)] == [(1, "completed")]
    goodbye = [e for e in events if e.kind == "agent.goodbye"]
    assert goodbye and goodbye[0].reason == "restart requested by the operator"


def test_stop_now_after_stop_escalates_to_handing_the_chunk_back(bus):  # noqa: F811
    agent = started(bus)
    publisher = bus.publisher()
    try:
        publisher.chunk(chunk(1, "sleep", frames=[[1, 400]]), "default", 50)
        assert wait(lambda: agent.held is not None)
        publisher.control(ControlStop(agent="a1", mode="stop"), "a1")
        time.sleep(0.3)
        assert not agent.wait(0)  # still finishing its chunk
        publisher.control(ControlStop(agent="a1", mode="stop_now"), "a1")
        assert agent.wait(10)
        events = drain(bus, bus.topology.dispatcher_queue, 2)
    finally:
        publisher.close()
    assert agent.exit_code == 0
    assert [(e.chunk_id, e.outcome) for e in finished(events)] == [(1, "declined")]
