"""GET /metrics on the real gateway app (SQLite), and the counts the dispatcher writes for it."""
from __future__ import annotations

import dataclasses
import math

import pytest
from falcon import testing
from prometheus_client.parser import text_string_to_metric_families

from api_gateway.app import create_app
from common import auth, farmstats
from common.config import load_config
from common.models import Chunk, FarmCount, Task, Worker, database_proxy
from dispatcher import stats
from dispatcher.context import Context
from tests.unit.gateway_support import AUTH, CONFIG, NOW


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``(sample name, sorted labels) -> value`` for every sample of an exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def scrape(client) -> dict:
    response = client.simulate_get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return samples(response.text)


def task(status: str, pool: str = "default", **fields) -> Task:
    return Task.create(type="sleep", parser="sleep", settings={}, frame_start=1, frame_end=1, pool=pool,
                       status=status, compiled=True, created_at=NOW - 100, **fields)


def chunks(owner: Task, status: str, count: int, command: str = "sleep") -> None:
    start = Chunk.select().where(Chunk.task == owner.id).count()
    for index in range(start, start + count):
        Chunk.create(task=owner.id, index=index, command=command, frames=[[1, 1]], frame_count=1,
                     status=status)


def worker(name: str, pools: list[str], status="enabled", connection="online", lease=None, asleep=False,
           action=None) -> None:
    Worker.create(name=name, pools=pools, commands=["sleep", "noop"], status=status, connection=connection,
                  current_lease=lease, asleep=asleep, pending_action=action)


def test_metrics_need_a_read_token_unless_made_public(client, tmp_path, publisher):
    assert client.simulate_get("/metrics", headers={"Authorization": ""}).status_code == 401
    _, secret = auth.create_token("prometheus", ["read"])
    reader = client.simulate_get("/metrics", headers={"Authorization": f"Bearer {secret}"})
    assert reader.status_code == 200
    _, agent_secret = auth.create_token("agent-1", ["agent"])
    agent = client.simulate_get("/metrics", headers={"Authorization": f"Bearer {agent_secret}"})
    assert agent.status_code == 403
    public = testing.TestClient(create_app(dataclasses.replace(CONFIG, metrics_public=True), publisher))
    assert public.simulate_get("/metrics").status_code == 200
    assert public.simulate_get("/tasks").status_code == 401  # only /metrics opens


def test_farm_gauges_count_tasks_waiting_chunks_and_workers_from_the_database(client):
    rendering = task("rendering")
    chunks(rendering, "pending", 3)
    chunks(rendering, "released", 2)
    chunks(rendering, "running", 1)
    chunks(rendering, "completed", 4)
    chunks(task("queued", pool="gpu"), "pending", 7, command="noop")
    chunks(task("paused"), "pending", 5)  # paused: not waiting to run
    task("completed")
    task("completed")
    worker("idle-1", ["default"])
    worker("busy-1", ["default", "gpu"], lease="abc")
    worker("off-1", ["gpu"], connection="offline", lease="stale")
    worker("dis-1", ["default"], status="disabled")
    worker("sleepy-1", ["gpu"], asleep=True)
    worker("leaving-1", ["gpu"], lease="def", action="stop")  # stopping after its chunk
    found = scrape(client)
    for state, count in (("queued", 1), ("rendering", 1), ("paused", 1), ("completed", 2), ("failed", 0),
                         ("canceled", 0)):
        assert found[("corral_tasks", (("state", state),))] == count, state
    assert found[("corral_chunks_pending", (("command", "sleep"), ("pool", "default")))] == 5
    assert found[("corral_chunks_pending", (("command", "noop"), ("pool", "gpu")))] == 7
    # A queue some agent serves but nothing waits in is reported as 0, so a scaler always has a series.
    assert found[("corral_chunks_pending", (("command", "sleep"), ("pool", "gpu")))] == 0
    expected = {("default", "idle"): 1, ("default", "busy"): 1, ("default", "disabled"): 1,
                ("default", "offline"): 0, ("gpu", "busy"): 1, ("gpu", "offline"): 1, ("gpu", "idle"): 0,
                ("gpu", "disabled"): 0, ("gpu", "asleep"): 1, ("gpu", "stopping"): 1,
                ("default", "asleep"): 0}
    for (pool, state), count in expected.items():
        assert found[("corral_workers", (("pool", pool), ("state", state)))] == count, (pool, state)
    version = [labels for name, labels in found if name == "corral_build_info"]
    assert version and found[("corral_build_info", version[0])] == 1


