"""Operator verbs over REST: ``corral worker VERB NAME ...`` and ``corral task VERB ID ...``.

They need nothing but the gateway's URL and a token with the ``operate`` scope,
so they work from any machine (``corral agent stop`` only works on the agent's
own machine). Every change is applied by the dispatcher a moment after the
gateway accepts it; ``corral workers`` shows it once applied.
"""
from __future__ import annotations

import argparse
from typing import Any

from corral.client import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, ClientError, _call, _cell, _print_json, when

# verb -> (request body, what the operator is told happens next)
WORKER_SIMPLE = {
    "enable": ({"status": "enabled"}, "enabled: it takes chunks again"),
    "disable": ({"status": "disabled"}, "disabled: it takes no new chunks; a running one finishes"),
    "stop": ({"action": "stop"}, "stop requested: it finishes its running chunk, says goodbye and "
                                 "exits 0"),
    "stop-now": ({"action": "stop_now"}, "stop-now requested: it kills its running chunk, hands it "
                                         "back (not a failure) and exits 0"),
    "restart": ({"action": "restart"}, "restart requested: it finishes its running chunk, then exits 75 "
                                       "for its supervisor to start it again"),
    "cancel-action": ({"action": None}, "pending action withdrawn (an agent already stopping goes on)"),
}
DETAIL_KEYS = ("id", "name", "hostname", "status", "connection", "activity", "current_task", "pools",
               "pools_set_by", "commands", "pending_action", "asleep")


def resolve_worker(args: argparse.Namespace, name: str) -> tuple[int, str]:
    """A worker's id and name from its name, or from its id."""
    workers = _call(args, "GET", "/workers")
    if name in workers:
        return workers[name]["id"], name
    if name.isdigit():
        for found, summary in workers.items():
            if summary["id"] == int(name):
                return summary["id"], found
    raise ClientError(f"No worker is named {name!r} (see `corral workers`).", EXIT_REFUSED)


def schedule_text(schedule: dict[str, Any] | None, asleep: bool = False) -> str:
    if not schedule:
        return "-"
    text = f"{','.join(schedule['days'])} {schedule['start']}-{schedule['end']} {schedule['tz']}"
    return f"{text} (asleep)" if asleep else text


def _patch_worker(args: argparse.Namespace, body: dict[str, Any], outcome: str) -> int:
    worker_id, name = resolve_worker(args, args.name)
    answer = _call(args, "PATCH", f"/workers/{worker_id}", body)
    if args.json:
        _print_json({"id": worker_id, "name": name, "requested": body, **(answer or {})})
    else:
        print(f"worker {name} (id {worker_id}): {outcome}")
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    if args.verb == "show":
        return _show_worker(args)
    if args.verb == "pools":
        return _patch_worker(args, *_pools_change(args))
    if args.verb == "sleep":
        return _patch_worker(args, *_sleep_change(args))
    body, outcome = WORKER_SIMPLE[args.verb]
    return _patch_worker(args, body, outcome)


