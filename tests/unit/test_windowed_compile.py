"""A task's chunks are compiled as a stream and inserted a window at a time, each exactly once.

On the real state machine and SQLite: windows, a rolled-back window, a new
dispatcher taking over half way, a redelivered ``task.submitted``, a cancel or
a compile error half way, and the dependencies of later steps.
"""
from __future__ import annotations

import itertools
import random
import tracemalloc

import pytest

from common import messages as m
from common.frames import count, split_chunks, to_ranges
from common.jobtypes import task_type
from common.models import BLOCKED, CANCELED, FAILED, PENDING, Chunk, Task, database_proxy
from dispatcher import tasks
from dispatcher.compilers import compile_task
from dispatcher.context import Context
from tests.unit.test_dispatcher_state import open_farm

TWO_STEPS = """\
name: twostep
version: 1
settings:
  frames: {type: frames}
steps:
  - name: first
    command: sleep
    parser: sleep
    args: ["--frames={frames}"]
  - name: second
    command: sleep
    after: [first]
    parser: sleep
    args: ["{frame_first}"]
"""


@pytest.fixture
def farm(tmp_path, monkeypatch):
    types = tmp_path / "types"
    types.mkdir()
    (types / "twostep.yaml").write_text(TWO_STEPS)
    monkeypatch.setattr(tasks, "SUBMIT_WINDOW", 4)
    with open_farm(tmp_path, agent_timeout_s=10, heartbeat_interval_s=1, job_types_dir=str(types)) as farm:
        yield farm


def compile_window(ctx, budget):
    """One compile_some call in its own transaction, as the dispatcher loop makes it."""
    with database_proxy.atomic():
        return tasks.compile_some(ctx, budget)


def rows(task_id):
    """(index, frames, depends_on, status) of every chunk of the task, in index order."""
    return [(c.index, c.frames, c.depends_on, c.status)
            for c in Chunk.select().where(Chunk.task == task_id).order_by(Chunk.index)]


def expected_rows(farm, task_id):
    """The rows a compile in one go gives."""
    task = Task.get_by_id(task_id)
    return [(s.index, s.frames, list(s.depends_on), BLOCKED if s.depends_on else PENDING)
            for s in compile_task(task.type, task.settings, farm.ctx.config.job_types_dir)]


def test_a_task_larger_than_a_window_is_compiled_over_several_calls_and_marked_compiled_at_the_end(farm):
    task_id = farm.submit("noop", frame_start=1, frame_end=25)
    assert len(rows(task_id)) == 4  # the first window, in the burst that brought task.submitted
    assert not Task.get_by_id(task_id).compiled and farm.ctx.compile_wanted

    progress, more = [], True
    while more:
        more = compile_window(farm.ctx, 7)
        progress.append((len(rows(task_id)), Task.get_by_id(task_id).compiled, more))

    assert progress == [(11, False, True), (18, False, True), (25, True, False)]
    task = Task.get_by_id(task_id)
    assert (task.compiled, task.compiled_upto) == (True, 25)
    assert rows(task_id) == expected_rows(farm, task_id)
    assert farm.ctx.compiles == {} and not farm.ctx.compile_wanted


def test_a_task_that_fits_the_submit_window_is_compiled_in_the_burst_itself(farm):
    task_id = farm.submit("noop", frame_start=1, frame_end=4)
    assert Task.get_by_id(task_id).compiled
    assert [r[0] for r in rows(task_id)] == [0, 1, 2, 3]


def test_a_window_that_rolls_back_is_compiled_again_from_where_the_database_stands(farm):
    task_id = farm.submit("noop", frame_start=1, frame_end=20)
    with pytest.raises(RuntimeError), database_proxy.atomic():
        tasks.compile_some(farm.ctx, 5)  # the generator moves on to 9 ...
        raise RuntimeError("the commit never happens")  # ... but the database stays at 4
    assert len(rows(task_id)) == 4

    while compile_window(farm.ctx, 5):
        pass
    assert rows(task_id) == expected_rows(farm, task_id)


def test_a_new_dispatcher_resumes_a_half_compiled_task_without_inserting_a_chunk_twice(farm):
    task_id = farm.submit("noop", frame_start=1, frame_end=30)
    compile_window(farm.ctx, 6)
    successor = Context(farm.ctx.config)  # a standby taking over: nothing in memory, compile_wanted set
    while compile_window(successor, 8):
        pass
    assert Task.get_by_id(task_id).compiled
    assert rows(task_id) == expected_rows(farm, task_id)


def test_a_redelivered_task_submitted_goes_on_with_the_next_window(farm):
    task_id = farm.submit("noop", frame_start=1, frame_end=10)
    farm.apply(m.TaskSubmitted(task_id=task_id))  # at-least-once: the same message again
    assert [r[0] for r in rows(task_id)] == list(range(8))
    while compile_window(farm.ctx, 100):
        pass
    farm.apply(m.TaskSubmitted(task_id=task_id))  # and once more after the compile: nothing changes
    assert rows(task_id) == expected_rows(farm, task_id)