def test_the_dispatchers_counts_become_a_counter_and_cumulative_histograms(client):
    owner = task("rendering", pool="gpu")
    chunks(owner, "released", 1)
    chunk = Chunk.get(Chunk.task == owner.id)
    chunk.released_at = NOW - 30
    ctx = Context(load_config({}))
    with database_proxy.atomic():
        stats.chunk_started(ctx, chunk, owner, NOW)  # waited 30 s since release, 100 s since submission
        chunk.started_at = NOW
        stats.chunk_finished(ctx, chunk, "completed", NOW + 90)  # ran 90 s
        stats.chunk_finished(ctx, chunk, "failed", NOW + 3)
        stats.chunk_finished(ctx, chunk, "completed", NOW + 2 * 86400)  # longer than the last bucket
        stats.flush(ctx)
    found = scrape(client)
    assert found[("corral_chunks_finished_total", (("command", "sleep"), ("outcome", "completed")))] == 2
    assert found[("corral_chunks_finished_total", (("command", "sleep"), ("outcome", "failed")))] == 1
    duration = {labels: value for (name, labels), value in found.items()
                if name == "corral_chunk_duration_seconds_bucket"}
    assert duration[(("command", "sleep"), ("le", "60.0"))] == 0
    assert duration[(("command", "sleep"), ("le", "120.0"))] == 1
    assert duration[(("command", "sleep"), ("le", "86400.0"))] == 1
    assert duration[(("command", "sleep"), ("le", "+Inf"))] == 2
    assert found[("corral_chunk_duration_seconds_count", (("command", "sleep"),))] == 2
    assert found[("corral_chunk_duration_seconds_sum", (("command", "sleep"),))] == 90 + 2 * 86400
    released = (("phase", "released"), ("pool", "gpu"))
    pending = (("phase", "pending"), ("pool", "gpu"))
    assert found[("corral_chunk_wait_seconds_sum", released)] == 30
    assert found[("corral_chunk_wait_seconds_sum", pending)] == 100
    assert found[("corral_chunk_wait_seconds_bucket", (("le", "15.0"), *released))] == 0
    assert found[("corral_chunk_wait_seconds_bucket", (("le", "30.0"), *released))] == 1


def test_a_retried_chunk_waits_from_the_end_of_its_previous_attempt(client):
    from common.models import Attempt

    owner = task("rendering")
    chunks(owner, "released", 1)
    chunk = Chunk.get(Chunk.task == owner.id)
    Attempt.create(chunk=chunk.id, number=1, lease_id="first", outcome="failed", finished_at=NOW - 4)
    chunk.attempts = 2
    ctx = Context(load_config({}))
    stats.chunk_started(ctx, chunk, owner, NOW)
    stats.flush(ctx)
    assert scrape(client)[("corral_chunk_wait_seconds_sum", (("phase", "pending"), ("pool", "default")))] == 4


def test_counts_add_up_in_one_row_per_series_and_bucket(client):
    farmstats.add(farmstats.counter(farmstats.FINISHED, "noop", "completed"))
    farmstats.add(farmstats.counter(farmstats.FINISHED, "noop", "completed", 2))
    farmstats.add(farmstats.observation(farmstats.DURATION, "noop", "", 0.2)
                  + farmstats.observation(farmstats.DURATION, "noop", "", 0.7))
    assert FarmCount.select().where(FarmCount.metric == farmstats.FINISHED).get().value == 3
    assert FarmCount.select().where(FarmCount.metric == farmstats.DURATION).get().value == 2
    assert FarmCount.select().count() == 3  # finished, one duration bucket, the duration sum


@pytest.mark.parametrize(("value", "bucket"), [(0, 1.0), (1.0, 1.0), (1.01, 5.0), (86400, 86400.0),
                                               (86401, math.inf)])
def test_an_observation_falls_in_the_first_bucket_at_least_as_large(value, bucket):
    assert farmstats.bucket_of(value, farmstats.DURATION_BUCKETS_S) == bucket


def test_requests_are_counted_by_route_template_never_by_id(client):
    client.simulate_get("/tasks/123456")
    client.simulate_get("/tasks/123456")
    client.simulate_get("/no/such/route/42")
    client.simulate_request("BREW", "/tasks")
    found = scrape(client)
    assert found[("corral_api_requests_total", (("code", "404"), ("method", "GET"),
                                                ("route", "/tasks/{task_id}")))] >= 2
    assert found[("corral_api_requests_total", (("code", "404"), ("method", "GET"),
                                                ("route", "unmatched")))] >= 1
    assert not [labels for _, labels in found if ("method", "BREW") in labels]
    assert not [labels for _, labels in found if any("123456" in value for _, value in labels)]
    assert found[("corral_api_request_duration_seconds_count", (("method", "GET"),
                                                                ("route", "/tasks/{task_id}")))] >= 2


def test_requests_with_a_token_are_counted_and_the_metrics_scrape_itself_too(client):
    client.simulate_get("/metrics", headers=AUTH)
    found = scrape(client)
    labels = (("code", "200"), ("method", "GET"), ("route", "/metrics"))
    assert found[("corral_api_requests_total", labels)] >= 1


def test_the_gateway_starts_with_an_empty_metrics_directory(tmp_path, monkeypatch):
    from corral.cli import fresh_metrics_dir

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    config = dataclasses.replace(CONFIG, data_dir=str(tmp_path))
    first = fresh_metrics_dir(config, 8080)
    (first / "counter_123.db").write_bytes(b"an earlier run's counts")
    assert fresh_metrics_dir(config, 8080) == first
    assert list(first.iterdir()) == []
    assert fresh_metrics_dir(config, 8081) != first  # two gateways on one host keep apart
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "chosen"))
    assert fresh_metrics_dir(config, 8080) == tmp_path / "chosen"