def _pools_change(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    if args.reset == bool(args.pools):
        raise ClientError("Give the pools (e.g. gpu,default) or --reset, not both.", EXIT_USAGE)
    if args.reset:
        return {"pools": None}, "back to the pools the agent itself asked for"
    pools = [pool.strip() for pool in args.pools.split(",") if pool.strip()]
    return {"pools": pools}, f"pools set to {','.join(pools)}; the agent re-subscribes without a restart"


def _sleep_change(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    given = [args.start, args.end, args.tz]
    if args.clear:
        if any(given) or args.days:
            raise ClientError("--clear takes no --days, --start, --end or --tz.", EXIT_USAGE)
        return {"sleep_schedule": None}, "sleep schedule cleared"
    if not all(given):
        raise ClientError("Give --start, --end and --tz (and optionally --days), or --clear.", EXIT_USAGE)
    schedule: dict[str, Any] = {"start": args.start, "end": args.end, "tz": args.tz}
    if args.days:
        schedule["days"] = [day.strip() for day in args.days.split(",") if day.strip()]
    shown = schedule_text({"days": schedule.get("days", ["every day"]), **schedule})
    return {"sleep_schedule": schedule}, f"asleep {shown}: it takes no chunks then"


def _show_worker(args: argparse.Namespace) -> int:
    worker_id, _ = resolve_worker(args, args.name)
    worker = _call(args, "GET", f"/workers/{worker_id}")
    if args.json:
        _print_json(worker)
        return EXIT_OK
    for key in DETAIL_KEYS:
        print(f"{key:>14}: {_cell(worker[key])}")
    print(f"{'sleep_schedule':>14}: {schedule_text(worker['sleep_schedule'])}")
    print(f"{'last_heartbeat':>14}: {when(worker['last_heartbeat'])}")
    return EXIT_OK


# ---------------------------------------------------------------- tasks

TASK_VERBS = ("pause", "resume", "priority", "retry")
TASK_CHANGES = {"pause": {"status": "paused"}, "resume": {"status": "queued"}}


def cmd_task_control(args: argparse.Namespace, verb: str, rest: list[str]) -> int:
    """``corral task pause|resume|retry ID`` and ``corral task priority ID N``."""
    wanted = 2 if verb == "priority" else 1
    if len(rest) != wanted or not all(word.isdigit() for word in rest):
        usage = "ID PRIORITY" if verb == "priority" else "ID"
        raise ClientError(f"Usage: corral task {verb} {usage} (integers).", EXIT_USAGE)
    task_id = int(rest[0])
    if verb == "retry":
        answer = _call(args, "POST", f"/tasks/{task_id}/retry")
        outcome = "retry of its failed chunks requested"
    else:
        body: dict[str, Any] = TASK_CHANGES[verb] if verb in TASK_CHANGES else {"priority": int(rest[1])}
        _call(args, "PATCH", f"/tasks/{task_id}", body)
        answer = {"id": task_id, "requested": body}
        outcome = f"{verb} requested" if verb in TASK_CHANGES else f"priority {rest[1]} requested"
    if args.json:
        _print_json(answer)
    else:
        print(f"task {task_id}: {outcome}; the dispatcher applies it in a moment")
    return EXIT_OK


def add_worker_command(subparsers: Any, common: argparse.ArgumentParser, guarded: Any) -> None:
    """``corral worker VERB NAME ...`` (NAME may also be the worker's id)."""
    worker = subparsers.add_parser("worker", help="control one worker over REST (stop, pools, sleep, ...)")
    verbs = worker.add_subparsers(dest="verb", required=True, metavar="VERB")
    helps = {"show": "show one worker", **{verb: outcome.split(":")[0] for verb, (_, outcome)
                                           in WORKER_SIMPLE.items()}}
    for verb, text in helps.items():
        one = verbs.add_parser(verb, parents=[common], help=text)
        one.add_argument("name", metavar="NAME", help="the worker's name or id")
    pools = verbs.add_parser("pools", parents=[common], help="set the pools it takes chunks from")
    pools.add_argument("name", metavar="NAME", help="the worker's name or id")
    pools.add_argument("pools", nargs="?", help="comma-separated, e.g. gpu,default")
    pools.add_argument("--reset", action="store_true", help="back to the pools the agent asked for")
    sleep = verbs.add_parser("sleep", parents=[common], help="a weekly window in which it takes no chunks")
    sleep.add_argument("name", metavar="NAME", help="the worker's name or id")
    sleep.add_argument("--days", help="comma-separated mon..sun on which it opens (default: every day)")
    sleep.add_argument("--start", help="HH:MM, local time in --tz")
    sleep.add_argument("--end", help="HH:MM (or 24:00); not after --start means the next day")
    sleep.add_argument("--tz", help="IANA time zone, e.g. Europe/Amsterdam")
    sleep.add_argument("--clear", action="store_true", help="remove the schedule")
    worker.set_defaults(func=guarded(cmd_worker))
