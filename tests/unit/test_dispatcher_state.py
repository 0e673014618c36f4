"""The dispatcher's state machine, driven message by message on a real SQLite database."""
from __future__ import annotations

import contextlib

import pytest

from common import messages as m
from common.db import open_and_migrate
from common.jobtypes import task_type
from common.models import Attempt, Chunk, Task, Worker, database_proxy
from dispatcher import leases, release, tasks, workers
from dispatcher.burst import Applier
from dispatcher.context import Context
from dispatcher.service import HANDLERS


class RecordingPublisher:
    def __init__(self):
        self.chunks, self.controls = [], []

    def chunk(self, message, pool, priority):
        self.chunks.append(message)

    def chunk_batch(self, batch):
        for message, pool, priority in batch:
            self.chunk(message, pool, priority)

    def control(self, message, agent=None):
        self.controls.append((message, agent))


class Farm:
    """Applies messages exactly as the service does, with a controllable clock."""

    def __init__(self, config):
        self.now = 1000.0
        self.ctx = Context(config, clock=lambda: self.now)
        self.pub = RecordingPublisher()

    def transaction(self):
        """The service's transaction: task counters and farm counts written last."""
        return Applier(self.ctx, HANDLERS, workers.on_heartbeats).transaction()

    def apply(self, msg):
        with self.transaction():
            HANDLERS[type(msg)](self.ctx, msg)
        for message, agent in self.ctx.outbox:
            self.pub.control(message, agent)
        self.ctx.outbox.clear()

    def release(self):
        with self.transaction():
            batch = release.release(self.ctx)
        self.pub.chunk_batch(batch)  # the service sends them after the commit
        return [message for message, _, _ in batch]

    def submit(self, type_name="sleep", priority=50, max_retries=3, **settings):
        v = task_type(type_name).validate(settings)
        task = Task.create(type=type_name, parser=type_name, settings=v.settings, priority=priority,
                           frame_start=v.frame_start, frame_end=v.frame_end,
                           frames_total=v.frames_total, max_retries=max_retries)
        self.apply(m.TaskSubmitted(task_id=task.id))
        return task.id

    def hello(self, name, commands=("sleep",), boot="b1"):
        self.apply(m.AgentHello(agent=name, hostname=name, system="Linux", pools=["default"],
                                commands=list(commands), boot_id=boot))

    def run(self, agent, assign, outcome="completed", frames=None):
        self.apply(m.ChunkStarted(agent=agent, chunk_id=assign.chunk_id, lease_id=assign.lease_id,
                                  started_at=self.now))
        done = frames if frames is not None else [f for a, b in assign.frames for f in range(a, b + 1)]
        self.apply(m.ChunkFinished(agent=agent, chunk_id=assign.chunk_id, lease_id=assign.lease_id,
                                   outcome=outcome, finished_at=self.now, frames_done=done,
                                   reason="exit code 1" if outcome == "failed" else ""))


@contextlib.contextmanager
def open_farm(tmp_path, **config):
    """A Farm on a fresh SQLite database under ``tmp_path``, releasing nothing ahead; ``config`` on top."""
    from common.config import load_config

    db = open_and_migrate(f"sqlite:///{tmp_path}/d.db")
    db.connect(reuse_if_open=True)
    try:
        yield Farm(load_config({}, **{"release_ahead": 0, **config}))
    finally:
        db.close()


@pytest.fixture
def farm(tmp_path):
    with open_farm(tmp_path, agent_timeout_s=10, heartbeat_interval_s=1) as farm:
        yield farm


def test_a_sleep_task_runs_chunk_by_chunk_and_counts_every_frame_once(farm):
    tid = farm.submit(frame_start=1, frame_end=6, chunk_size=3)
    assert Chunk.select().where(Chunk.task == tid).count() == 2
    farm.hello("a1")
    (first,) = farm.release()
    assert first.frames == [[1, 3]] and first.attempt == 1
    assert farm.release() == []  # one idle agent, nothing released ahead
    farm.apply(m.ChunkStarted(agent="a1", chunk_id=first.chunk_id, lease_id=first.lease_id, started_at=1))
    farm.apply(m.ChunkProgress(agent="a1", chunk_id=first.chunk_id, lease_id=first.lease_id,
                               frames_done=[1, 2]))
    farm.apply(m.ChunkProgress(agent="a1", chunk_id=first.chunk_id, lease_id=first.lease_id,
                               frames_done=[1, 2]))  # duplicate delivery
    task = Task.get_by_id(tid)
    assert (task.status, task.frames_done, task.frame_current) == ("rendering", 2, 2)
    assert Worker.get(name="a1").current_task == tid
    farm.apply(m.ChunkFinished(agent="a1", chunk_id=first.chunk_id, lease_id=first.lease_id,
                               outcome="completed", finished_at=2, frames_done=[1, 2, 3]))
    (second,) = farm.release()
    farm.run("a1", second)
    farm.run("a1", second)  # a duplicate of the whole attempt changes nothing
    task = Task.get_by_id(tid)
    assert (task.status, task.frames_done, task.frame_current) == ("completed", 6, 6)
    assert [c.frames_done for c in Chunk.select().order_by(Chunk.index)] == [[1, 2, 3], [4, 5, 6]]


