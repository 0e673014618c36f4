"""``python -m agent``: run one agent until SIGTERM/SIGINT.

The first signal stops gracefully (the held chunk finishes, then goodbye); a
second one (or SIGUSR1) kills the child and hands the chunk back.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path

import psutil

from agent.agent import EXIT_RESTART, Agent
from agent.registry import Registry
from common.config import Config, default_agent_name, load_config
from common.errors import ConfigError

log = logging.getLogger(__name__)


def pid_path(config: Config, name: str) -> Path:
    """Where a running agent keeps its pid, for ``corral agent stop``."""
    return Path(config.data_dir) / "run" / f"agent-{name}.pid"


def run_agent(config: Config, name: str, pools: list[str], registry: Registry | None = None) -> int:
    """Run an agent in the foreground with signal handlers; returns the exit code.

    SIGTERM or SIGINT: stop after the running chunk; a second one, or SIGUSR1:
    kill the running chunk and hand it back now. Exit code 0, or 75 after the
    operator's ``restart`` (``control.stop`` with mode restart).
    """
    try:
        agent = Agent(config, name, pools, registry)
    except ConfigError as exc:  # a bad CORRAL_AGENT_COMMANDS file, no credential: a sentence
        log.error("%s", exc)
        return 78  # EX_CONFIG
    received = 0
    pidfile = pid_path(config, name)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.write_text(f"{os.getpid()}\n")

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal received
        received += 1
        if received == 1:
            log.info("%s: stopping after the running chunk (send it again to kill)",
                     signal.Signals(signum).name)
            agent.request_stop()
        else:
            log.info("%s again: killing the running chunk and handing it back", signal.Signals(signum).name)
            agent.request_kill()

    def on_now(signum: int, _frame: object) -> None:
        log.info("%s: killing the running chunk and handing it back", signal.Signals(signum).name)
        agent.request_kill()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, on_now)
    try:
        agent.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        pidfile.unlink(missing_ok=True)
    if agent.exit_code == EXIT_RESTART:
        log.info("exiting with %d so that the supervisor starts the agent again", agent.exit_code)
    return agent.exit_code


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or exited and waiting for its parent to reap it."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop_agent(config: Config, name: str, now: bool, timeout_s: float) -> int:
    """Signal the agent running here under ``name`` to stop, and wait for it to exit."""
    pidfile = pid_path(config, name)
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        print(f"corral agent stop: no agent {name!r} is running here ({pidfile} not found)", file=sys.stderr)
        return 1
    try:
        os.kill(pid, signal.SIGUSR1 if now else signal.SIGTERM)
    except ProcessLookupError:
        pidfile.unlink(missing_ok=True)
        print(f"corral agent stop: agent {name!r} (pid {pid}) is not running", file=sys.stderr)
        return 1
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            print(f"agent {name} stopped")
            return 0
        time.sleep(0.2)
    print(f"corral agent stop: agent {name!r} (pid {pid}) is still running after {timeout_s:g}s",
          file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent", description="Run a Corral render-node agent.")
    parser.add_argument("--name", default=None, help="agent name (default: the host name)")
    parser.add_argument("--pool", action="append", dest="pools", metavar="POOL",
                        help="pool to take chunks from; repeat for several (default: default)")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config()
    except ConfigError as exc:
        print(f"corral agent: {exc}", file=sys.stderr)
        return 2
    return run_agent(config, args.name or default_agent_name(), args.pools or ["default"])
