"""The five protocol defects an outsider's agent found (issue 11), each pinned by a test."""
from __future__ import annotations

import pytest

from common import messages as m
from common.models import Worker, database_proxy
from dispatcher import workers
from tests.unit.test_dispatcher_state import open_farm

READINGS = {"load_average": {"1min": 0.5, "5min": 0.4, "15min": 0.3}, "worker_cpu_percent": 7.0}
SLOW = {"worker_architecture": "x86_64", "worker_num_cpus": 2}


@pytest.fixture
def farm(tmp_path):
    with open_farm(tmp_path, agent_timeout_s=10, heartbeat_interval_s=1) as farm:
        yield farm


def beats(farm, *batch):
    with database_proxy.atomic():
        workers.on_heartbeats(farm.ctx, list(batch))
    outbox, farm.ctx.outbox = farm.ctx.outbox, []
    return outbox


def test_a_heartbeat_applied_after_the_goodbye_of_its_process_does_not_bring_the_worker_back(farm):
    farm.hello("a1", boot="b1")
    late = m.AgentHeartbeat(agent="a1", sent_at=5.0, boot_id="b1")  # sent just before the goodbye
    farm.apply(m.AgentGoodbye(agent="a1", reason="stopped", boot_id="b1"))
    beats(farm, late)
    assert Worker.get(name="a1").connection == "offline"
    farm.hello("a1", boot="b2")  # a new process under the name is welcome again
    beats(farm, m.AgentHeartbeat(agent="a1", sent_at=6.0, boot_id="b2"))
    assert Worker.get(name="a1").connection == "online"


def test_a_heartbeat_sent_while_a_chunk_ran_and_applied_after_it_finished_aborts_nothing(farm):
    farm.submit(frame_start=1, frame_end=2, chunk_size=2)
    farm.hello("a1")
    (assign,) = farm.release()
    during = m.AgentHeartbeat(agent="a1", sent_at=3.0, boot_id="b1", lease_id=assign.lease_id)
    farm.run("a1", assign)
    assert beats(farm, during) == []


def test_an_abort_for_a_lease_the_dispatcher_knows_names_its_chunk(farm):
    farm.submit(frame_start=1, frame_end=2, chunk_size=2)
    farm.hello("a1")
    (assign,) = farm.release()
    farm.apply(m.ChunkStarted(agent="a1", chunk_id=assign.chunk_id, lease_id=assign.lease_id, started_at=1))
    farm.now += 60
    with database_proxy.atomic():
        workers.check_lost(farm.ctx)  # a1 presumed dead; its lease is no longer live
    (abort, agent), = beats(farm, m.AgentHeartbeat(agent="a1", sent_at=9.0, boot_id="b1",
                                                   lease_id=assign.lease_id))
    assert (abort.kind, abort.chunk_id, abort.lease_id, agent) == (
        "control.abort", assign.chunk_id, assign.lease_id, "a1")


def test_the_agents_canceled_report_after_a_task_is_deleted_frees_the_worker(farm):
    tid = farm.submit(frame_start=1, frame_end=4)
    farm.hello("a1")
    (assign,) = farm.release()
    farm.apply(m.ChunkStarted(agent="a1", chunk_id=assign.chunk_id, lease_id=assign.lease_id, started_at=1))
    assert Worker.get(name="a1").current_task == tid
    farm.apply(m.TaskCancel(task_id=tid))
    farm.apply(m.ChunkFinished(agent="a1", chunk_id=assign.chunk_id, lease_id=assign.lease_id,
                               outcome="canceled", finished_at=2))
    a1 = Worker.get(name="a1")
    assert (a1.current_task, a1.current_chunk, a1.current_lease, a1.activity) == (None, None, None, "idle")


def test_a_completed_report_whose_started_was_lost_leaves_the_worker_idle(farm):
    farm.submit(frame_start=1, frame_end=1)
    farm.hello("a1")
    (assign,) = farm.release()
    farm.apply(m.ChunkFinished(agent="a1", chunk_id=assign.chunk_id, lease_id=assign.lease_id,
                               outcome="completed", finished_at=2, frames_done=[1]))
    a1 = Worker.get(name="a1")
    assert (a1.current_task, a1.current_chunk, a1.current_lease, a1.activity) == (None, None, None, "idle")


def test_the_hello_carries_the_first_readings(farm):
    farm.apply(m.AgentHello(agent="a1", hostname="a1", system="Linux", pools=["default"],
                            commands=["sleep"], boot_id="b1", update_frequent=READINGS,
                            update_less_frequent=SLOW))
    a1 = Worker.get(name="a1")
    assert (a1.update_frequent, a1.update_less_frequent) == (READINGS, SLOW)
    farm.hello("a1", boot="b1")  # a hello without readings (an older agent) keeps them
    assert Worker.get(name="a1").update_frequent == READINGS
