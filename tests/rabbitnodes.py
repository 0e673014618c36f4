"""Extra RabbitMQ nodes for integration tests, started next to the shared broker.

Each node gets its own node name, AMQP and distribution ports, data, log and pid
paths, an empty plugin list (no management listener to clash on) and a config
file of its own, so it never touches the shared ``rabbit@localhost``. Nodes of
one ``RabbitCluster`` share an Erlang cookie (kept in their common base
directory, which is ``HOME`` for every node and ``rabbitmqctl`` call).

    nodes = RabbitCluster(tmp, [("corral-c1", 5701, 25701), ...])
    nodes.start()          # all nodes in parallel, then clustered
    nodes["corral-c1"].stop()
    nodes.close()          # every node stopped, data kept for the test's logs
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

RABBIT_BIN = Path(os.environ.get("CORRAL_TEST_RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))
START_TIMEOUT_S = 120.0


def rabbitmq_available() -> str:
    """An empty string when nodes can be started here, else what is missing."""
    for tool in ("rabbitmq-server", "rabbitmqctl"):
        if not (RABBIT_BIN / tool).exists():
            return f"{RABBIT_BIN / tool} (set CORRAL_TEST_RABBITMQ_BIN)"
    return ""


class RabbitNode:
    """One RabbitMQ node: ``start``, ``wait_started``, ``stop`` (graceful), ``kill`` (SIGKILL)."""

    def __init__(self, base: Path, name: str, amqp_port: int, dist_port: int,
                 listen: Iterable[str] = ("127.0.0.1",), extra_config: str = "") -> None:
        self.base = base
        self.short = name
        self.name = f"{name}@localhost"
        self.amqp_port = amqp_port
        self.dist_port = dist_port
        self.listen = tuple(listen)
        self.extra_config = extra_config
        self.dir = base / name
        self.proc: subprocess.Popen | None = None

    def url(self, host: str | None = None) -> str:
        return f"amqp://guest:guest@{host or self.listen[0]}:{self.amqp_port}//"

    @property
    def pid_file(self) -> Path:
        return self.dir / "rabbit.pid"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update({
            "HOME": str(self.base),  # where the shared .erlang.cookie lives
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            # Not the machine's rabbitmq-env.conf, which names the shared node.
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
        })
        return env

    def _write_files(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq-env.conf").write_text("")
        listeners = "".join(f"listeners.tcp.{i} = {host}:{self.amqp_port}\n"
                            for i, host in enumerate(self.listen, start=1))
        # guest may log in from other hosts: render hosts of the network tests are not loopback.
        (self.dir / "rabbitmq.conf").write_text(
            f"{listeners}loopback_users = none\nlog.console = false\n{self.extra_config}")

    def start(self) -> None:
        """Launch the node in the background; ``wait_started`` waits for it."""
        self._write_files()
        self.pid_file.unlink(missing_ok=True)
        log = open(self.dir / "server.out", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen([str(RABBIT_BIN / "rabbitmq-server")], env=self.env(),
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def wait_started(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not self.pid_file.exists():
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"node {self.name} exited at start:\n{self.server_log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"node {self.name} wrote no pid file in {timeout:g}s")
            time.sleep(0.2)
        left = max(5.0, deadline - time.monotonic())
        self.ctl("await_startup", "--timeout", str(int(left)), timeout=left + 10)

    def ctl(self, *args: str, timeout: float = 60, check: bool = True) -> str:
        """``rabbitmqctl -n <node> ARGS``; its output."""
        return self._tool("rabbitmqctl", *args, timeout=timeout, check=check)

    def queues_tool(self, *args: str, timeout: float = 60) -> str:
        return self._tool("rabbitmq-queues", *args, timeout=timeout)

    def _tool(self, tool: str, *args: str, timeout: float, check: bool = True) -> str:
        done = subprocess.run([str(RABBIT_BIN / tool), "-n", self.name, *args], env=self.env(),
                              capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"{tool} -n {self.name} {' '.join(args)} failed ({done.returncode}): "
                               f"{done.stdout}{done.stderr}")
        return done.stdout

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 60) -> None:
        """Graceful: the node closes its client connections and leaves its quorum groups."""
        if not self.running():
            return
        try:
            self.ctl("stop", timeout=timeout)
        except (RuntimeError, subprocess.TimeoutExpired):
            self.kill()
            return
        self._reap(timeout)

    def kill(self) -> None:
        """Immediate: SIGKILL to the node's whole process group (a machine losing power)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._reap(10)

    def _reap(self, timeout: float) -> None:
        assert self.proc is not None
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def server_log(self, chars: int = 4000) -> str:
        parts = []
        for path in [self.dir / "server.out", *sorted((self.dir / "log").glob("*.log"))]:
            if path.exists():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)


class RabbitCluster:
    """Several nodes started together and joined into one cluster (the first is the seed)."""

    def __init__(self, base: Path, specs: list[tuple[str, int, int]], listen: Iterable[str] = ("127.0.0.1",),
                 extra_config: str = "") -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        cookie = base / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(20).upper())
            cookie.chmod(0o400)
        self.nodes = [RabbitNode(base, name, amqp, dist, listen, extra_config) for name, amqp, dist in specs]

    def __getitem__(self, name: str) -> RabbitNode:
        for node in self.nodes:
            if name in (node.short, node.name):
                return node
        raise KeyError(name)

    def __iter__(self):
        return iter(self.nodes)

    def urls(self) -> str:
        """Every node's address, ';'-separated (CORRAL_BROKER_URL for failover)."""
        return ";".join(node.url() for node in self.nodes)

    def start(self) -> None:
        try:
            for node in self.nodes:
                node.start()
            for node in self.nodes:
                node.wait_started()
            seed = self.nodes[0]
            for node in self.nodes[1:]:
                self.join(node, seed)
        except BaseException:
            self.close()
            raise

    def join(self, node: RabbitNode, seed: RabbitNode) -> None:
        node.ctl("stop_app")
        node.ctl("join_cluster", seed.name)
        node.ctl("start_app")
        node.ctl("await_startup")

    def restart(self, node: RabbitNode) -> None:
        """Bring a stopped node back; it rejoins the cluster it was in."""
        node.start()
        node.wait_started()

    def running_nodes(self, via: RabbitNode) -> list[str]:
        status = json.loads(via.ctl("cluster_status", "--formatter", "json"))
        return sorted(status["running_nodes"])

    def close(self) -> None:
        for node in self.nodes:
            node.kill() if node.running() else None

    def remove(self) -> None:
        self.close()
        shutil.rmtree(self.base, ignore_errors=True)
