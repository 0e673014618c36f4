"""A real Prometheus scrapes a real gateway (under gunicorn, with a bearer token) and dispatcher.

One Prometheus server runs for the session (its own config, storage and port);
each test points it at its farm by rewriting the config and asking it to reload.
Everything is asserted through Prometheus's own query API.
"""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import free_port, missing, wait_for
from tests.integration.farmproc import sleep_settings

pytestmark = pytest.mark.integration
SCRAPE_INTERVAL = "500ms"


class Prometheus:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.config = workdir / "prometheus.yml"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def write(self, jobs: list[dict]) -> None:
        self.config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
            "scrape_configs": jobs}))

    def start(self, binary: str) -> None:
        self.write([])
        log = open(self.workdir / "prometheus.log", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [binary, f"--config.file={self.config}", f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self._ready, timeout=60, what="Prometheus to be ready")

    def _ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def scrape(self, jobs: list[dict]) -> None:
        self.write(jobs)
        response = requests.post(f"{self.url}/-/reload", timeout=10)
        assert response.status_code == 200, response.text

    def query(self, expr: str) -> list[dict]:
        response = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory):
    binary = shutil.which("prometheus")
    if binary is None:
        missing("the prometheus server (Debian package prometheus)")
    server = Prometheus(tmp_path_factory.mktemp("prometheus"))
    server.start(binary)
    yield server
    server.stop()


def jobs_for(farm, dispatcher_port: int) -> list[dict]:
    return [
        {"job_name": "corral-gateway", "metrics_path": "/metrics",
         "authorization": {"type": "Bearer", "credentials": farm.token},
         "static_configs": [{"targets": [f"127.0.0.1:{farm.port}"]}]},
        {"job_name": "corral-dispatcher",
         "static_configs": [{"targets": [f"127.0.0.1:{dispatcher_port}"]}]},
    ]


def start_farm(farm, prometheus) -> int:
    dispatcher_port = free_port()
    farm.gateway()
    farm._spawn("dispatcher", "dispatcher", "--metrics-port", str(dispatcher_port))
    prometheus.scrape(jobs_for(farm, dispatcher_port))
    for job in ("corral-gateway", "corral-dispatcher"):
        wait_for(lambda job=job: prometheus.value(f'up{{job="{job}"}}') == 1, timeout=30,
                 what=f"Prometheus to scrape {job}")
    return dispatcher_port


def test_prometheus_sees_a_pool_without_agents_backlogged_and_chunks_finishing_elsewhere(farm, prometheus):
    start_farm(farm, prometheus)
    # 12 frames in chunks of 2: six chunks that nobody can run.
    stuck = farm.submit("sleep", sleep_settings(1, 12, 2, 0.01), pool="nowhere")
    chunks = wait_for(lambda: farm.get(f"/tasks/{stuck['id']}/chunks")["chunks"], timeout=30,
                      what="the task compiled into chunks")
    expected = len(chunks)
    assert expected == 6
    wait_for(lambda: prometheus.value('corral_chunks_pending{pool="nowhere",command="sleep"}') == expected,
             timeout=30, what="corral_chunks_pending for the pool without agents")
    assert prometheus.value('corral_dispatcher_active{job="corral-dispatcher"}') == 1

    farm.agent("metrics-a", "default")
    farm.wait_online(["metrics-a"])
    # Eight chunks of 0.6 s on one agent: about five seconds, several scrapes.
    running = farm.submit("sleep", sleep_settings(1, 8, 1, 0.6))
    farm.wait_task(running["id"], timeout=90)
    finished = 'sum(corral_chunks_finished_total{command="sleep",outcome="completed"})'
    wait_for(lambda: prometheus.value(finished) == 8, timeout=30, what="8 finished chunks in Prometheus")
    series = prometheus.query('corral_chunks_finished_total{command="sleep",outcome="completed"}[2m]')
    values = [float(v) for _, v in series[0]["values"]]
    assert values == sorted(values), values
    assert values[-1] == 8
    assert any(0 < v < 8 for v in values), f"no scrape saw the task part-way: {values}"
    # The stuck task is still all waiting; the finished one waits for nothing.
    assert prometheus.value('corral_chunks_pending{pool="nowhere",command="sleep"}') == expected
    assert prometheus.value('corral_chunks_pending{pool="default",command="sleep"}') == 0
    assert prometheus.value('corral_workers{pool="default",state="idle"}') == 1
    assert prometheus.value('sum(corral_chunk_duration_seconds_count{command="sleep"})') == 8
    # The dispatcher is a scrape target of its own: its last scrape may be older than the gateway's.
    wait_for(lambda: prometheus.value('sum(corral_dispatcher_events_total{kind="chunk.finished"})') >= 8,
             timeout=30, what="the dispatcher's 8 chunk.finished events in Prometheus")
    assert prometheus.value('sum(corral_chunk_wait_seconds_count{pool="default",phase="released"})') == 8


def test_request_counts_are_summed_over_every_gunicorn_process(farm, prometheus):
    start_farm(farm, prometheus)
    route = 'corral_api_requests_total{job="corral-gateway",route="/tasks/{task_id}",method="GET",code="404"}'
    before = prometheus.value(f"sum({route})") or 0.0
    # A fresh connection each time, so that both gunicorn processes answer some of them.
    for _ in range(40):
        assert requests.get(f"{farm.api}/tasks/999999", headers=farm.headers, timeout=10).status_code == 404
    wait_for(lambda: prometheus.value(f"sum({route})") == before + 40, timeout=30,
             what="40 more requests counted")
    # Both gunicorn processes answered some of them (each writes its own file)...
    files = Path(farm.env["CORRAL_DATA_DIR"], "run", f"gateway-{farm.port}.metrics").glob("counter_*.db")
    assert len(list(files)) >= 2
    # ...and every scrape, whichever process answers it, gives the same total.
    totals = set()
    for _ in range(6):
        body = requests.get(f"{farm.api}/metrics", headers=farm.headers, timeout=10).text
        line = [ln for ln in body.splitlines() if ln.startswith("corral_api_requests_total{")
                and 'route="/tasks/{task_id}"' in ln and 'code="404"' in ln]
        totals.add(float(line[0].rsplit(" ", 1)[1]))
        time.sleep(0.05)
    assert totals == {before + 40}
