"""Rules the verifier checks against committed rows hold within one burst too (dispatcher/burst.py)."""
from __future__ import annotations

import pytest

from common import messages as m
from common.models import RUNNING, Attempt, Chunk
from dispatcher.burst import Applier, Burst, Delivery
from dispatcher.context import Refused
from dispatcher.service import HANDLERS
from dispatcher.workers import on_heartbeats
from tests.unit.test_dispatcher_state import open_farm


@pytest.fixture
def farm(tmp_path):
    with open_farm(tmp_path) as farm:
        yield farm


def apply(farm, *msgs):
    burst = Burst()
    for msg in msgs:
        burst.add(Delivery(msg, raw=None))
    return Applier(farm.ctx, HANDLERS, on_heartbeats).apply(burst)


def test_a_report_on_an_attempt_started_earlier_in_the_same_burst_by_another_agent_is_refused(farm):
    farm.submit(frame_start=1, frame_end=2, chunk_size=2)
    farm.hello("honest")
    farm.hello("mallory")
    (assign,) = farm.release()
    started = m.ChunkStarted(agent="honest", chunk_id=assign.chunk_id, lease_id=assign.lease_id, started_at=1)
    forged = m.ChunkFinished(agent="mallory", chunk_id=assign.chunk_id, lease_id=assign.lease_id,
                             outcome="completed", frames_done=[1, 2], finished_at=2)
    failures = apply(farm, started, forged)
    assert [f.delivery.msg for f in failures] == [forged]
    assert isinstance(failures[0].error, Refused)
    assert str(failures[0].error) == (f"agent 'mallory' reports on chunk {assign.chunk_id}, "
                                      "which agent 'honest' runs")
    assert Chunk.get_by_id(assign.chunk_id).status == RUNNING
    assert Attempt.get(Attempt.lease_id == assign.lease_id).outcome == RUNNING


def test_reports_on_an_attempt_another_agent_started_in_an_earlier_burst_are_refused(farm):
    farm.submit(frame_start=1, frame_end=2, chunk_size=2)
    farm.hello("honest")
    farm.hello("mallory")
    (assign,) = farm.release()
    assert apply(farm, m.ChunkStarted(agent="honest", chunk_id=assign.chunk_id, lease_id=assign.lease_id,
                                      started_at=1)) == []
    progress = m.ChunkProgress(agent="mallory", chunk_id=assign.chunk_id, lease_id=assign.lease_id,
                               frames_done=[1])
    forged = m.ChunkFinished(agent="mallory", chunk_id=assign.chunk_id, lease_id=assign.lease_id,
                             outcome="completed", frames_done=[1, 2], finished_at=2)
    mine = m.ChunkProgress(agent="honest", chunk_id=assign.chunk_id, lease_id=assign.lease_id,
                           frames_done=[1])
    failures = apply(farm, progress, forged, mine)
    assert [f.delivery.msg for f in failures] == [progress, forged]
    assert all("which agent 'honest' runs" in str(f.error) for f in failures)
    chunk = Chunk.get_by_id(assign.chunk_id)
    assert (chunk.status, chunk.frames_done) == (RUNNING, [1])  # honest's own report went through


def test_the_owner_of_an_attempt_may_report_on_it_in_the_same_burst(farm):
    farm.submit(frame_start=1, frame_end=2, chunk_size=2)
    farm.hello("honest")
    (assign,) = farm.release()
    started = m.ChunkStarted(agent="honest", chunk_id=assign.chunk_id, lease_id=assign.lease_id, started_at=1)
    finished = m.ChunkFinished(agent="honest", chunk_id=assign.chunk_id, lease_id=assign.lease_id,
                               outcome="completed", frames_done=[1, 2], finished_at=2)
    assert apply(farm, started, finished) == []
    assert Chunk.get_by_id(assign.chunk_id).status == "completed"


def test_a_hello_replayed_within_the_same_burst_is_refused(farm):
    hello = m.AgentHello(agent="a1", hostname="a1", system="Linux", pools=["default"], commands=["sleep"],
                         sent_at=500.0, boot_id="b1")
    failures = apply(farm, hello, hello)
    assert [f.delivery.msg for f in failures] == [hello]
    assert "not newer than its last one" in str(failures[0].error)
