"""``corral``: the one console script.

Service verbs (``up``, ``gateway``, ``dispatcher``, ``agent``) start Corral
processes; client verbs (``submit``, ``tasks``, ...) talk to the REST API.
"""
from __future__ import annotations

import argparse
import os
import sys

from common.config import Config, default_agent_name, load_config
from common.errors import ConfigError
from common.logs import setup_logging


def _config(**overrides: object) -> Config:
    try:
        return load_config(**overrides)
    except ConfigError as exc:
        sys.exit(f"corral: {exc}")


def _require_real_broker(config: Config, verb: str) -> None:
    if config.embedded_broker:
        sys.exit(f"corral {verb}: memory:// works only inside one process; "
                 "set CORRAL_BROKER_URL=amqp://... or use `corral up`")


def cmd_up(args: argparse.Namespace) -> int:
    from corral.embedded import run_embedded

    setup_logging("up")
    return run_embedded(args.host, args.port, args.agents, args.data_dir)


def cmd_gateway(args: argparse.Namespace) -> int:
    config = _config()
    _require_real_broker(config, "gateway")
    from common.db import open_and_migrate

    open_and_migrate(config.resolved_database_url)
    argv = [sys.executable, "-m", "gunicorn", "api_gateway.wsgi:application",
            "--bind", f"{args.host}:{args.port}", "--workers", str(args.workers),
            "--worker-class", "gthread", "--threads", str(args.threads),
            "--graceful-timeout", "10", "--no-control-socket",
            "--access-logfile", "-" if args.access_log else "/dev/null"]
    os.execv(sys.executable, argv)
    return 0  # pragma: no cover - exec does not return


def cmd_dispatcher(args: argparse.Namespace) -> int:
    config = _config()
    _require_real_broker(config, "dispatcher")
    setup_logging("dispatcher")
    from dispatcher.service import run_dispatcher

    return run_dispatcher(config)


def cmd_agent(args: argparse.Namespace) -> int:
    config = _config()
    if args.action == "stop":
        from agent.cli import stop_agent

        return stop_agent(config, args.name, args.now, args.timeout)
    _require_real_broker(config, "agent")
    setup_logging(f"agent[{args.name}]")
    from agent.cli import run_agent

    return run_agent(config, args.name, args.pool or ["default"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="corral", description="Corral render-farm manager")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    up = sub.add_parser("up", help="all-in-one farm: gateway, dispatcher and agents in one process")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8080)
    up.add_argument("--agents", type=int, default=2)
    up.add_argument("--data-dir", default=None, help="default: $CORRAL_DATA_DIR or ./var")
    up.set_defaults(func=cmd_up)

    gw = sub.add_parser("gateway", help="the REST API under gunicorn")
    gw.add_argument("--host", default="127.0.0.1")
    gw.add_argument("--port", type=int, default=8080)
    gw.add_argument("--workers", type=int, default=2)
    gw.add_argument("--threads", type=int, default=4)
    gw.add_argument("--access-log", action="store_true")
    gw.set_defaults(func=cmd_gateway)

    dp = sub.add_parser("dispatcher", help="the task/chunk state machine")
    dp.set_defaults(func=cmd_dispatcher)

    ag = sub.add_parser("agent", help="a render node (`corral agent stop [--now]` stops one)")
    ag.add_argument("action", nargs="?", choices=("run", "stop"), default="run")
    ag.add_argument("--name", default=default_agent_name())
    ag.add_argument("--now", action="store_true", help="stop: kill the running chunk and hand it back")
    ag.add_argument("--timeout", type=float, default=600.0, help="stop: seconds to wait for the exit")
    ag.add_argument("--pool", action="append", help="worker pool (repeatable; default: default)")
    ag.set_defaults(func=cmd_agent)

    from corral.client import add_client_commands
    from corral.dlq import add_dlq_command

    add_client_commands(sub)
    add_dlq_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