def test_a_finished_report_carrying_its_start_opens_and_ends_the_attempt_in_one_event(farm):
    tid = farm.submit(type_name="noop", frame_start=1, frame_end=2)
    farm.hello("a1", commands=("noop",))
    (first,) = farm.release()
    assert farm.release() == []  # one idle agent, nothing released ahead
    farm.now = 50.0
    farm.apply(m.ChunkFinished(agent="a1", chunk_id=first.chunk_id, lease_id=first.lease_id,
                               outcome="completed", finished_at=42.5, frames_done=[1], started_at=42.0))
    attempt = Attempt.get(Attempt.lease_id == first.lease_id)
    assert (attempt.outcome, attempt.started_at, attempt.finished_at) == ("completed", 42.0, 42.5)
    chunk = Chunk.get_by_id(first.chunk_id)
    assert (chunk.status, chunk.started_at, chunk.frames_done) == ("completed", 42.0, [1])
    worker = Worker.get(name="a1")
    assert (worker.current_lease, worker.activity) == (None, "idle")  # never busy with it
    assert Task.get_by_id(tid).status == "rendering"
    (nxt,) = farm.release()  # the agent is free again: the next chunk goes to it
    farm.apply(m.ChunkFinished(agent="a1", chunk_id=nxt.chunk_id, lease_id=nxt.lease_id,
                               outcome="completed", finished_at=43.0, frames_done=[2], started_at=43.0))
    assert Task.get_by_id(tid).status == "completed"
    assert Task.get_by_id(tid).frames_done == 2


def test_a_withdrawn_release_goes_back_to_pending_unless_its_chunk_has_started(farm):
    farm.submit(frame_start=1, frame_end=2, chunk_size=1)
    farm.hello("a1")
    farm.hello("a2")
    one, two = farm.release()
    farm.apply(m.ChunkStarted(agent="a2", chunk_id=two.chunk_id, lease_id=two.lease_id, started_at=1))
    with farm.transaction():
        withdrawn = leases.withdraw(farm.ctx, [(one.chunk_id, one.lease_id), (two.chunk_id, two.lease_id)],
                                    "not confirmed by the broker")
    assert withdrawn == 1
    lost = Chunk.get_by_id(one.chunk_id)
    assert (lost.status, lost.lease_id, lost.attempts) == ("pending", None, 0)  # not an attempt
    assert Chunk.get_by_id(two.chunk_id).status == "running"
    (again,) = farm.release()
    assert (again.chunk_id, again.attempt) == (one.chunk_id, 1) and again.lease_id != one.lease_id
    farm.apply(m.ChunkStarted(agent="a1", chunk_id=one.chunk_id, lease_id=one.lease_id, started_at=2))
    assert Chunk.get_by_id(one.chunk_id).lease_id == again.lease_id  # the withdrawn lease is stale


def test_a_report_on_an_old_lease_changes_nothing_and_the_sender_is_told_to_abort(farm):
    farm.submit(frame_start=1, frame_end=1)
    farm.hello("a1")
    (assign,) = farm.release()
    farm.apply(m.ChunkFinished(agent="a1", chunk_id=assign.chunk_id, lease_id="not-the-lease",
                               outcome="completed", finished_at=1, frames_done=[1]))
    farm.apply(m.ChunkStarted(agent="a2", chunk_id=assign.chunk_id, lease_id="old", started_at=1))
    chunk = Chunk.get_by_id(assign.chunk_id)
    assert chunk.status == "released" and chunk.frames_done == []
    assert [(c.kind, a) for c, a in farm.pub.controls] == [("control.abort", "a2")]


def test_a_failing_chunk_is_retried_then_fails_the_task_with_every_attempt_kept(farm):
    tid = farm.submit(frame_start=1, frame_end=2, chunk_size=2, max_retries=2)
    farm.hello("a1")
    for _ in range(3):
        (assign,) = farm.release()
        farm.run("a1", assign, outcome="failed", frames=[1])
    task = Task.get_by_id(tid)
    assert task.status == "failed" and "failed 3 times" in task.error and task.frames_done == 0
    assert farm.release() == []
    assert [a.outcome for a in Attempt.select().order_by(Attempt.number)] == ["failed"] * 3


