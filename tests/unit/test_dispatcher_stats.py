"""The durable counts the dispatcher keeps for /metrics agree with the chunk states, once per event."""
from __future__ import annotations

import pytest

from common import farmstats
from common import messages as m
from common.models import FarmCount, Task, database_proxy
from dispatcher import workers
from dispatcher.service import HANDLERS
from tests.unit.test_dispatcher_state import farm  # noqa: F401 - the fixture, used by name


def count(metric: str, first: str, second: str = "") -> float:
    rows = FarmCount.select().where(FarmCount.metric == metric, FarmCount.first == first,
                                    FarmCount.second == second)
    return sum(row.value for row in rows)


def test_each_finished_attempt_counts_once_even_when_its_report_is_delivered_twice(farm):  # noqa: F811
    task_id = farm.submit(frame_start=1, frame_end=4, chunk_size=2)
    Task.update(created_at=farm.now).where(Task.id == task_id).execute()  # submitted on the same clock
    farm.hello("a1")
    farm.now += 10
    (first,) = farm.release()
    farm.now += 5  # waited 5 s in the queue
    farm.apply(m.ChunkStarted(agent="a1", chunk_id=first.chunk_id, lease_id=first.lease_id,
                              started_at=farm.now))
    farm.now += 42  # ran 42 s
    finished = m.ChunkFinished(agent="a1", chunk_id=first.chunk_id, lease_id=first.lease_id,
                               outcome="completed", finished_at=farm.now, frames_done=[1, 2])
    farm.apply(finished)
    farm.apply(finished)  # redelivered after a lost acknowledgement: stale, not counted again
    assert count(farmstats.FINISHED, "sleep", "completed") == 1
    assert count(farmstats.DURATION, "sleep") == 1
    assert count(farmstats.DURATION + farmstats.SUM_SUFFIX, "sleep") == 42
    assert count(farmstats.WAIT + farmstats.SUM_SUFFIX, "default", "released") == 5
    assert count(farmstats.WAIT + farmstats.SUM_SUFFIX, "default", "pending") == 15  # since submission
    (second,) = farm.release()
    farm.run("a1", second, outcome="failed")
    assert count(farmstats.FINISHED, "sleep", "failed") == 1
    assert count(farmstats.DURATION, "sleep") == 1  # only completed attempts are timed


def test_a_chunk_taken_from_a_lost_agent_counts_as_lost(farm):  # noqa: F811
    farm.submit(frame_start=1, frame_end=2, chunk_size=2)
    farm.hello("a1")
    (assign,) = farm.release()
    farm.apply(m.ChunkStarted(agent="a1", chunk_id=assign.chunk_id, lease_id=assign.lease_id,
                              started_at=farm.now))
    farm.now += 60
    with farm.transaction():
        assert workers.check_lost(farm.ctx) == 1
    assert count(farmstats.FINISHED, "sleep", "lost") == 1


def test_an_event_whose_transaction_rolls_back_counts_nothing(farm):  # noqa: F811
    farm.submit(frame_start=1, frame_end=2, chunk_size=2)
    farm.hello("a1")
    (assign,) = farm.release()
    farm.apply(m.ChunkStarted(agent="a1", chunk_id=assign.chunk_id, lease_id=assign.lease_id,
                              started_at=farm.now))
    finished = m.ChunkFinished(agent="a1", chunk_id=assign.chunk_id, lease_id=assign.lease_id,
                               outcome="completed", finished_at=farm.now, frames_done=[1, 2])
    with pytest.raises(RuntimeError), database_proxy.atomic():
        HANDLERS[m.ChunkFinished](farm.ctx, finished)
        raise RuntimeError("the database went away before the commit")
    farm.ctx.rolled_back()  # what Applier.apply does when its transaction fails
    assert count(farmstats.FINISHED, "sleep", "completed") == 0
    farm.apply(finished)  # the redelivery after the rollback is the one that counts
    assert count(farmstats.FINISHED, "sleep", "completed") == 1
