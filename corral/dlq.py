"""``corral dlq``: list, show, replay or drop dead-lettered messages.

Dead letters wait in ``<ns>.dead`` with headers saying why (see protocol.md).
Reading them is a walk over the queue without acknowledging: closing the
channel puts every message back. Replaying republishes the body unchanged to
the events exchange under its original routing key with its original headers
(the signature of an agent message among them), then removes it.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu import Queue

from common.bus import DEAD_HEADERS, Bus, body_bytes
from common.config import Config, load_config
from common.errors import ConfigError

MAX_SCAN = 100_000


@contextmanager
def _dead_letters(bus: Bus) -> Iterator[tuple[Any, list[Any]]]:
    """Every dead letter, unacknowledged; they return to the queue when the channel closes."""
    with bus.connect() as conn:
        channel = conn.channel()
        bus.declare_core(channel)
        queue = Queue(bus.topology.dead_queue().name, no_declare=True)(channel)
        letters = []
        while len(letters) < MAX_SCAN and (message := queue.get(no_ack=False)) is not None:
            letters.append(message)
        yield channel, letters
        channel.close()


def _summary(message: Any) -> dict[str, Any]:
    headers = message.headers or {}
    dead_at = headers.get("x-corral-dead-at")
    return {
        "id": headers.get("x-corral-dead-id", "?"),
        "routing_key": headers.get("x-corral-routing-key", ""),
        "queue": headers.get("x-corral-queue", ""),
        "reason": headers.get("x-corral-reason", ""),
        "dead_at": datetime.datetime.fromtimestamp(dead_at).isoformat(timespec="seconds") if dead_at else "",
        "bytes": len(message.body),
    }


def _body_text(message: Any) -> str:
    return body_bytes(message).decode("utf-8", "replace")


def _pick(letters: list[Any], ident: str | None, every: bool) -> list[Any]:
    if every:
        return letters
    chosen = [m for m in letters if (m.headers or {}).get("x-corral-dead-id") == ident]
    if not chosen:
        raise LookupError(f"no dead letter with id {ident}")
    return chosen


def run(args: argparse.Namespace, config: Config) -> int:
    bus = Bus(config)
    with _dead_letters(bus) as (channel, letters):
        if args.action == "list":
            rows = [_summary(m) for m in letters]
            if args.json:
                print(json.dumps(rows, indent=2))
            else:
                print(f"{len(rows)} dead letter(s) in {bus.topology.dead_queue().name}")
                for row in rows:
                    print(f"{row['id']:12}  {row['dead_at']:19}  {row['routing_key']:22}  {row['reason']}")
            return 0
        chosen = _pick(letters, args.id, args.all)
        if args.action == "show":
            for message in chosen:
                print(json.dumps({**_summary(message), "body": _body_text(message)}, indent=2))
            return 0
        publisher = bus.publisher()
        try:
            for message in chosen:
                if args.action == "replay":
                    headers = message.headers or {}
                    key = headers.get("x-corral-routing-key") or "unknown"
                    # The original headers go with it (a signed agent message keeps its signature).
                    original = {k: v for k, v in headers.items() if k not in DEAD_HEADERS}
                    publisher.publish_raw(body_bytes(message), bus.topology.events, key, headers=original)
                message.ack()
                print(f"{args.action}ed {_summary(message)['id']}")
        finally:
            publisher.close()
    return 0


def add_dlq_command(sub: Any) -> None:
    dlq = sub.add_parser("dlq", help="dead-lettered messages: list, show, replay, drop")
    dlq.add_argument("action", choices=("list", "show", "replay", "drop"))
    dlq.add_argument("id", nargs="?", help="the dead letter's id (from list)")
    dlq.add_argument("--all", action="store_true", help="every dead letter")
    dlq.add_argument("--json", action="store_true")
    dlq.set_defaults(func=cmd_dlq)


def cmd_dlq(args: argparse.Namespace) -> int:
    try:
        config = load_config()
    except ConfigError as exc:
        sys.exit(f"corral dlq: {exc}")
    if config.embedded_broker:
        sys.exit("corral dlq: needs CORRAL_BROKER_URL=amqp://...; "
                 "the memory:// broker lives inside `corral up`")
    if args.action != "list" and not args.id and not args.all:
        sys.exit(f"corral dlq {args.action}: give a dead letter id or --all")
    try:
        return run(args, config)
    except LookupError as exc:
        print(f"corral dlq: {exc}", file=sys.stderr)
        return 1
