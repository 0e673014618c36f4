"""The dispatcher's side of worker control, message by message on a real SQLite database."""
from __future__ import annotations

import datetime
import zoneinfo

import pytest

from common import messages as m
from common.models import Chunk, Task, Worker
from dispatcher import fleet, tasks
from tests.unit.test_dispatcher_state import farm  # noqa: F401 - the fixture, used by name

AMSTERDAM = zoneinfo.ZoneInfo("Europe/Amsterdam")
# Monday 2026-12-07, 10:00 in Amsterdam: inside a 09:00-19:00 working-day window.
MONDAY_10 = datetime.datetime(2026, 12, 7, 10, 0, tzinfo=AMSTERDAM).timestamp()
WORKDAY = {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "19:00",
           "tz": "Europe/Amsterdam"}


def worker(name: str) -> Worker:
    return Worker.get(Worker.name == name)


def sent(farm, kind):  # noqa: F811 - the fixture's name
    return [(msg, agent) for msg, agent in farm.pub.controls if isinstance(msg, kind)]


def update(farm, name, **fields):  # noqa: F811
    farm.apply(m.WorkerUpdate(worker_id=worker(name).id, **fields))


def hello(farm, name, pools=("default",), boot="b1"):  # noqa: F811
    farm.apply(m.AgentHello(agent=name, hostname=name, system="Linux", pools=list(pools),
                            commands=["sleep"], boot_id=boot))


def test_new_pools_apply_to_release_at_once_and_the_agent_is_told(farm):  # noqa: F811
    hello(farm, "a1")
    farm.submit(frame_start=1, frame_end=2, chunk_size=1)
    gpu_task = Task.get_by_id(farm.submit(frame_start=1, frame_end=1, chunk_size=1))
    Task.update(pool="gpu").where(Task.id == gpu_task.id).execute()

    update(farm, "a1", pools=["gpu", "default"])

    assert sent(farm, m.ControlPools) == [(m.ControlPools(agent="a1", pools=["gpu", "default"]), "a1")]
    w = worker("a1")
    assert (w.pools, w.operator_pools, w.agent_pools) == (["gpu", "default"], ["gpu", "default"], ["default"])
    assert {a.task_id for a in farm.release()} == {gpu_task.id, gpu_task.id - 1}


def test_the_queues_of_new_pools_are_declared_before_the_agent_is_told(farm):  # noqa: F811
    hello(farm, "a1")
    farm.ctx.joined.clear()  # the hello's own queues
    update(farm, "a1", pools=["brand-new"])
    # What the service declares (identity.declare_joined) before it publishes the outbox.
    assert farm.ctx.joined == [("a1", ["brand-new"], ["sleep"])]
    assert sent(farm, m.ControlPools) == [(m.ControlPools(agent="a1", pools=["brand-new"]), "a1")]


def test_operator_pools_survive_a_restart_of_the_agent_and_a_reset_returns_to_its_own(farm):  # noqa: F811
    hello(farm, "a1")
    update(farm, "a1", pools=["gpu"])
    farm.pub.controls.clear()

    hello(farm, "a1", pools=["default"], boot="b2")  # restarted with its command-line pools

    assert worker("a1").pools == ["gpu"]
    assert sent(farm, m.ControlPools) == [(m.ControlPools(agent="a1", pools=["gpu"]), "a1")]
    farm.pub.controls.clear()
    update(farm, "a1", pools_reset=True)
    assert worker("a1").pools == ["default"] and worker("a1").operator_pools is None
    assert sent(farm, m.ControlPools) == [(m.ControlPools(agent="a1", pools=["default"]), "a1")]


@pytest.mark.parametrize("action", ["stop", "stop_now", "restart"])
def test_an_action_is_pending_until_goodbye_and_the_worker_takes_no_more_chunks(farm, action):  # noqa: F811
    hello(farm, "a1")
    farm.submit(frame_start=1, frame_end=3, chunk_size=1)

    update(farm, "a1", action=action)

    assert sent(farm, m.ControlStop) == [(m.ControlStop(agent="a1", mode=action), "a1")]
    assert worker("a1").pending_action == action
    assert farm.release() == []
    farm.apply(m.AgentGoodbye(agent="a1", reason=f"{action} requested by the operator", boot_id="b1"))
    assert worker("a1").pending_action is None


def test_a_stop_set_while_the_agent_is_offline_is_delivered_when_it_comes_back(farm):  # noqa: F811
    hello(farm, "a1")
    farm.apply(m.AgentGoodbye(agent="a1", boot_id="b1"))
    farm.pub.controls.clear()

    update(farm, "a1", action="stop")

    assert sent(farm, m.ControlStop) == []  # nobody to tell
    assert worker("a1").pending_action == "stop"
    hello(farm, "a1", boot="b2")
    assert sent(farm, m.ControlStop) == [(m.ControlStop(agent="a1", mode="stop"), "a1")]
    farm.submit(frame_start=1, frame_end=1, chunk_size=1)
    assert farm.release() == []