def test_a_retry_prefers_an_agent_that_has_not_failed_the_chunk(farm):
    farm.submit(frame_start=1, frame_end=1)
    farm.hello("a1")
    (assign,) = farm.release()
    farm.run("a1", assign, outcome="failed")
    farm.hello("a2")
    (retry,) = farm.release()
    assert retry.exclude_agents == ["a1"] and retry.attempt == 2


def test_a_silent_agent_goes_offline_and_its_chunk_is_queued_again(farm):
    tid = farm.submit(frame_start=1, frame_end=3, chunk_size=3)
    farm.hello("a1")
    (assign,) = farm.release()
    farm.apply(m.ChunkStarted(agent="a1", chunk_id=assign.chunk_id, lease_id=assign.lease_id, started_at=1))
    farm.apply(m.ChunkProgress(agent="a1", chunk_id=assign.chunk_id, lease_id=assign.lease_id,
                               frames_done=[1]))
    farm.now += 5
    assert workers.check_lost(farm.ctx) == 0
    farm.now += 6
    with database_proxy.atomic():
        assert workers.check_lost(farm.ctx) == 1
    assert Worker.get(name="a1").connection == "offline"
    chunk = Chunk.get_by_id(assign.chunk_id)
    assert chunk.status == "pending" and chunk.failures == 0
    assert Task.get_by_id(tid).frames_done == 0
    farm.hello("a2")
    (again,) = farm.release()
    assert again.chunk_id == assign.chunk_id and again.lease_id != assign.lease_id
    farm.run("a2", again)
    assert Task.get_by_id(tid).status == "completed"


def test_an_agent_restarting_under_its_name_gives_back_what_it_was_running(farm):
    farm.submit(frame_start=1, frame_end=1)
    farm.hello("a1", boot="first")
    (assign,) = farm.release()
    farm.apply(m.ChunkStarted(agent="a1", chunk_id=assign.chunk_id, lease_id=assign.lease_id, started_at=1))
    worker_id = Worker.get(name="a1").id
    farm.hello("a1", boot="second")
    assert Worker.get(name="a1").id == worker_id
    assert Chunk.get_by_id(assign.chunk_id).status == "pending"


def test_higher_priority_chunks_are_released_first(farm):
    farm.submit(frame_start=1, frame_end=4, priority=10)
    high = farm.submit(frame_start=1, frame_end=2, priority=90)
    farm.hello("a1")
    (assign,) = farm.release()
    assert assign.task_id == high


def test_raising_a_tasks_priority_reorders_its_pending_chunks(farm):
    low = farm.submit(frame_start=1, frame_end=4, priority=10)
    farm.submit(frame_start=1, frame_end=4, priority=50)
    farm.apply(m.TaskUpdate(task_id=low, priority=99))
    farm.hello("a1")
    (assign,) = farm.release()
    assert assign.task_id == low


def test_a_paused_task_releases_nothing_until_resumed(farm):
    tid = farm.submit(frame_start=1, frame_end=2)
    farm.apply(m.TaskUpdate(task_id=tid, status="paused"))
    farm.hello("a1")
    assert farm.release() == []
    assert Task.get_by_id(tid).status == "paused"
    farm.apply(m.TaskUpdate(task_id=tid, status="queued"))
    assert len(farm.release()) == 1
    assert [c.kind for c, _ in farm.pub.controls] == ["control.halt", "control.resume"]


def test_cancel_ends_every_open_chunk_and_tells_all_agents(farm):
    tid = farm.submit(frame_start=1, frame_end=4)
    farm.hello("a1")
    (assign,) = farm.release()
    farm.apply(m.ChunkStarted(agent="a1", chunk_id=assign.chunk_id, lease_id=assign.lease_id, started_at=1))
    farm.apply(m.TaskCancel(task_id=tid))
    assert Task.get_by_id(tid).status == "canceled"
    assert {c.status for c in Chunk.select()} == {"canceled"}
    halt, agent = farm.pub.controls[-1]
    assert (halt.kind, halt.action, agent) == ("control.halt", "cancel", None)
    farm.apply(m.ChunkFinished(agent="a1", chunk_id=assign.chunk_id, lease_id=assign.lease_id,
                               outcome="canceled", finished_at=2))
    assert Task.get_by_id(tid).status == "canceled"
    assert farm.release() == []


def test_a_declined_chunk_goes_back_without_counting_a_failure(farm):
    farm.submit(frame_start=1, frame_end=1)
    farm.hello("a1")
    (assign,) = farm.release()
    farm.apply(m.ChunkFinished(agent="a1", chunk_id=assign.chunk_id, lease_id=assign.lease_id,
                               outcome="declined", finished_at=1, reason="excluded"))
    chunk = Chunk.get_by_id(assign.chunk_id)
    assert (chunk.status, chunk.failures) == ("pending", 0)


