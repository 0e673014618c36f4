"""Running a real farm for integration tests: gateway, dispatcher and agents as processes."""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.conftest import free_port, wait_for

CORRAL = [sys.executable, "-m", "corral.cli"]


class Farm:
    """Starts Corral processes with one test's environment and stops them all afterwards.

    The gateway is closed by default: the farm gives it an admin token
    (``CORRAL_ADMIN_TOKEN``) and sends it (``self.headers``), and makes the test's
    temporary directory (the parent of ``logdir``) its storage root.
    """

    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        env.setdefault("CORRAL_ADMIN_TOKEN", f"corral_test_{secrets.token_urlsafe(24)}")
        env.setdefault("CORRAL_STORAGE_ROOTS", str(logdir.parent))
        self.env = env
        self.token = env["CORRAL_ADMIN_TOKEN"]
        self.headers = {"Authorization": f"Bearer {self.token}"}
        self.logdir = logdir
        self.procs: dict[str, subprocess.Popen] = {}
        self.agent_names: list[str] = []  # every agent started, for cleaning up its queue
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}"
        self.verify: bool | str = True  # requests' verify: a CA file for a gateway with TLS

    def _spawn(self, name: str, *args: str, prefix: tuple[str, ...] = (),
               env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.logdir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([*prefix, *CORRAL, *args], env={**self.env, **(env or {})}, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def gateway(self, *args: str) -> None:
        self._spawn("gateway", "gateway", "--port", str(self.port), "--workers", "2", *args)
        wait_for(self._healthy, timeout=30, what="the gateway to answer /health")

    def _healthy(self) -> bool:
        try:
            return requests.get(f"{self.api}/health", timeout=1, verify=self.verify).status_code == 200
        except requests.RequestException:
            return False

    def dispatcher(self, name: str = "dispatcher", env: dict[str, str] | None = None,
                   args: tuple[str, ...] = ()) -> subprocess.Popen:
        """A ``corral dispatcher``; start several under different names for standbys. ``env``
        overrides the farm's environment for this process only; ``args`` are its options."""
        return self._spawn(name, "dispatcher", *args, env=env)

    def agent(self, name: str, *pools: str, credential: Path | None = None,
              env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()) -> subprocess.Popen:
        """An agent process; with ``credential`` (from ``enroll``) it proves its enrollment;
        ``prefix`` wraps its command (``ip netns exec NS`` for another host)."""
        args = ["agent", "--name", name]
        for pool in pools:
            args += ["--pool", pool]
        self.agent_names.append(name)
        extra = dict(env or {})
        if credential is not None:
            extra["CORRAL_AGENT_CREDENTIAL_FILE"] = str(credential)
        return self._spawn(f"agent-{name}", *args, env=extra, prefix=prefix)

    def enroll(self, name: str, *pools: str) -> Path:
        """``corral agent enroll`` through the gateway; returns the file holding the credential."""
        path = self.logdir.parent / f"{name}.credential"
        args = [*CORRAL, "agent", "enroll", name, "--api", self.api, "--credential-file", str(path)]
        for pool in pools:
            args += ["--pool", pool]
        done = subprocess.run(args, env={**self.env, "CORRAL_TOKEN": self.token}, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return path

    def revoke(self, name: str) -> None:
        done = subprocess.run([*CORRAL, "agent", "revoke", name, "--api", self.api],
                              env={**self.env, "CORRAL_TOKEN": self.token}, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr

    def wait_online(self, names: list[str], timeout: float = 30) -> dict:
        def online():
            workers = self.get("/workers")
            return workers if all(workers.get(n, {}).get("connection") == "online" for n in names) else None
        return wait_for(online, timeout=timeout, what=f"workers {names} online")

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else None
        proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait(5)

    def close(self) -> None:
        for name in list(self.procs):
            self.stop(name, signal.SIGTERM, timeout=10)
        self._delete_agent_queues(self.agent_names)

    def _delete_agent_queues(self, agents: list[str]) -> None:
        """Agents' control queues outlive their agents for a while (x-expires): delete them now."""
        from kombu import Connection

        from common import topology

        try:
            with Connection(self.env["CORRAL_BROKER_URL"], connect_timeout=3) as conn:
                namespace = self.env["CORRAL_NAMESPACE"]
                for agent in set(agents):
                    try:
                        conn.channel().queue_delete(topology.agent_queue_name(namespace, agent))
                    except Exception:  # noqa: BLE001 - not ours to delete (least-privilege users), or gone
                        pass
        except Exception:  # noqa: BLE001 - a broker that is away has nothing to clean
            pass

    def logs(self) -> str:
        parts = []
        for path in sorted(self.logdir.glob("*.log")):
            text = path.read_text(errors="replace")
            parts.append(f"===== {path.name} =====\n{text[-4000:]}")
        return "\n".join(parts)

    # -- REST --------------------------------------------------------------

    def get(self, path: str):
        response = requests.get(f"{self.api}{path}", headers=self.headers, timeout=10, verify=self.verify)
        response.raise_for_status()
        return response.json()

    def submit(self, type_name: str, settings: dict, **fields) -> dict:
        body = {"type": type_name, "settings": settings, **fields}
        response = requests.post(f"{self.api}/tasks", json=body, headers=self.headers, timeout=10,
                                 verify=self.verify)
        assert response.status_code == 202, response.text
        return response.json()

    def wait_task(self, task_id: int, statuses=("completed",), timeout: float = 60) -> dict:
        def done():
            task = self.get(f"/tasks/{task_id}")
            return task if task["status"] in statuses else None
        try:
            return wait_for(done, timeout=timeout, interval=0.2, what=f"task {task_id} in {statuses}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None


def sleep_settings(first: int, last: int, chunk: int, seconds: float) -> dict:
    return {"frame_start": first, "frame_end": last, "chunk_size": chunk, "seconds_per_frame": seconds}


def poll_until(predicate, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None
