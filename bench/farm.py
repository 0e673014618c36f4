"""Starting and stopping real processes: Corral services, Celery workers, load generators.

Every process runs in its own session (process group) and is recorded in a
module-level registry, so ``kill_all`` stops whatever a failed row left behind.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests

from bench.broker import KOMBU_URL, DepthProbe
from common.topology import dispatcher_queue_name

ROOT = Path(__file__).resolve().parent.parent
CORRAL = [sys.executable, "-m", "corral.cli"]
POSTGRES_ADMIN_DSN = "host=localhost port=5432 user=postgres dbname=postgres"

_LIVE: dict[int, subprocess.Popen[bytes]] = {}


def spawn(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new process group with its output in ``log_path``."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                cwd=ROOT, start_new_session=True)
    _LIVE[proc.pid] = proc
    return proc


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace_s: float = 10.0) -> None:
    """Signal the process group, then kill it if it outlives the grace period."""
    _LIVE.pop(proc.pid, None)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
    # Children (gunicorn workers) may outlive their parent: the group goes in every case.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def stop_many(procs: list[subprocess.Popen[bytes]], sig: int = signal.SIGTERM, grace_s: float = 10.0) -> None:
    """Signal every group first, then wait: shutdowns overlap instead of adding up."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.0, deadline - time.monotonic()))
        stop(proc, signal.SIGKILL, grace_s=5)


def kill_all() -> None:
    """Stop every process still registered (the last line of defence on failure)."""
    stop_many(list(_LIVE.values()), signal.SIGTERM, grace_s=5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:g}s waiting for {what}")


def sqlite_url(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'corral.db'}"


@contextlib.contextmanager
def postgres_database(name: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one farm, dropped afterwards."""
    import psycopg2

    admin = psycopg2.connect(POSTGRES_ADMIN_DSN)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql://postgres@localhost:5432/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


class Farm:
    """A Corral farm of separate processes in one namespace, on one database."""

    def __init__(self, namespace: str, database_url: str, workdir: Path, token: str,
                 extra_env: dict[str, str] | None = None) -> None:
        self.namespace = namespace
        self.database_url = database_url
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "CORRAL_BROKER_URL": KOMBU_URL,
                    "CORRAL_DATABASE_URL": database_url, "CORRAL_NAMESPACE": namespace,
                    "CORRAL_DATA_DIR": str(workdir), "CORRAL_ADMIN_TOKEN": token,
                    # Agents must authenticate (docs/security.md): the bootstrap farm secret.
                    "CORRAL_AGENT_SECRET": secrets.token_hex(16),
                    "PYTHONPATH": str(ROOT), **(extra_env or {})}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def __enter__(self) -> Farm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        proc = spawn([*CORRAL, *args], self.env, self.workdir / f"{name}.log")
        self.procs[name] = proc
        return proc

    def gateway(self, workers: int = 2, threads: int = 4) -> None:
        self._spawn("gateway", "gateway", "--port", str(self.port), "--workers", str(workers),
                    "--threads", str(threads))
        wait_for(self._healthy, 60, "the gateway to answer /health", 0.2)

    def _healthy(self) -> bool:
        self.check_alive()
        try:
            return self.session.get(f"{self.api}/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def check_alive(self) -> None:
        """Raise with its log if a process of this farm has exited."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def dispatcher(self) -> subprocess.Popen[bytes]:
        """Start the dispatcher and wait until it consumes (it has migrated the database by then).

        The other processes start after it: two processes creating SQLite's tables
        at the same instant can fail with "database is locked".
        """
        proc = self._spawn("dispatcher", "dispatcher")
        probe = DepthProbe()
        queue = dispatcher_queue_name(self.namespace)

        def consuming() -> bool:
            self.check_alive()
            return probe.consumers(queue) > 0
        try:
            wait_for(consuming, 60, "the dispatcher to consume", 0.1)
        finally:
            probe.close()
        return proc

    def agents(self, names: list[str]) -> None:
        for name in names:
            self._spawn(f"agent-{name}", "agent", "--name", name)

    def wait_online(self, names: list[str], timeout_s: float = 60) -> None:
        def online() -> bool:
            self.check_alive()
            workers = self.get("/workers")
            return all(workers.get(n, {}).get("connection") == "online" for n in names)
        wait_for(online, timeout_s, f"agents {names} online", 0.2)

    def stop_process(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            stop(proc)

    def close(self) -> None:
        # Agents first (they say goodbye to a live dispatcher), then the rest.
        agents = [p for n, p in self.procs.items() if n.startswith("agent-")]
        others = [p for n, p in self.procs.items() if not n.startswith("agent-")]
        stop_many(agents)
        stop_many(others)
        self.procs.clear()
        self.session.close()

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    # -- REST ------------------------------------------------------------------

    def get(self, path: str) -> Any:
        response = self.session.get(f"{self.api}{path}", timeout=30)
        response.raise_for_status()
        return response.json()

    def submit(self, type_name: str, settings: dict[str, Any], **fields: Any) -> dict[str, Any]:
        body = {"type": type_name, "settings": settings, **fields}
        response = self.session.post(f"{self.api}/tasks", json=body, timeout=120)
        if response.status_code != 202:
            raise RuntimeError(f"POST /tasks answered {response.status_code}: {response.text[:300]}")
        return response.json()

    def cancel(self, task_id: int) -> None:
        self.session.delete(f"{self.api}/tasks/{task_id}", timeout=30)

    def wait_task(self, task_id: int, timeout_s: float, interval_s: float = 0.05) -> dict[str, Any]:
        def final() -> dict[str, Any] | None:
            task = self.get(f"/tasks/{task_id}")
            return task if task["status"] in ("completed", "failed", "canceled") else None
        task = wait_for(final, timeout_s, f"task {task_id} to finish", interval_s)
        if task["status"] != "completed":
            raise RuntimeError(f"task {task_id} ended {task['status']}: {task.get('error')}")
        return task


def agent_names(count: int, prefix: str = "a") -> list[str]:
    return [f"{prefix}{i + 1}" for i in range(count)]


def new_run_id() -> str:
    return uuid.uuid4().hex[:8]


def new_token() -> str:
    """An admin token for the run's farms (the gateway wants 16+ printable characters)."""
    return secrets.token_urlsafe(24)