def test_a_restart_set_while_offline_is_done_by_the_next_start_and_resent_to_the_same_process(farm):  # noqa: F811
    hello(farm, "a1")
    Worker.update(connection="offline").where(Worker.name == "a1").execute()
    update(farm, "a1", action="restart")

    hello(farm, "a1", boot="b1")  # the same process was only unreachable: it must still restart
    assert sent(farm, m.ControlStop) == [(m.ControlStop(agent="a1", mode="restart"), "a1")]
    assert worker("a1").pending_action == "restart"
    hello(farm, "a1", boot="b2")  # a new process: that is the restart
    assert worker("a1").pending_action is None


def test_a_pending_action_can_be_withdrawn(farm):  # noqa: F811
    hello(farm, "a1")
    Worker.update(connection="offline").where(Worker.name == "a1").execute()
    update(farm, "a1", action="stop")
    update(farm, "a1", action_clear=True)
    assert worker("a1").pending_action is None


def test_a_sleep_schedule_covering_now_keeps_chunks_pending_and_says_why(farm):  # noqa: F811
    farm.now = MONDAY_10
    hello(farm, "ws-1")
    tid = farm.submit(frame_start=1, frame_end=2, chunk_size=1)

    update(farm, "ws-1", sleep_schedule=WORKDAY)

    assert worker("ws-1").asleep is True
    assert sent(farm, m.ControlSleep)[-1][0].asleep is True
    assert farm.release() == []
    tasks.update_waiting_reasons(farm.ctx)
    reason = Task.get_by_id(tid).waiting_reason
    assert "asleep by its sleep schedule (ws-1)" in reason and "'default'" in reason

    update(farm, "ws-1", sleep_schedule_clear=True)

    assert worker("ws-1").asleep is False
    assert sent(farm, m.ControlSleep)[-1][0].asleep is False
    assert len(farm.release()) == 1
    assert Chunk.select().where(Chunk.status == "released").count() == 1


def test_the_dispatchers_clock_opens_and_closes_the_window_and_tells_the_agent(farm):  # noqa: F811
    farm.now = MONDAY_10 - 3600.5  # 08:59:59.5
    hello(farm, "ws-1")
    update(farm, "ws-1", sleep_schedule=WORKDAY)
    assert worker("ws-1").asleep is False
    farm.pub.controls.clear()

    farm.now = MONDAY_10 - 3600  # 09:00
    assert fleet.check_schedules(farm.ctx) == 1
    assert fleet.check_schedules(farm.ctx) == 0  # told once, not every tick
    farm.now = MONDAY_10 + 9 * 3600  # 19:00
    assert fleet.check_schedules(farm.ctx) == 1
    messages_sent = [msg.asleep for msg, _ in farm.ctx.outbox if isinstance(msg, m.ControlSleep)]
    assert messages_sent == [True, False]


def test_a_schedule_set_for_an_offline_agent_holds_when_it_comes_back(farm):  # noqa: F811
    farm.now = MONDAY_10
    hello(farm, "ws-1")
    Worker.update(connection="offline").where(Worker.name == "ws-1").execute()
    update(farm, "ws-1", sleep_schedule=WORKDAY)
    farm.pub.controls.clear()
    farm.submit(frame_start=1, frame_end=1, chunk_size=1)

    hello(farm, "ws-1", boot="b2")

    assert sent(farm, m.ControlSleep) == [
        (m.ControlSleep(agent="ws-1", asleep=True, reason="mon,tue,wed,thu,fri 09:00-19:00 Europe/Amsterdam"),
         "ws-1")]
    assert farm.release() == []


def test_a_chunk_running_when_the_window_opens_is_left_to_finish(farm):  # noqa: F811
    farm.now = MONDAY_10 - 7200  # 08:00
    hello(farm, "ws-1")
    tid = farm.submit(frame_start=1, frame_end=2, chunk_size=1)
    update(farm, "ws-1", sleep_schedule=WORKDAY)
    first = farm.release()[0]
    farm.apply(m.ChunkStarted(agent="ws-1", chunk_id=first.chunk_id, lease_id=first.lease_id,
                              started_at=farm.now))

    farm.now = MONDAY_10
    fleet.check_schedules(farm.ctx)
    farm.ctx.outbox.clear()

    assert not [a for a, _ in farm.pub.controls if isinstance(a, (m.ControlAbort, m.ControlHalt))]
    farm.apply(m.ChunkFinished(agent="ws-1", chunk_id=first.chunk_id, lease_id=first.lease_id,
                               outcome="completed", finished_at=farm.now, frames_done=[1]))
    assert Chunk.get_by_id(first.chunk_id).status == "completed"
    assert farm.release() == []  # the second chunk waits for the window to close
    assert Task.get_by_id(tid).frames_done == 1


def test_an_agent_back_by_heartbeat_without_a_hello_is_reminded_of_what_was_set_meanwhile(farm):  # noqa: F811
    farm.now = MONDAY_10
    hello(farm, "a1")
    Worker.update(connection="offline").where(Worker.name == "a1").execute()  # judged lost
    update(farm, "a1", action="stop", pools=["gpu"], sleep_schedule=WORKDAY)
    farm.pub.controls.clear()

    farm.apply(m.AgentHeartbeat(agent="a1", sent_at=farm.now, boot_id="b1"))

    kinds = {type(msg): msg for msg, agent in farm.pub.controls if agent == "a1"}
    assert kinds[m.ControlStop].mode == "stop"
    assert kinds[m.ControlPools].pools == ["gpu"]
    assert kinds[m.ControlSleep].asleep is True
