"""``python -m agent``: run one agent until SIGTERM/SIGINT.

The first signal stops gracefully (the held chunk finishes, then goodbye); a
second one kills the child and hands the chunk back.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys

from agent.agent import Agent
from agent.registry import Registry
from common.config import Config, default_agent_name, load_config
from common.errors import ConfigError

log = logging.getLogger(__name__)


def run_agent(config: Config, name: str, pools: list[str], registry: Registry | None = None) -> int:
    """Run an agent in the foreground with signal handlers; returns the exit code."""
    agent = Agent(config, name, pools, registry)
    received = 0

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

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        agent.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


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
