"""Retrying failed chunks (task.retry) and the change events the dispatcher notes for each commit."""
from __future__ import annotations

import time

from common import messages as m
from common.bus import Bus
from common.config import load_config
from common.models import Chunk, Task
from dispatcher import changes
from dispatcher.changes import ChangePublisher
from tests.unit.test_dispatcher_state import farm  # noqa: F401 - the fixture, used by name


def test_retry_puts_a_failed_task_back_to_work_with_the_chunks_its_failure_canceled(farm):  # noqa: F811
    tid = farm.submit(frame_start=1, frame_end=4, chunk_size=2, max_retries=0)
    farm.hello("a1")
    (first,) = farm.release()
    farm.run("a1", first, outcome="failed", frames=[1])
    assert Task.get_by_id(tid).status == "failed"
    assert sorted(c.status for c in Chunk.select().where(Chunk.task == tid)) == ["canceled", "failed"]
    farm.apply(m.TaskRetry(task_id=tid))
    task = Task.get_by_id(tid)
    assert (task.status, task.error, task.finished_at, task.frames_done) == ("rendering", "", None, 0)
    chunks = list(Chunk.select().where(Chunk.task == tid))
    assert [(c.status, c.failures, c.frames_done) for c in chunks] == [("pending", 0, [])] * 2
    assert ("control.resume", None) in [(c.kind, a) for c, a in farm.pub.controls]
    (again,) = farm.release()
    farm.run("a1", again)
    assert Chunk.get_by_id(again.chunk_id).attempts == 2  # the history goes on


def test_retry_of_a_completed_task_changes_nothing(farm):  # noqa: F811
    tid = farm.submit(frame_start=1, frame_end=2, chunk_size=2)
    farm.hello("a1")
    (assign,) = farm.release()
    farm.run("a1", assign)
    farm.apply(m.TaskRetry(task_id=tid))
    assert Task.get_by_id(tid).status == "completed"
    assert Chunk.get(Chunk.task == tid).status == "completed"


def test_each_message_notes_what_it_changes(farm):  # noqa: F811
    ctx = farm.ctx
    changes.record_message(ctx, m.TaskCancel(task_id=4))
    changes.record_message(ctx, m.ChunkProgress(agent="a1", chunk_id=9, lease_id="l", frames_done=[]))
    changes.record_message(ctx, m.WorkerUpdate(worker_id=2, status="disabled"))
    changes.record_message(ctx, [m.AgentHeartbeat(agent="a1", sent_at=1),
                                 m.AgentHeartbeat(agent="a2", sent_at=1)])
    assert list(ctx.changed.values()) == [
        {"type": "task", "id": 4, "task": 4},
        {"type": "chunk", "id": 9, "task": None},
        {"type": "worker", "id": None, "name": "a1"},
        {"type": "worker", "id": 2, "name": None},
        {"type": "heartbeats", "count": 2},
    ]


def test_a_requeued_chunk_is_noted_with_its_task(farm):  # noqa: F811
    tid = farm.submit(frame_start=1, frame_end=2, chunk_size=2, max_retries=3)
    farm.hello("a1")
    (assign,) = farm.release()
    farm.ctx.changed.clear()
    farm.run("a1", assign, outcome="failed", frames=[1])
    noted = farm.ctx.changed[("chunk", assign.chunk_id)]
    assert noted == {"type": "chunk", "id": assign.chunk_id, "task": tid}


def test_after_commit_never_blocks_and_drops_what_does_not_fit(farm):  # noqa: F811
    publisher = ChangePublisher(Bus(load_config({}, broker_url="memory://")))
    publisher.pending.maxsize = 1
    publisher._thread = object()  # no sender: the queue fills up
    for task_id in (1, 2, 3):
        changes.task(farm.ctx, task_id)
        publisher.after_commit(farm.ctx)
    assert publisher.pending.qsize() == 1 and publisher.dropped == 2
    assert farm.ctx.changed == {}


def test_changes_reach_the_change_exchange_after_the_commit(farm):  # noqa: F811
    from kombu import Connection

    config = load_config({}, broker_url="memory://", namespace="chg")
    bus = Bus(config)
    with Connection("memory://") as conn:
        channel = conn.channel()
        listen = bus.topology.change_listener_queue("unit")
        listen(channel).declare()
        publisher = ChangePublisher(bus)
        changes.chunk(farm.ctx, 5, 2)
        publisher.after_commit(farm.ctx, m.TaskUpdate(task_id=2, priority=10))
        received = []
        consumer = conn.Consumer(listen, callbacks=[lambda body, message: received.append(body)], no_ack=True)
        consumer.consume()
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=0.2)
            except TimeoutError:
                pass
        publisher.close()
    decoded = m.decode(received[0])  # kombu hands the JSON body over decoded
    assert decoded.changes == [{"type": "chunk", "id": 5, "task": 2}, {"type": "task", "id": 2, "task": 2}]
