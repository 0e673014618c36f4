"""``corral``: the one console script.

Service verbs (``up``, ``gateway``, ``dispatcher``, ``agent``) start Corral
processes; client verbs (``submit``, ``tasks``, ...) talk to the REST API;
``corral token ...`` manages API tokens straight in the database, so it runs
where ``CORRAL_DATABASE_URL`` is reachable.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

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
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(fresh_metrics_dir(config, args.port))
    argv = [sys.executable, "-m", "gunicorn", "api_gateway.wsgi:application",
            "--bind", f"{args.host}:{args.port}", "--workers", str(args.workers),
            "--worker-class", "gthread", "--threads", str(args.threads),
            "--graceful-timeout", "10", "--no-control-socket",
            # gunicorn's largest request line: a search plus several filters must not get an HTML 414.
            "--limit-request-line", "8190",
            "--access-logfile", "-" if args.access_log else "/dev/null"]
    if bool(args.certfile) != bool(args.keyfile):
        sys.exit("corral gateway: --certfile and --keyfile go together (gunicorn's own TLS)")
    for path in filter(None, (args.certfile, args.keyfile)):
        if not os.path.isfile(path):
            sys.exit(f"corral gateway: {path} is not a readable file")
    if args.certfile:
        argv += ["--certfile", args.certfile, "--keyfile", args.keyfile]
    os.execv(sys.executable, argv)
    return 0  # pragma: no cover - exec does not return


def fresh_metrics_dir(config: Config, port: int) -> Path:
    """An empty directory for the gunicorn processes' request metrics (prometheus_client multiprocess).

    ``$PROMETHEUS_MULTIPROC_DIR`` if set, else ``<data_dir>/run/gateway-<port>.metrics``; the files
    of an earlier run are deleted, or its counts would be added to this one's.
    """
    path = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or
                Path(config.data_dir) / "run" / f"gateway-{port}.metrics").resolve()
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    return path


def cmd_migrate(args: argparse.Namespace) -> int:
    """Create or upgrade the database schema, then exit (a one-shot job before the services start)."""
    from common.db import migrate, open_database

    config = _config()
    setup_logging("migrate")
    db = open_database(config.resolved_database_url)
    with db.connection_context():
        version = migrate(db)
    print(f"database schema at version {version}")
    return 0


def cmd_dispatcher(args: argparse.Namespace) -> int:
    config = _config(insecure_agents=True if args.insecure_agents else None)
    _require_real_broker(config, "dispatcher")
    setup_logging("dispatcher")
    from dispatcher.service import run_dispatcher

    return run_dispatcher(config, args.metrics_port, args.metrics_host)


def cmd_agent(args: argparse.Namespace) -> int:
    from corral import enroll

    if args.action in enroll.ACTIONS:
        return enroll.run(args)
    config = _config()
    if args.action == "stop":
        from agent.cli import stop_agent

        return stop_agent(config, args.name, args.now, args.timeout)
    _require_real_broker(config, "agent")
    setup_logging(f"agent[{args.name}]")
    from agent.cli import run_agent

    return run_agent(config, args.name, args.pool or ["default"])


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration_s(text: str) -> int:
    """``90``, ``90s``, ``15m``, ``12h`` or ``30d`` as seconds."""
    unit = text[-1:] if text[-1:] in DURATION_UNITS else "s"
    number = text[:-1] if text[-1:] in DURATION_UNITS else text
    if not number.isdigit() or int(number) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 3600, 12h or 30d")
    return int(number) * DURATION_UNITS[unit]


def cmd_token(args: argparse.Namespace) -> int:
    import json

    from common import auth
    from common.db import open_and_migrate
    from common.errors import NotFound, ValidationError

    config = _config(data_dir=args.data_dir)
    db = open_and_migrate(config.resolved_database_url)
    try:
        with db.connection_context():
            if args.action == "create":
                scopes = [part for value in args.scope for part in value.split(",") if part]
                row, secret = auth.create_token(args.name, scopes, args.expires_in)
                print(f"token {row.id} {row.name!r} ({','.join(row.scopes)}) created; "
                      "it is shown only now:", file=sys.stderr)
                print(secret)
            elif args.action == "list":
                rows = [auth.token_body(row) for row in auth.list_tokens(include_inactive=args.all)]
                if args.json:
                    print(json.dumps(rows, indent=2))
                else:
                    _print_tokens(rows)
            else:
                row = auth.revoke_token(args.token)
                print(f"token {row.id} {row.name!r} revoked")
    except (ValidationError, NotFound) as exc:
        print(f"corral token {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_login_link(args: argparse.Namespace) -> int:
    """Print a one-time dashboard login link for the admin token of `corral up` (or CORRAL_ADMIN_TOKEN)."""
    from common.db import open_and_migrate
    from corral.embedded import login_link

    config = _config(data_dir=args.data_dir)
    open_and_migrate(config.resolved_database_url)
    try:
        print(login_link(config, args.url))
    except (OSError, ConfigError) as exc:
        print(f"corral login-link: no admin token to log in with ({exc})", file=sys.stderr)
        return 1
    return 0


def _print_tokens(rows: list[dict]) -> None:
    from corral.client import table, when

    print(table(("ID", "NAME", "SCOPES", "STATE", "CREATED", "EXPIRES", "LAST USED"),
                [[r["id"], r["name"], r["scopes"], r["state"], when(r["created_at"]),
                  when(r["expires_at"]), when(r["last_used_at"])] for r in rows]))


def _add_token_commands(sub: argparse._SubParsersAction) -> None:
    from common.auth import SCOPES

    token = sub.add_parser("token", help="create, list or revoke API tokens (on the database)")
    actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    data_dir = argparse.ArgumentParser(add_help=False)
    data_dir.add_argument("--data-dir", default=None, help="for the default SQLite database "
                          "(default: $CORRAL_DATA_DIR or ./var)")
    create = actions.add_parser("create", parents=[data_dir], help="make a token; prints its secret once")
    create.add_argument("--name", required=True, help="who or what the token is for")
    create.add_argument("--scope", action="append", required=True,
                        help=f"repeatable or comma-separated: {', '.join(SCOPES)}")
    create.add_argument("--expires-in", type=_duration_s, help="e.g. 3600, 12h, 30d (default: never)")
    listing = actions.add_parser("list", parents=[data_dir], help="list tokens (never their secrets)")
    listing.add_argument("--all", action="store_true", help="include revoked and expired tokens")
    listing.add_argument("--json", action="store_true")
    revoke = actions.add_parser("revoke", parents=[data_dir], help="revoke a token by id or name")
    revoke.add_argument("token", help="the token's id, or its name when only one active token has it")
    token.set_defaults(func=cmd_token)


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
    # gthread: each open GET /events stream holds a thread (CORRAL_EVENT_STREAMS per process, default 48).
    gw.add_argument("--threads", type=int, default=64)
    gw.add_argument("--access-log", action="store_true")
    gw.add_argument("--certfile", help="serve HTTPS with this certificate (PEM, chain included)")
    gw.add_argument("--keyfile", help="the certificate's private key (PEM)")
    gw.set_defaults(func=cmd_gateway)

    mg = sub.add_parser("migrate", help="create or upgrade the database schema, then exit")
    mg.set_defaults(func=cmd_migrate)

    dp = sub.add_parser("dispatcher", help="the task/chunk state machine")
    dp.add_argument("--insecure-agents", action="store_true",
                    help="accept agents that prove nothing (trusted networks only; "
                         "also CORRAL_INSECURE_AGENTS)")
    dp.add_argument("--metrics-port", type=int, default=None,
                    help="serve this process's Prometheus metrics on this port (default: off)")
    dp.add_argument("--metrics-host", default="127.0.0.1", help="address for --metrics-port "
                    "(0.0.0.0 in a container)")
    dp.set_defaults(func=cmd_dispatcher)

    from corral.client import DEFAULT_API

    ag = sub.add_parser("agent", help="a render node (`corral agent stop [--now]` stops one); "
                                      "`corral agent enroll|revoke NAME`, `corral agent enrollments`")
    ag.add_argument("action", nargs="?", choices=("run", "stop", "enroll", "revoke", "enrollments"),
                    default="run")
    ag.add_argument("target", nargs="?", help="enroll, revoke: the agent's name")
    ag.add_argument("--api", default=os.environ.get("CORRAL_API") or DEFAULT_API,
                    help="enroll, revoke, enrollments: gateway URL (default: $CORRAL_API or %(default)s)")
    ag.add_argument("--data-dir", default=None, help="where admin.token is when $CORRAL_TOKEN is not set")
    ag.add_argument("--credential-file", help="enroll: write the credential here (mode 0600) instead of "
                                              "printing it")
    ag.add_argument("--json", action="store_true")
    ag.add_argument("--name", default=default_agent_name())
    ag.add_argument("--now", action="store_true", help="stop: kill the running chunk and hand it back")
    ag.add_argument("--timeout", type=float, default=600.0, help="stop: seconds to wait for the exit")
    ag.add_argument("--pool", action="append", help="worker pool (repeatable; default: default); "
                                                    "enroll: the pools it may serve (default: any)")
    ag.set_defaults(func=cmd_agent)

    from corral.client import add_client_commands
    from corral.dlq import add_dlq_command

    add_client_commands(sub)
    add_dlq_command(sub)
    from corral.jobtypes_cli import add_jobtypes_commands

    add_jobtypes_commands(sub)
    from corral.scenes import add_demo_scene_command

    add_demo_scene_command(sub)
    _add_token_commands(sub)
    link = sub.add_parser("login-link", help="print a one-time login link for the dashboard (admin)")
    link.add_argument("--url", default="http://127.0.0.1:8080", help="the gateway's address")
    link.add_argument("--data-dir", default=None, help="where `corral up` keeps admin.token (default: ./var)")
    link.set_defaults(func=cmd_login_link)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
