"""`corral up`: the one-process farm on memory:// and SQLite, driven over HTTP."""
from __future__ import annotations

import os
import signal
import subprocess

import pytest
import requests

from tests.conftest import free_port, wait_for
from tests.integration.farmproc import CORRAL, sleep_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def corral_up(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env["PYTHONUNBUFFERED"] = "1"
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([*CORRAL, "up", "--port", str(port), "--agents", "2",
                             "--data-dir", str(tmp_path / "var")],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    api = f"http://127.0.0.1:{port}"

    def healthy():
        try:
            return requests.get(f"{api}/health", timeout=1).ok
        except requests.RequestException:
            return proc.poll() is not None and pytest.fail((tmp_path / "up.log").read_text())
    wait_for(healthy, timeout=30, what="corral up to answer")
    yield proc, api, tmp_path, admin_headers(tmp_path / "var")
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def admin_headers(data_dir):
    """The admin token `corral up` made on its first start."""
    return {"Authorization": f"Bearer {(data_dir / 'admin.token').read_text().strip()}"}


def test_corral_up_runs_a_submitted_task_to_completion_and_stops_cleanly(corral_up):
    proc, api, tmp_path, auth = corral_up
    wait_for(lambda: len([w for w in requests.get(f"{api}/workers", headers=auth, timeout=5).json().values()
                          if w["connection"] == "online"]) == 2, timeout=20, what="two agents online")
    low = requests.post(f"{api}/tasks", headers=auth, timeout=5, json={
        "type": "sleep", "priority": 10, "settings": sleep_settings(1, 6, 1, 0.2)}).json()
    high = requests.post(f"{api}/tasks", headers=auth, timeout=5, json={
        "type": "sleep", "priority": 90, "settings": sleep_settings(1, 2, 1, 0.01)}).json()

    def finished():
        tasks = [requests.get(f"{api}/tasks/{t['id']}", headers=auth, timeout=5).json() for t in (low, high)]
        return tasks if all(t["status"] == "completed" for t in tasks) else None
    done_low, done_high = wait_for(finished, timeout=40, what="both tasks to complete")
    assert done_low["frames_done"] == 6 and done_high["frames_done"] == 2
    # Without broker priorities, the embedded dispatcher still ran the high task before most of the low.
    assert done_high["finished_at"] < done_low["finished_at"]
    out = (tmp_path / "up.log").read_text()
    assert "curl" in out and "memory://" in out
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0


def test_corral_up_prints_a_login_link_that_starts_one_session_and_streams_events(corral_up):
    import re

    _, api, tmp_path, auth = corral_up
    banner = tmp_path / "up.log"
    found = wait_for(lambda: re.search(r"(http://\S+/ui/login)#code=(\S+)", banner.read_text()),
                     timeout=10, what="the login link in the banner")
    assert found.group(1) == f"{api}/ui/login"
    first = requests.post(f"{api}/session", json={"code": found.group(2)}, timeout=5)
    assert first.status_code == 201 and "corral_session" in first.cookies
    assert requests.post(f"{api}/session", json={"code": found.group(2)}, timeout=5).status_code == 401
    # /events works over the in-process memory:// broker too.
    with requests.get(f"{api}/events?type=task", headers=auth, stream=True, timeout=10) as stream:
        lines = stream.iter_lines(chunk_size=1)  # wsgiref speaks HTTP/1.0: no chunks to split on
        assert next(lines).startswith(b"retry:")
        task = requests.post(f"{api}/tasks", headers=auth, timeout=5, json={
            "type": "noop", "settings": {"frame_start": 1, "frame_end": 1, "chunk_size": 1}}).json()
        # A read timeout (10 s, under the 15 s heartbeat) fails the test if the change never comes.
        mine = f'"id":{task["id"]},'.encode()
        assert next(line for line in lines if line.startswith(b"data:") and mine in line)