def test_the_video_chunk_waits_until_every_render_chunk_has_completed(farm):
    tid = farm.submit("blender_render", filepath="/f/a.blend", output_path="/o/a_####",
                      frame_start=1, frame_end=4, chunk_size=2, video=True)
    farm.hello("a1", commands=("blender_render", "ffmpeg_encode"))
    farm.hello("a2", commands=("blender_render", "ffmpeg_encode"))
    first, second = farm.release()
    assert {first.command, second.command} == {"blender_render"}
    farm.run("a1", first)
    assert farm.release() == []  # the encode chunk is still blocked
    farm.run("a2", second)
    (encode,) = farm.release()
    assert encode.command == "ffmpeg_encode" and encode.parser == "ffmpeg"
    farm.run("a1", encode)
    task = Task.get_by_id(tid)
    assert (task.status, task.frames_done) == ("completed", 4)


def test_agents_only_get_commands_they_support(farm):
    farm.submit("blender_render", filepath="/f/a.blend", output_path="/o/a_####", frame_start=1,
                frame_end=1)
    farm.hello("a1", commands=("sleep",))
    assert farm.release() == []
    with database_proxy.atomic():
        tasks.update_waiting_reasons(farm.ctx)
    assert "no online, enabled agent in pool 'default' can run 'blender_render'" in Task.get().waiting_reason
    farm.hello("a2", commands=("blender_render",))
    assert len(farm.release()) == 1
    with database_proxy.atomic():
        tasks.update_waiting_reasons(farm.ctx)
    assert Task.get().waiting_reason == ""


def test_a_disabled_worker_gets_nothing_and_is_excluded_from_queued_chunks(farm):
    farm.submit(frame_start=1, frame_end=2)
    farm.hello("a1")
    farm.hello("a2")
    farm.apply(m.WorkerUpdate(worker_id=Worker.get(name="a2").id, status="disabled"))
    (assign,) = farm.release()
    assert assign.exclude_agents == ["a2"]


def test_an_agent_failing_three_chunks_of_a_task_is_blocklisted_until_cleared(farm):
    tid = farm.submit(frame_start=1, frame_end=4, chunk_size=1, max_retries=5)
    farm.hello("bad")
    for _ in range(3):
        (assign,) = farm.release()
        farm.run("bad", assign, outcome="failed")
    assert farm.release() == []  # the only agent is blocklisted for this task
    with database_proxy.atomic():
        tasks.update_waiting_reasons(farm.ctx)
    assert "blocklisted" in Task.get_by_id(tid).waiting_reason
    farm.hello("good")
    released = farm.release()
    assert released and all("bad" in a.exclude_agents for a in released)
    for assign in released:
        farm.run("good", assign)
    farm.apply(m.TaskBlocklistClear(task_id=tid))
    again = farm.release()
    assert again and all("bad" not in a.exclude_agents for a in again)


def test_a_batch_of_heartbeats_keeps_the_newest_reading_and_the_last_slow_readings(farm):
    farm.hello("a1")
    first = m.AgentHeartbeat(agent="a1", sent_at=1.0, update_frequent={"worker_cpu_percent": 10.0},
                             update_less_frequent={"worker_num_cpus": 2})
    second = m.AgentHeartbeat(agent="a1", sent_at=2.0, update_frequent={"worker_cpu_percent": 20.0})
    stranger = m.AgentHeartbeat(agent="new", sent_at=2.0, update_frequent={"worker_cpu_percent": 1.0})
    with database_proxy.atomic():
        workers.on_heartbeats(farm.ctx, [first])
    farm.now += 1
    with database_proxy.atomic():
        workers.on_heartbeats(farm.ctx, [second, stranger])
    a1 = Worker.get(name="a1")
    assert a1.update_frequent == {"worker_cpu_percent": 20.0}
    assert a1.update_less_frequent == {"worker_num_cpus": 2}  # an empty one keeps the stored
    assert a1.last_heartbeat == farm.now
    assert Worker.get(name="new").connection == "online"


def test_a_heartbeat_naming_a_dead_lease_gets_its_agent_an_abort(farm):
    farm.hello("a1")
    with database_proxy.atomic():
        workers.on_heartbeats(farm.ctx, [m.AgentHeartbeat(agent="a1", sent_at=1.0, lease_id="gone")])
    for message, agent in farm.ctx.outbox:
        farm.pub.control(message, agent)
    assert [(c.kind, c.lease_id, a) for c, a in farm.pub.controls] == [("control.abort", "gone", "a1")]


def test_no_agent_is_judged_lost_during_the_grace_after_the_dispatcher_connects(farm):
    farm.hello("a1")
    farm.now += 60  # the dispatcher was away; a1's queued heartbeats are not applied yet
    farm.ctx.grace_until = farm.now + 10
    with database_proxy.atomic():
        assert workers.check_lost(farm.ctx) == 0
    farm.now += 11
    with database_proxy.atomic():
        assert workers.check_lost(farm.ctx) == 1
