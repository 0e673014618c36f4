"""``corral worker ...`` and ``corral task VERB ...`` against the real gateway (and a fake one for retry)."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from common.messages import TaskUpdate, WorkerUpdate
from common.models import Worker, database_proxy
from tests.unit.test_client import api, publisher, run  # noqa: F401 - fixtures, used by name

SCHEDULE = {"days": ["mon", "tue"], "start": "09:00", "end": "19:00", "tz": "Europe/Amsterdam"}


@pytest.fixture
def ws1(api):  # noqa: F811
    with database_proxy.connection_context():
        return Worker.create(name="ws-1", hostname="ws-1", connection="online", pools=["default"],
                             current_task=7)


@pytest.mark.parametrize("argv, expected, said", [
    (["enable"], {"status": "enabled"}, "enabled"),
    (["disable"], {"status": "disabled"}, "disabled"),
    (["stop"], {"action": "stop"}, "exits 0"),
    (["stop-now"], {"action": "stop_now"}, "hands it back"),
    (["restart"], {"action": "restart"}, "exits 75"),
    (["cancel-action"], {"action_clear": True}, "withdrawn"),
    (["pools", "{name}", "gpu,default"], {"pools": ["gpu", "default"]}, "pools set to gpu,default"),
    (["pools", "{name}", "--reset"], {"pools_reset": True}, "the agent itself"),
    (["sleep", "{name}", "--days", "mon,tue", "--start", "09:00", "--end", "19:00", "--tz",
      "Europe/Amsterdam"], {"sleep_schedule": SCHEDULE}, "asleep mon,tue 09:00-19:00 Europe/Amsterdam"),
    (["sleep", "{name}", "--clear"], {"sleep_schedule_clear": True}, "cleared"),
])
@pytest.mark.parametrize("name", ["ws-1", "id"])
def test_each_worker_verb_sends_its_change_by_name_or_id(api, publisher, ws1, capsys, argv, expected,  # noqa: F811
                                                         said, name):
    who = str(ws1.id) if name == "id" else "ws-1"
    words = [w.replace("{name}", who) for w in argv] if len(argv) > 1 else [argv[0], who]

    assert run("worker", *words, "--api", api) == 0

    assert publisher.sent == [WorkerUpdate(worker_id=ws1.id, **expected)]
    out = capsys.readouterr().out
    assert out.startswith(f"worker ws-1 (id {ws1.id}): ") and said in out


def test_worker_verbs_print_json_with_what_was_asked(api, ws1, capsys):  # noqa: F811
    assert run("worker", "restart", "ws-1", "--api", api, "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"id": ws1.id, "name": "ws-1",
                                                   "requested": {"action": "restart"}, "task_id": 7}


def test_the_servers_refusal_of_a_bad_schedule_is_printed_and_exits_1(api, publisher, ws1, capsys):  # noqa: F811
    code = run("worker", "sleep", "ws-1", "--start", "9am", "--end", "19:00", "--tz", "UTC", "--api", api)
    assert code == 1
    assert "sleep_schedule.start: must be a time of day" in capsys.readouterr().err
    assert run("worker", "pools", "ws-1", "GPU", "--api", api) == 1
    assert "pools[0]" in capsys.readouterr().err
    assert publisher.sent == []


@pytest.mark.parametrize("argv", [
    ["sleep", "ws-1", "--start", "09:00"],
    ["sleep", "ws-1", "--clear", "--tz", "UTC"],
    ["pools", "ws-1"],
    ["pools", "ws-1", "gpu", "--reset"],
])
def test_an_incomplete_worker_command_line_exits_2_without_changing_anything(api, publisher, ws1, argv,  # noqa: F811
                                                                           capsys):
    assert run("worker", *argv, "--api", api) == 2
    assert publisher.sent == []


def test_an_unknown_worker_name_exits_1(api, publisher, capsys):  # noqa: F811
    assert run("worker", "stop", "nobody", "--api", api) == 1
    assert "No worker is named 'nobody'" in capsys.readouterr().err


def test_worker_show_and_the_workers_table_show_action_pools_and_schedule(api, capsys):  # noqa: F811
    with database_proxy.connection_context():
        Worker.create(name="ws-1", pools=["gpu"], operator_pools=["gpu"], pending_action="stop",
                      sleep_schedule=SCHEDULE, asleep=True)

    assert run("workers", "--api", api) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert "ACTION" in header and "SLEEP" in header
    assert "gpu" in row and "stop" in row and "mon,tue 09:00-19:00 Europe/Amsterdam (asleep)" in row
    assert run("worker", "show", "ws-1", "--api", api) == 0
    shown = capsys.readouterr().out
    assert "pending_action: stop" in shown and "pools_set_by: operator" in shown
    assert "sleep_schedule: mon,tue 09:00-19:00 Europe/Amsterdam" in shown
    assert run("worker", "show", "ws-1", "--api", api, "--json") == 0
    assert json.loads(capsys.readouterr().out)["sleep_schedule"] == SCHEDULE


@pytest.mark.parametrize("argv, expected", [
    (["pause", "1"], TaskUpdate(task_id=1, status="paused")),
    (["resume", "1"], TaskUpdate(task_id=1, status="queued")),
    (["priority", "1", "90"], TaskUpdate(task_id=1, priority=90)),
])
def test_task_verbs_change_a_task_over_rest(api, publisher, capsys, argv, expected):  # noqa: F811
    run("submit", "--api", api, "--type", "noop", "--frames", "1-2")
    publisher.sent.clear()
    capsys.readouterr()

    assert run("task", *argv, "--api", api) == 0

    assert publisher.sent == [expected]
    assert capsys.readouterr().out.startswith("task 1: ")
    assert run("task", *argv, "--api", api, "--json") == 0
    assert json.loads(capsys.readouterr().out)["id"] == 1


def test_task_verbs_refuse_a_bad_command_line_and_the_server_refuses_a_bad_priority(api, capsys):  # noqa: F811
    run("submit", "--api", api, "--type", "noop", "--frames", "1-2")
    assert run("task", "priority", "1", "--api", api) == 2
    assert run("task", "pause", "x", "--api", api) == 2
    assert run("task", "priority", "1", "900", "--api", api) == 1
    assert "priority: must be between 0 and 100" in capsys.readouterr().err
    assert run("task", "show", "1", "--api", api) == 0  # `show` is the default verb, said or not


class FakeRetry(BaseHTTPRequestHandler):
    """Answers ``POST /tasks/{id}/retry`` as the dashboard's endpoint is specified: 202 and a body."""

    seen: list[tuple[str, str, str | None]] = []

    def do_POST(self) -> None:  # noqa: N802 - the base class's naming
        FakeRetry.seen.append(("POST", self.path, self.headers.get("Authorization")))
        body = json.dumps({"task_id": 5, "retried": 2}).encode()
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args) -> None:  # noqa: A002
        pass


def test_task_retry_posts_to_the_retry_endpoint_with_the_token(monkeypatch, capsys):
    monkeypatch.setenv("CORRAL_TOKEN", "retry-token")
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeRetry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        api_url = f"http://127.0.0.1:{server.server_port}"
        assert run("task", "retry", "5", "--api", api_url) == 0
        assert "task 5: retry of its failed chunks requested" in capsys.readouterr().out
        assert run("task", "retry", "5", "--api", api_url, "--json") == 0
        assert json.loads(capsys.readouterr().out) == {"task_id": 5, "retried": 2}
    finally:
        server.shutdown()
        server.server_close()
    assert FakeRetry.seen == [("POST", "/tasks/5/retry", "Bearer retry-token")] * 2
