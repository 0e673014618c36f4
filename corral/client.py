"""Command-line verbs over the REST gateway, with the standard library only.

``add_client_commands(subparsers)`` adds ``submit``, ``tasks``, ``task``,
``workers``, ``worker`` and ``cancel`` to an argparse sub-command set; each sets ``func``,
sends the API token from ``CORRAL_TOKEN`` or ``<data dir>/admin.token`` (the one
``corral up`` made), and
which returns the exit code: 0 on success, 1 when the server refused the
request (its error message is printed), 2 when the request could not be made
(the server does not answer, or the command line itself is unusable).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_API = "http://127.0.0.1:8080"
TOKEN_ENV = "CORRAL_TOKEN"
ADMIN_TOKEN_FILE = "admin.token"
TIMEOUT_S = 30.0
EXIT_OK, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE = 0, 1, 2, 2


class ClientError(Exception):
    """A request could not be made or was refused; ``exit_code`` says which."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# ---------------------------------------------------------------- HTTP


def find_token(data_dir: str | None) -> str | None:
    """The API token: ``$CORRAL_TOKEN``, else the admin token file ``corral up`` keeps."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    folder = data_dir or os.environ.get("CORRAL_DATA_DIR") or "var"
    try:
        return (Path(folder) / ADMIN_TOKEN_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def call(api: str, method: str, path: str, body: dict[str, Any] | None = None,
         token: str | None = None) -> Any:
    """Send one request and return the decoded JSON answer (None when empty)."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(api.rstrip("/") + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        hint = ""
        if exc.code == 401 and not token:
            hint = f" (no token: set {TOKEN_ENV}, or run where <data dir>/{ADMIN_TOKEN_FILE} is)"
        raise ClientError(f"error {exc.code}: {_server_message(exc.read())}{hint}", EXIT_REFUSED) from None
    except urllib.error.URLError as exc:
        raise ClientError(f"Cannot reach the Corral API at {api} ({exc.reason}); "
                          "is the gateway running, and is --api right?", EXIT_UNREACHABLE) from None
    except OSError as exc:
        raise ClientError(f"The Corral API at {api} did not answer ({exc}).", EXIT_UNREACHABLE) from None
    return json.loads(raw) if raw.strip() else None


def _call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    return call(args.api, method, path, body, token=find_token(args.data_dir))


def _server_message(raw: bytes) -> str:
    try:
        error = json.loads(raw)["error"]
        return str(error["message"])
    except (ValueError, KeyError, TypeError):
        return raw.decode("utf-8", "replace").strip()[:500] or "no details from the server"


# ---------------------------------------------------------------- formatting


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Fixed-width columns, as wide as their widest cell."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "-"
    return str(value)


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def ranges(frames: list[list[int]]) -> str:
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in frames)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


# ---------------------------------------------------------------- verbs


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    text = args.settings or "{}"
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            message = f"Cannot read the settings file {text[1:]}: {exc.strerror}."
            raise ClientError(message, EXIT_USAGE) from None
    try:
        settings = json.loads(text)
    except ValueError as exc:
        raise ClientError(f"--settings is not valid JSON: {exc}.", EXIT_USAGE) from None
    if not isinstance(settings, dict):
        raise ClientError("--settings must be a JSON object.", EXIT_USAGE)
    if args.frames is not None:
        settings["frames"] = args.frames
    if args.chunk_size is not None:
        settings["chunk_size"] = args.chunk_size
    return settings


def cmd_submit(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"type": args.type, "settings": _settings(args)}
    for field in ("priority", "parser", "task_id", "pool"):
        value = getattr(args, field)
        if value is not None:
            body[field] = value
    task = _call(args, "POST", "/tasks", body)
    if args.json:
        _print_json(task)
    else:
        print(f"task {task['id']} accepted ({task['type']}, {task['frames_total']} frames, "
              f"priority {task['priority']}, pool {task['pool']}, status {task['status']})")
    return EXIT_OK


TASK_COLUMNS = ("ID", "TYPE", "STATUS", "PRI", "POOL", "FRAMES", "CLIENT ID", "CREATED")


def _task_row(task: dict[str, Any]) -> list[Any]:
    return [task["id"], task["type"], task["status"], task["priority"], task["pool"],
            f"{task['frames_done']}/{task['frames_total']}", task["task_id"], when(task["created_at"])]


def cmd_tasks(args: argparse.Namespace) -> int:
    query = {k: v for k, v in (("status", args.status), ("type", args.type),
                               ("limit", args.limit), ("offset", args.offset)) if v is not None}
    page = _call(args, "GET", "/tasks?" + urllib.parse.urlencode(query))
    if args.json:
        _print_json(page)
        return EXIT_OK
    print(table(TASK_COLUMNS, [_task_row(t) for t in page["tasks"]]))
    shown = len(page["tasks"])
    print(f"\n{shown} of {page['total']} tasks (offset {page['offset']})")
    return EXIT_OK


CHUNK_COLUMNS = ("INDEX", "STEP", "FRAMES", "DONE", "STATUS", "ATTEMPTS", "FAILURES", "WORKER", "ERROR")


def cmd_task(args: argparse.Namespace) -> int:
    """``corral task [show] ID``, or one of the control verbs (``corral.control``)."""
    from corral.control import TASK_VERBS, cmd_task_control

    verb, rest = (args.words[0], args.words[1:]) if args.words[0] in (*TASK_VERBS, "show") else (
        "show", args.words)
    if verb != "show":
        return cmd_task_control(args, verb, rest)
    if len(rest) != 1 or not rest[0].isdigit():
        raise ClientError(f"Usage: corral task [show] ID, or corral task {'|'.join(TASK_VERBS)} ID ...",
                          EXIT_USAGE)
    args.id = int(rest[0])
    return _show_task(args)


