"""The dispatcher's process metrics (dispatcher/metrics.py) and `corral migrate`."""
from __future__ import annotations

import socket

import pytest
import requests
from prometheus_client import REGISTRY

from corral.cli import main
from dispatcher import metrics
from tests.conftest import free_port


def value(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def test_applying_a_message_is_counted_and_timed_by_kind_even_when_it_raises():
    before = value("corral_dispatcher_events_total", {"kind": "task.update"})
    with metrics.timed("task.update"):
        pass
    with pytest.raises(ValueError), metrics.timed("task.update"):
        raise ValueError("a handler bug")
    assert value("corral_dispatcher_events_total", {"kind": "task.update"}) == before + 2
    assert value("corral_dispatcher_event_seconds_count", {"kind": "task.update"}) >= 2


def test_release_batches_heartbeats_and_lost_agents_are_counted_and_passed_through():
    batches = value("corral_dispatcher_release_batch_chunks_count")
    assert metrics.released(0) == 0  # an empty pass is not a batch
    assert metrics.released(7) == 7
    assert value("corral_dispatcher_release_batch_chunks_count") == batches + 1
    beats, lost = value("corral_dispatcher_heartbeats_total"), value("corral_dispatcher_lost_agents_total")
    metrics.heartbeats_applied(500)
    assert metrics.agents_lost(2) == 2
    assert value("corral_dispatcher_heartbeats_total") == beats + 500
    assert value("corral_dispatcher_lost_agents_total") == lost + 2


def test_the_counting_publisher_counts_dead_letters_and_forwards_everything():
    class Publisher:
        def __init__(self):
            self.calls = []

        def dead_letter(self, *args):
            self.calls.append(("dead_letter", args))

        def chunk(self, *args):
            self.calls.append(("chunk", args))

    inner = Publisher()
    publisher = metrics.instrument(inner)
    before = value("corral_dispatcher_dead_letters_total")
    publisher.dead_letter(b"body", "bad", "kind", "queue")
    publisher.chunk("assign", "default", 50)
    assert value("corral_dispatcher_dead_letters_total") == before + 1
    assert inner.calls == [("dead_letter", (b"body", "bad", "kind", "queue")),
                           ("chunk", ("assign", "default", 50))]


@pytest.mark.parametrize(("dispatcher", "active"), [
    (object(), 1),  # no is_active yet: the only dispatcher is the active one
    (type("Standby", (), {"is_active": lambda self: False})(), 0),
    (type("Leader", (), {"is_active": lambda self: True})(), 1),
])
def test_the_active_gauge_asks_the_dispatcher_at_scrape_time(dispatcher, active):
    families = {f.name: f for f in metrics._StateCollector(dispatcher).collect()}
    assert families["corral_dispatcher_active"].samples[0].value == active
    assert families["corral_build_info"].samples[0].value == 1


def test_the_metrics_port_serves_the_text_format():
    port = free_port()
    metrics.serve(object(), port)
    try:
        body = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert "corral_dispatcher_active 1.0" in body
        assert "corral_dispatcher_heartbeats_total" in body
    finally:
        for collector in list(REGISTRY._collector_to_names):
            if isinstance(collector, metrics._StateCollector):
                REGISTRY.unregister(collector)


def test_a_busy_metrics_port_stops_the_dispatcher_with_a_sentence():
    from common.config import load_config
    from dispatcher.service import run_dispatcher

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SystemExit, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            run_dispatcher(load_config({}), port)
    assert not [c for c in REGISTRY._collector_to_names if isinstance(c, metrics._StateCollector)]


def test_corral_migrate_creates_the_schema_and_can_run_again(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CORRAL_DATABASE_URL", f"sqlite:///{tmp_path / 'm.db'}")
    assert main(["migrate"]) == 0
    assert main(["migrate"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == out[1] and out[0].startswith("database schema at version ")
    import sqlite3

    tables = {row[0] for row in sqlite3.connect(tmp_path / "m.db").execute(
        "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"tasks", "chunks", "workers", "farm_counts"} <= tables
