"""``corral agent enroll|revoke|enrollments``: per-node credentials, over the REST API (scope admin).

``enroll NAME`` prints the node's credential once (or writes it, mode 0600, to
``--credential-file``); copy it to the node as ``CORRAL_AGENT_CREDENTIAL_FILE``.
``revoke NAME`` cuts the node off: the dispatcher requeues its chunk and tells it to stop.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from corral.client import EXIT_OK, EXIT_USAGE, ClientError, call, find_token, table, when

ACTIONS = ("enroll", "revoke", "enrollments")


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except ClientError as exc:
        print(exc, file=sys.stderr)
        return exc.exit_code


def _run(args: argparse.Namespace) -> int:
    token = find_token(args.data_dir)
    if args.action == "enrollments":
        rows = call(args.api, "GET", "/agents", token=token)["agents"]
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(table(("NAME", "POOLS", "STATE", "ENROLLED", "REVOKED"),
                        [[r["name"], r["pools"] or "any", r["state"], when(r["enrolled_at"]),
                          when(r["revoked_at"])] for r in rows]))
        return EXIT_OK
    if not args.target:
        print(f"corral agent {args.action}: give the agent's name", file=sys.stderr)
        return EXIT_USAGE
    if args.action == "revoke":
        row = call(args.api, "DELETE", f"/agents/{args.target}", token=token)
        print(f"agent {row['name']} revoked; the dispatcher cuts it off within one heartbeat interval")
        return EXIT_OK
    pools = sorted({pool for value in args.pool or [] for pool in value.split(",") if pool})
    body = {"name": args.target, "pools": pools}
    row = call(args.api, "POST", "/agents", body, token=token)
    if args.credential_file:
        fd = os.open(args.credential_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(row["credential"] + "\n")
        print(f"agent {row['name']} enrolled (pools: {','.join(row['pools']) or 'any'}); "
              f"credential written to {args.credential_file}", file=sys.stderr)
    else:
        print(f"agent {row['name']} enrolled (pools: {','.join(row['pools']) or 'any'}); "
              "its credential is shown only now:", file=sys.stderr)
        print(row["credential"])
    return EXIT_OK
