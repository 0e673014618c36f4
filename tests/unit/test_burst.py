"""Group commit: a burst is one transaction; a failing event is isolated; a DB error keeps nothing."""
from __future__ import annotations

import pytest
from peewee import OperationalError

from common import messages as m
from common.config import load_config
from common.db import open_and_migrate
from common.models import Worker, database_proxy
from dispatcher import changes
from dispatcher.burst import Applier, Burst, Delivery
from dispatcher.context import Context
from dispatcher.leader import LeadershipLost
from dispatcher.service import HANDLERS
from dispatcher.workers import on_heartbeats


@pytest.fixture
def ctx(tmp_path):
    db = open_and_migrate(f"sqlite:///{tmp_path}/b.db")
    db.connect(reuse_if_open=True)
    yield Context(load_config({}), clock=lambda: 1000.0)
    db.close()


def hello(name):
    return m.AgentHello(agent=name, hostname=name, system="Linux", pools=["default"], commands=["sleep"])


def burst_of(*msgs):
    burst = Burst()
    for msg in msgs:
        burst.add(Delivery(msg, raw=None))
    return burst


def exploding(ctx, msg):
    ctx.send(m.ControlResume(task_id=99))  # queued before the failure: must not leak
    Worker.create(name="half-done")
    raise RuntimeError("a bug")


def test_a_failing_event_is_dead_lettered_alone_and_the_rest_of_its_burst_commits(ctx):
    handlers = {**HANDLERS, m.TaskCancel: exploding}
    applier = Applier(ctx, handlers, on_heartbeats)
    bad = m.TaskCancel(task_id=1)
    failures = applier.apply(burst_of(hello("a1"), bad, hello("a2"),
                                      m.AgentHeartbeat(agent="a1", sent_at=1.0)))
    assert [f.delivery.msg for f in failures] == [bad]
    assert sorted(w.name for w in Worker.select()) == ["a1", "a2"]
    assert all(message.kind != "control.resume" for message, _ in ctx.outbox)


def test_a_database_error_rolls_the_whole_burst_back_for_redelivery(ctx):
    def db_away(ctx, msg):
        raise OperationalError("disk I/O error")

    applier = Applier(ctx, {**HANDLERS, m.TaskCancel: db_away}, on_heartbeats)
    with pytest.raises(OperationalError):
        applier.apply(burst_of(hello("a1"), m.TaskCancel(task_id=1)))
    assert Worker.select().count() == 0
    assert ctx.outbox == [] and ctx.worker_ids == {}


def test_the_in_transaction_check_runs_first_and_a_refusal_writes_nothing(ctx):
    calls = []

    def fence():
        calls.append(database_proxy.in_transaction())
        raise OperationalError("not the leader any more")

    applier = Applier(ctx, HANDLERS, on_heartbeats, in_transaction=fence)
    with pytest.raises(OperationalError):
        applier.apply(burst_of(hello("a1")))
    assert calls == [True] and Worker.select().count() == 0


def test_a_lost_fence_is_not_taken_for_a_failing_event_and_nothing_is_dead_lettered(ctx):
    def fence():
        raise LeadershipLost("another dispatcher took over")

    applied = []
    handlers = {**HANDLERS, m.TaskCancel: lambda ctx, msg: applied.append(msg)}
    applier = Applier(ctx, handlers, on_heartbeats, in_transaction=fence, record=changes.record_message)
    with pytest.raises(LeadershipLost):
        applier.apply(burst_of(hello("a1"), m.TaskCancel(task_id=1)))
    assert applied == [] and Worker.select().count() == 0
    assert ctx.changed == {} and ctx.outbox == []


def test_every_event_of_a_burst_records_its_change_but_an_isolated_failure_records_none(ctx):
    def noting_then_exploding(ctx, msg):
        changes.task(ctx, msg.task_id)  # a handler's own change record, undone with its savepoint
        exploding(ctx, msg)

    handlers = {**HANDLERS, m.TaskCancel: noting_then_exploding}
    applier = Applier(ctx, handlers, on_heartbeats, record=changes.record_message)
    applier.apply(burst_of(hello("a1"), m.TaskCancel(task_id=7), m.TaskUpdate(task_id=8, priority=3),
                           m.AgentHeartbeat(agent="a1", sent_at=1.0)))
    assert set(ctx.changed) == {("worker", None, "a1"), ("task", 8), ("heartbeats",)}


def test_heartbeats_write_readings_only_when_they_change(ctx):
    applier = Applier(ctx, HANDLERS, on_heartbeats)
    applier.apply(burst_of(hello("a1")))
    beat = m.AgentHeartbeat(agent="a1", sent_at=1.0, update_frequent={"cpu": 1.0},
                            update_less_frequent={"disk": 40.0})
    applier.apply(burst_of(beat))
    Worker.update(update_frequent={"cpu": -1.0}).execute()  # a marker the next beat must not overwrite
    applier.apply(burst_of(beat))
    assert Worker.get().update_frequent == {"cpu": -1.0}
    applier.apply(burst_of(m.AgentHeartbeat(agent="a1", sent_at=2.0, update_frequent={"cpu": 2.0})))
    worker = Worker.get()
    assert worker.update_frequent == {"cpu": 2.0} and worker.update_less_frequent == {"disk": 40.0}