def test_a_later_step_waits_for_every_chunk_of_the_earlier_one_across_windows(farm):
    task = Task.create(type="twostep", parser="sleep", settings={"frames": [[1, 5]]}, frame_start=1,
                       frame_end=5, frames_total=5)
    farm.apply(m.TaskSubmitted(task_id=task.id))
    while compile_window(farm.ctx, 3):
        pass
    got = rows(task.id)
    assert got == expected_rows(farm, task.id)
    assert [(r[2], r[3]) for r in got[5:]] == [([0, 1, 2, 3, 4], BLOCKED)] * 5


def test_no_chunk_of_a_half_compiled_task_is_released(farm):
    farm.hello("a1", commands=("noop",))
    task_id = farm.submit("noop", frame_start=1, frame_end=10)
    assert farm.release() == []
    while compile_window(farm.ctx, 100):
        pass
    assert [a.task_id for a in farm.release()] == [task_id]


def test_a_compiled_task_on_the_same_queue_does_not_release_a_half_compiled_ones_chunks(farm):
    farm.hello("a1", commands=("noop",))
    farm.hello("a2", commands=("noop",))
    later = farm.submit("noop", priority=10, frame_start=1, frame_end=2)  # compiled in its burst
    half = farm.submit("noop", priority=90, frame_start=1, frame_end=10)  # 4 of 10 chunks in
    assert [a.task_id for a in farm.release()] == [later, later]
    assert Task.get_by_id(half).compiled is False


def test_a_task_canceled_half_compiled_stops_compiling_and_its_chunks_are_canceled(farm):
    task_id = farm.submit("noop", frame_start=1, frame_end=50)
    compile_window(farm.ctx, 10)
    farm.apply(m.TaskCancel(task_id=task_id))
    assert compile_window(farm.ctx, 10) is False
    assert {r[3] for r in rows(task_id)} == {CANCELED} and len(rows(task_id)) == 14
    assert farm.ctx.compiles == {}


def test_a_compile_error_after_the_first_windows_fails_the_task_and_cancels_what_was_inserted(farm):
    # Settings that no longer compile (a job type changed after submission): the second step's
    # first argument would start with "-" at frame -2, its first chunk, index 8.
    task = Task.create(type="twostep", parser="sleep", settings={"frames": [[-2, 5]]}, frame_start=-2,
                       frame_end=5, frames_total=8)
    farm.apply(m.TaskSubmitted(task_id=task.id))
    while compile_window(farm.ctx, 3):
        pass
    failed = Task.get_by_id(task.id)
    assert failed.status == FAILED and "cannot compile task" in failed.error
    assert [r[0] for r in rows(task.id)] == list(range(7))  # the window holding index 8 never went in
    assert {r[3] for r in rows(task.id)} == {CANCELED}


def test_compiling_a_huge_task_holds_one_chunk_at_a_time_not_the_list():
    settings = task_type("noop").validate({"frame_start": 1, "frame_end": 200_000}).settings
    tracemalloc.start()
    chunks = sum(1 for _ in compile_task("noop", settings))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert chunks == 200_000
    assert peak < 2**20  # a list of 200,000 chunk specs takes about 60 MiB


def test_chunks_of_a_step_whose_arguments_name_no_chunk_token_share_one_params():
    noop = list(compile_task("noop", task_type("noop").validate({"frame_start": 1, "frame_end": 3}).settings))
    assert noop[0].params is noop[1].params is noop[2].params
    sleep = list(compile_task("sleep", task_type("sleep").validate({"frames": "1-2"}).settings))
    assert sleep[0].params["args"] != sleep[1].params["args"]


def cut_then_sort(ranges, size):
    """The splitting rule stated as a list: cut every run, pack remainders while they fit, sort."""
    chunks, partial = [], []
    for first, last in ranges:
        for start in range(first, last + 1, size):
            piece = [start, min(start + size - 1, last)]
            if count([piece]) == size:
                chunks.append([piece])
            elif partial and count(partial) + count([piece]) <= size:
                partial.append(piece)
            else:
                chunks += [partial] if partial else []
                partial = [piece]
    chunks += [partial] if partial else []
    return sorted(chunks, key=lambda chunk: chunk[0][0])


def test_streamed_frame_splitting_gives_exactly_the_chunks_of_cutting_everything_then_sorting():
    rng = random.Random(12)
    for _ in range(3000):
        ranges = to_ranges(sorted(rng.sample(range(-20, 60), rng.randint(1, 50))))
        size = rng.randint(1, 9)
        assert list(split_chunks(ranges, size)) == cut_then_sort(ranges, size), (ranges, size)


def test_a_full_chunk_cut_while_a_packed_one_is_open_comes_after_it():
    # 1, 3 and 10 are remainders packed together; 5-8, a full chunk, waited behind them.
    assert list(itertools.islice(split_chunks([[1, 1], [3, 3], [5, 8], [10, 10]], 4), 2)) == [
        [[1, 1], [3, 3], [10, 10]], [[5, 8]]]