def _show_task(args: argparse.Namespace) -> int:
    task = _call(args, "GET", f"/tasks/{args.id}")
    chunks = _call(args, "GET", f"/tasks/{args.id}/chunks")["chunks"]
    if args.json:
        _print_json({**task, "chunks": chunks})
        return EXIT_OK
    for key in ("id", "task_id", "type", "parser", "status", "priority", "pool", "format",
                "frame_start", "frame_end", "frames_done", "frames_total", "max_retries", "error"):
        print(f"{key:>13}: {_cell(task[key])}")
    for key in ("created_at", "started_at", "finished_at"):
        print(f"{key:>13}: {when(task[key])}")
    counts = ", ".join(f"{n} {status}" for status, n in sorted(task["chunks_by_status"].items()))
    print(f"{'chunks':>13}: {task['chunks_total']}" + (f" ({counts})" if counts else ""))
    if chunks:
        rows = [[c["index"], c.get("step", ""), ranges(c["frames"]), f"{c['frames_done']}/{c['frame_count']}",
                 c["status"], c["attempts"], c["failures"], c["worker"], (c["error"] or "")[:60]]
                for c in chunks]
        print()
        print(table(CHUNK_COLUMNS, rows))
    return EXIT_OK


WORKER_COLUMNS = ("NAME", "ID", "STATUS", "CONNECTION", "ACTIVITY", "TASK", "POOLS", "ACTION", "SLEEP",
                  "LAST SEEN")


def cmd_workers(args: argparse.Namespace) -> int:
    workers = _call(args, "GET", "/workers")
    if args.json:
        _print_json(workers)
        return EXIT_OK
    from corral.control import schedule_text

    rows = [[name, w["id"], w["status"], w["connection"], w["activity"], w["current_task"],
             w["pools"], w.get("pending_action"), schedule_text(w.get("sleep_schedule"), w.get("asleep")),
             when(w["last_heartbeat"])] for name, w in sorted(workers.items())]
    print(table(WORKER_COLUMNS, rows))
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    task = _call(args, "DELETE", f"/tasks/{args.id}")
    if args.json:
        _print_json(task)
    else:
        print(f"cancel requested for task {task['id']} (it was {task['status']}); "
              "the dispatcher applies it in a moment")
    return EXIT_OK


# ---------------------------------------------------------------- argparse


def _guarded(verb: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(verb(args))
        except ClientError as exc:
            print(exc, file=sys.stderr)
            return exc.exit_code
    run.__doc__ = verb.__doc__
    return run


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--api", default=os.environ.get("CORRAL_API") or DEFAULT_API,
                        help="gateway URL (default: $CORRAL_API or %(default)s)")
    common.add_argument("--json", action="store_true", help="print the server's JSON")
    common.add_argument("--data-dir", default=None,
                        help=f"where to find {ADMIN_TOKEN_FILE} when ${TOKEN_ENV} is not set "
                             "(default: $CORRAL_DATA_DIR or ./var)")
    return common


def add_client_commands(subparsers: Any) -> None:
    """Add the REST client verbs to an argparse ``add_subparsers()`` object."""
    common = _common()
    submit = subparsers.add_parser("submit", parents=[common], help="submit a task")
    submit.add_argument("--type", required=True, help="job type (corral jobtypes list)")
    submit.add_argument("--settings", help="settings as JSON, or @file.json")
    submit.add_argument("--frames", help="frame list such as 1-100,120 (merged into settings)")
    submit.add_argument("--chunk-size", type=int, help="frames per chunk (merged into settings)")
    submit.add_argument("--priority", type=int, help="0..100, higher runs first")
    submit.add_argument("--parser", help="output parser (default: the type's own)")
    submit.add_argument("--task-id", help="your id for the task; resubmitting it is harmless")
    submit.add_argument("--pool", help="worker pool (default: default)")
    submit.set_defaults(func=_guarded(cmd_submit))

    tasks = subparsers.add_parser("tasks", parents=[common], help="list tasks, newest first")
    tasks.add_argument("--status", help="comma-separated statuses to show")
    tasks.add_argument("--type", help="only tasks of this type")
    tasks.add_argument("--limit", type=int, help="how many (1..500, default 50)")
    tasks.add_argument("--offset", type=int, help="skip this many")
    tasks.set_defaults(func=_guarded(cmd_tasks))

    task = subparsers.add_parser(
        "task", parents=[common], help="show a task (task ID), or: task pause|resume|retry ID, "
                                       "task priority ID N",
        description="corral task [show] ID | pause ID | resume ID | priority ID N | retry ID")
    task.add_argument("words", nargs="+", metavar="[VERB] ID", help="show (default), pause, resume, "
                      "priority (then ID and the new priority 0..100) or retry (its failed chunks)")
    task.set_defaults(func=_guarded(cmd_task))

    workers = subparsers.add_parser("workers", parents=[common], help="list workers")
    workers.set_defaults(func=_guarded(cmd_workers))

    cancel = subparsers.add_parser("cancel", parents=[common], help="cancel a task")
    cancel.add_argument("id", type=int)
    cancel.set_defaults(func=_guarded(cmd_cancel))

    from corral.control import add_worker_command

    add_worker_command(subparsers, common, _guarded)
