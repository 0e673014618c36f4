"""Adaptive chunking: chunk sizes follow measured frame times, on the real state machine and SQLite."""
from __future__ import annotations

import pytest

from common import frames as framelib
from common import jobtypes
from common import messages as m
from common.models import Chunk, Task, database_proxy
from dispatcher import adaptive
from tests.unit.test_dispatcher_state import open_farm

ADAPTIVE = """\
name: slowing
version: 1
settings:
  frames: {type: frames}
steps:
  - name: render
    command: sleep
    chunk_target_s: 1.0
    chunk_min: 1
    chunk_max: 8
    parser: sleep
    args: ["--frames={frames}"]
  - name: publish
    command: sleep
    after: [render]
    chunks: single
    args: ["--frames={task_frames}"]
"""


@pytest.fixture
def farm(tmp_path):
    types = tmp_path / "types"
    types.mkdir()
    (types / "slowing.yaml").write_text(ADAPTIVE)
    with open_farm(tmp_path, agent_timeout_s=1000, heartbeat_interval_s=1, job_types_dir=str(types)) as farm:
        yield farm


def submit(farm, frames):
    jobtype = jobtypes.task_type("slowing", farm.ctx.config.job_types_dir)
    v = jobtype.validate({"frames": frames})
    task = Task.create(type="slowing", parser="sleep", settings=v.settings, frame_start=v.frame_start,
                       frame_end=v.frame_end, frames_total=v.frames_total)
    farm.apply(m.TaskSubmitted(task_id=task.id))
    return task.id


def run_timed(farm, assign, seconds_per_frame):
    """One attempt that takes as long as its frames do (the clock moves; nothing sleeps)."""
    frames = framelib.expand(assign.frames)
    farm.apply(m.ChunkStarted(agent="a1", chunk_id=assign.chunk_id, lease_id=assign.lease_id,
                              started_at=farm.now))
    farm.now += sum(seconds_per_frame(f) for f in frames)
    farm.apply(m.ChunkFinished(agent="a1", chunk_id=assign.chunk_id, lease_id=assign.lease_id,
                               outcome="completed", finished_at=farm.now, frames_done=frames))


def test_the_next_size_is_the_target_over_the_frame_time_within_min_and_max():
    assert adaptive.next_size(60, 2.0, 1, 100) == 30
    assert adaptive.next_size(60, 0.01, 1, 100) == 100
    assert adaptive.next_size(60, 600, 2, 100) == 2
    assert adaptive.next_size(60, 0, 1, 50) == 50


def test_chunks_start_small_grow_on_fast_frames_and_shrink_when_frames_get_slower(farm):
    tid = submit(farm, "1-40")
    assert Chunk.select().where(Chunk.task == tid, Chunk.step == "render").count() == 40  # chunk_min each
    farm.hello("a1")
    slow_from = 11
    sizes = []
    while True:
        released = farm.release()
        if not released:
            break
        (assign,) = released
        if assign.command == "sleep" and assign.frames:
            sizes.append(framelib.count(assign.frames))
        run_timed(farm, assign, lambda f: 0.1 if f < slow_from else 0.5)
    # 1 frame to measure; 0.1 s/frame -> 8 (the max); chunk 10-17 ran 0.45 s/frame, the
    # slowest of the recent chunks, so the size falls at once to round(1.0 / 0.45) = 2.
    assert sizes[:4] == [1, 8, 8, 2]
    assert set(sizes[4:-1]) == {2} and sizes[-1] == 1  # 40 = 1 + 8 + 8 + 11 * 2 + 1
    assert sum(sizes) == 40
    task = Task.get_by_id(tid)
    assert (task.status, task.frames_done) == ("completed", 40)
    rendered = sorted(f for c in Chunk.select().where(Chunk.task == tid, Chunk.step == "render")
                      for f in c.frames_done)
    assert rendered == list(range(1, 41))  # every frame once


def test_the_publish_step_waits_for_every_render_chunk_after_merges(farm):
    tid = submit(farm, "1-12")
    farm.hello("a1")
    (first,) = farm.release()
    run_timed(farm, first, lambda f: 0.1)
    publish = Chunk.get(Chunk.task == tid, Chunk.step == "publish")
    renders = {c.index for c in Chunk.select().where(Chunk.task == tid, Chunk.step == "render")}
    assert set(publish.depends_on) == renders and len(renders) == 1 + 1 + 3  # 1 done, 8 merged, 3 fine
    assert publish.status == "blocked"


def test_a_sized_chunk_that_is_still_pending_is_split_when_frames_get_slower(farm):
    tid = submit(farm, "1-12")
    task = Task.get_by_id(tid)
    jobtype = jobtypes.task_type("slowing", farm.ctx.config.job_types_dir)
    step = jobtype.step("render")
    with database_proxy.atomic():
        adaptive.reshape(task, jobtype, step, 8)
        adaptive.reshape(task, jobtype, step, 3)
    rows = list(Chunk.select().where(Chunk.task == tid, Chunk.step == "render").order_by(Chunk.index))
    assert [(c.index, c.frames) for c in rows] == [(0, [[1, 3]]), (8, [[9, 9]]), (9, [[10, 10]]),
                                                   (10, [[11, 11]]), (11, [[12, 12]]), (13, [[4, 8]])]
    assert rows[0].params["args"] == ["--frames=1-3"] and rows[-1].params["args"] == ["--frames=4-8"]
    publish = Chunk.get(Chunk.task == tid, Chunk.step == "publish")
    assert publish.depends_on == [0, 8, 9, 10, 11, 13]
