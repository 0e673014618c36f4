"""Standby dispatchers on a real SQLite database: one active, fenced by an epoch (dispatcher/leader.py)."""
from __future__ import annotations

import pytest

from common.db import open_and_migrate
from common.models import DispatcherLeader, Task, database_proxy
from dispatcher.leader import Leader, LeadershipLost


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(tmp_path):
    db = open_and_migrate(f"sqlite:///{tmp_path}/d.db")
    db.connect(reuse_if_open=True)
    yield Clock()
    db.close()


def fenced_insert(leader, name):
    with database_proxy.atomic():
        leader.check_fence()
        Task.create(type="noop", parser=name, settings={}, frame_start=1, frame_end=1)


def test_only_one_of_two_dispatchers_becomes_active(clock):
    a, b = Leader("ns", 5, clock, "a"), Leader("ns", 5, clock, "b")
    assert a.try_acquire() and a.is_active()
    assert not b.try_acquire() and not b.is_active()
    with pytest.raises(LeadershipLost):
        fenced_insert(b, "b")
    assert Task.select().count() == 0


def test_a_standby_takes_over_an_expired_lease_and_the_old_leader_can_never_commit_again(clock):
    a, b = Leader("ns", 5, clock, "a"), Leader("ns", 5, clock, "b")
    a.try_acquire()
    fenced_insert(a, "a")
    clock.now += 5.1  # a froze: its lease ran out
    assert b.try_acquire()
    assert DispatcherLeader.get(namespace="ns").epoch == 2
    with pytest.raises(LeadershipLost):
        fenced_insert(a, "a woke up")  # the paused leader wakes and tries to commit
    assert [t.parser for t in Task.select()] == ["a"]
    assert not a.is_active()
    fenced_insert(b, "b")
    assert not a.try_acquire()  # b's lease is live: a stands by


def test_every_fenced_transaction_renews_the_lease(clock):
    a, b = Leader("ns", 5, clock, "a"), Leader("ns", 5, clock, "b")
    a.try_acquire()
    for _ in range(4):
        clock.now += 3
        fenced_insert(a, "a")
        assert not b.try_acquire()


def test_a_stopping_dispatcher_hands_over_at_once(clock):
    a, b = Leader("ns", 5, clock, "a"), Leader("ns", 5, clock, "b")
    a.try_acquire()
    a.step_down(release=True)
    assert b.try_acquire()


def test_a_leader_that_reconnects_keeps_its_epoch(clock):
    a = Leader("ns", 5, clock, "a")
    a.try_acquire()
    assert a.try_acquire() and a.epoch == 1


def test_namespaces_have_a_leader_each(clock):
    assert Leader("ns1", 5, clock, "a").try_acquire()
    assert Leader("ns2", 5, clock, "b").try_acquire()
