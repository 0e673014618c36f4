"""The client verbs against the real gateway served by wsgiref in a thread."""
from __future__ import annotations

import argparse
import json
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from api_gateway.app import create_app
from common.config import load_config
from common.db import open_and_migrate
from common.messages import TaskCancel, TaskSubmitted
from common.models import Chunk, Task, Worker, database_proxy
from corral.client import add_client_commands, table

ADMIN = "test-admin-token-0123456789"


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass


class ThreadedServer(WSGIServer):
    daemon_threads = True


class RecordingPublisher:
    def __init__(self) -> None:
        self.sent: list = []

    def event(self, message) -> None:
        self.sent.append(message)


@pytest.fixture
def publisher():
    return RecordingPublisher()


@pytest.fixture
def api(tmp_path, publisher, monkeypatch):
    db = open_and_migrate(f"sqlite:///{tmp_path}/c.db")
    monkeypatch.setenv("CORRAL_TOKEN", ADMIN)  # the client verbs send it
    app = create_app(load_config({}, admin_token=ADMIN), publisher)
    server = make_server("127.0.0.1", 0, app, server_class=ThreadedServer, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(5)
    db.close()


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="corral")
    add_client_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_submit_merges_the_shortcut_flags_into_the_settings(api, publisher, capsys):
    code = run("submit", "--api", api, "--type", "noop", "--settings", '{"chunk_size": 1}',
               "--frames", "1-20", "--chunk-size", "5", "--priority", "80", "--task-id", "t1")

    assert code == 0
    out = capsys.readouterr().out
    assert "task 1 accepted" in out and "20 frames" in out and "priority 80" in out
    assert publisher.sent == [TaskSubmitted(task_id=1)]
    with database_proxy.connection_context():
        task = Task.get_by_id(1)
    assert task.settings == {"frames": [[1, 20]], "chunk_size": 5}
    assert task.client_task_id == "t1"


def test_submit_reads_settings_from_a_file_and_prints_json(api, tmp_path, capsys):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"frame_start": 1, "frame_end": 3}))

    assert run("submit", "--api", api, "--type", "sleep", "--settings", f"@{path}", "--json") == 0
    assert json.loads(capsys.readouterr().out)["frames_total"] == 3


def test_a_refused_submission_prints_the_server_message_and_exits_1(api, capsys):
    code = run("submit", "--api", api, "--type", "noop", "--frames", "1-5", "--chunk-size", "0")

    assert code == 1
    assert "settings.chunk_size: must be at least 1" in capsys.readouterr().err


def test_unusable_settings_exit_2_without_calling_the_server(capsys):
    assert run("submit", "--api", "http://127.0.0.1:9", "--type", "noop", "--settings", "{nope") == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_an_unreachable_gateway_prints_a_sentence_and_exits_2(capsys):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert run("tasks", "--api", f"http://127.0.0.1:{port}") == 2
    err = capsys.readouterr().err
    assert err.startswith("Cannot reach the Corral API") and "Traceback" not in err


def test_tasks_prints_a_table_newest_first(api, capsys):
    for frames in ("1-2", "1-3"):
        run("submit", "--api", api, "--type", "noop", "--frames", frames)
    capsys.readouterr()

    assert run("tasks", "--api", api, "--status", "queued") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "TYPE", "STATUS", "PRI", "POOL", "FRAMES", "CLIENT", "ID", "CREATED"]
    assert lines[1].split()[:3] == ["2", "noop", "queued"] and "0/3" in lines[1]
    assert lines[2].split()[0] == "1"
    assert "2 of 2 tasks" in lines[-1]


def test_task_shows_the_task_and_its_chunks(api, capsys):
    run("submit", "--api", api, "--type", "noop", "--frames", "1-4", "--chunk-size", "2")
    with database_proxy.connection_context():
        worker = Worker.create(name="alpha")
        Chunk.create(task=1, index=0, command="noop", frames=[[1, 2]], frame_count=2, frames_done=[1],
                     status="running", worker=worker, attempts=1, step="noop")
    capsys.readouterr()

    assert run("task", "--api", api, "1") == 0
    out = capsys.readouterr().out
    assert "chunks: 1 (1 running)" in out
    row = ["0", "noop", "1-2", "1/2", "running", "1", "0", "alpha"]
    assert any(line.split()[:8] == row for line in out.splitlines())
    assert run("task", "--api", api, "1", "--json") == 0
    assert json.loads(capsys.readouterr().out)["chunks"][0]["worker"] == "alpha"


def test_an_unknown_task_exits_1_with_the_server_message(api, capsys):
    assert run("task", "--api", api, "99") == 1
    assert "task 99 not found" in capsys.readouterr().err


def test_workers_prints_one_row_per_worker(api, capsys):
    with database_proxy.connection_context():
        Worker.create(name="beta", connection="online", pools=["default", "gpu"])
        Worker.create(name="alpha")

    assert run("workers", "--api", api) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["NAME", "alpha", "beta"]
    assert "default,gpu" in lines[2]
    assert run("workers", "--api", api, "--json") == 0
    assert set(json.loads(capsys.readouterr().out)) == {"alpha", "beta"}


def test_cancel_asks_the_dispatcher_to_cancel(api, publisher, capsys):
    run("submit", "--api", api, "--type", "noop", "--frames", "1")
    assert run("cancel", "--api", api, "1") == 0
    assert publisher.sent[-1] == TaskCancel(task_id=1)
    assert "cancel requested for task 1" in capsys.readouterr().out


def test_the_api_url_defaults_to_the_environment(monkeypatch):
    monkeypatch.setenv("CORRAL_API", "http://farm:9000")
    parser = argparse.ArgumentParser()
    add_client_commands(parser.add_subparsers())
    assert parser.parse_args(["workers"]).api == "http://farm:9000"
    monkeypatch.delenv("CORRAL_API")
    parser = argparse.ArgumentParser()
    add_client_commands(parser.add_subparsers())
    assert parser.parse_args(["tasks"]).api == "http://127.0.0.1:8080"


def test_tables_pad_columns_to_their_widest_cell():
    assert table(["A", "LONG"], [[1, None], ["wide", [1, 2]]]).splitlines() == [
        "A     LONG", "1     -", "wide  1,2"]
