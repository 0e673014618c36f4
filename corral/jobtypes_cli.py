"""``corral jobtypes list|show NAME|check FILE``: the farm's job types, and checking a file before it ships.

``list`` and ``show`` ask the gateway (``GET /jobtypes``); ``check`` loads a
file here, exactly as the gateway and the dispatcher would, and prints the
first mistake with its file, line and field (exit 1) or what the file declares.
"""
from __future__ import annotations

import argparse
from typing import Any

from common.jobtypes import JobTypeError, load_file
from common.jobtypes.describe import jobtype_body
from corral.client import EXIT_OK, _call, _common, _guarded, _print_json, table

EXIT_INVALID = 1


def _steps(body: dict[str, Any]) -> str:
    return " -> ".join(f"{s['name']}({s['command']})" for s in body["steps"])


def cmd_list(args: argparse.Namespace) -> int:
    page = _call(args, "GET", "/jobtypes")
    if args.json:
        _print_json(page)
        return EXIT_OK
    rows = [[t["name"], t["version"], t["label"], _steps(t)] for t in page["jobtypes"]]
    print(table(("NAME", "VERSION", "LABEL", "STEPS"), rows))
    return EXIT_OK


def _print_type(body: dict[str, Any]) -> None:
    print(f"{body['name']} v{body['version']}: {body['label']}")
    if body["description"]:
        print(f"  {body['description']}")
    rows = []
    for name, s in body["settings"].items():
        limits = ", ".join(f"{k} {s[k]}" for k in ("min", "max", "pattern", "access") if k in s)
        if "choices" in s:
            limits = "one of " + ", ".join(s["choices"])
        rows.append([name, s["type"], "yes" if s["required"] else "", s.get("default", ""), limits])
    print()
    print(table(("SETTING", "TYPE", "REQUIRED", "DEFAULT", "LIMITS"), rows))
    print()
    steps = [[s["name"], s["command"], ",".join(s["after"]), s["chunks"], s["parser"],
              s.get("chunk_target_s", s.get("chunk_size", ""))] for s in body["steps"]]
    print(table(("STEP", "COMMAND", "AFTER", "CHUNKS", "PARSER", "SIZE"), steps))


def cmd_show(args: argparse.Namespace) -> int:
    body = _call(args, "GET", f"/jobtypes/{args.name}")
    if args.json:
        _print_json(body)
    else:
        _print_type(body)
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    try:
        jobtype = load_file(args.file)
    except JobTypeError as exc:
        print(f"corral jobtypes check: {exc}")
        return EXIT_INVALID
    body = jobtype_body(jobtype, full=True)
    if args.json:
        _print_json(body)
    else:
        print(f"{args.file}: ok")
        _print_type(body)
    return EXIT_OK


def add_jobtypes_commands(subparsers: Any) -> None:
    """Add ``corral jobtypes ...`` to an argparse ``add_subparsers()`` object."""
    common = _common()
    jobtypes = subparsers.add_parser("jobtypes", help="list, show or check job types (docs/jobtypes.md)")
    actions = jobtypes.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[common], help="the job types the gateway loaded")
    listing.set_defaults(func=_guarded(cmd_list))
    show = actions.add_parser("show", parents=[common], help="one job type's settings and steps")
    show.add_argument("name")
    show.set_defaults(func=_guarded(cmd_show))
    check = actions.add_parser("check", help="load a job-type file here and report its first mistake")
    check.add_argument("file")
    check.add_argument("--json", action="store_true", help="print the declaration as JSON")
    check.set_defaults(func=cmd_check)
