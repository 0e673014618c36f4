"""``python -m bench [--quick] [--only ROW ...] [--profile]``: run the rows, print one table."""
from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench import farm, machine, profile
from bench.broker import RestartSentinel, delete_namespace
from bench.report import print_table
from bench.results import Results
from bench.targets import judge

ROWS = ("floor", "celery", "throughput", "latency", "heartbeats", "api", "size", "metrics")


@dataclasses.dataclass(frozen=True)
class Sizes:
    n: int = 1000
    latency_tasks: int = 200
    fleets: tuple[int, ...] = (1000, 10000)
    heartbeat_s: float = 30.0
    api_workers: int = 1000
    api_tasks: int = 100_000
    api_requests: int = 2000
    api_s: float = 8.0
    size_frames: int = 100_000
    size_s: float = 20.0
    postgres: bool = True


QUICK = Sizes(n=300, latency_tasks=50, heartbeat_s=10.0, api_requests=300, api_s=3.0,
              size_frames=100_000, size_s=8.0, postgres=False)


def run_row(row: str, results: Results, ns: str, sizes: Sizes, work: Path, token: str) -> None:
    if row == "floor":
        from bench import broker_floor
        broker_floor.run(results, ns, sizes.n)
    elif row == "celery":
        from bench import celery_peer
        celery_peer.run(results, ns, sizes.n, work / "celery")
    elif row == "throughput":
        from bench import throughput
        throughput.run(results, ns, sizes.n, work, token, postgres=sizes.postgres)
    elif row == "latency":
        from bench import latency
        latency.run(results, ns, sizes.latency_tasks, work, token)
    elif row == "heartbeats":
        from bench import heartbeats
        heartbeats.run(results, ns, sizes.fleets, sizes.heartbeat_s, work, token)
    elif row == "api":
        from bench import api_load
        api_load.run(results, ns, work / "api", token, sizes.api_workers, sizes.api_tasks,
                     sizes.api_requests, sizes.api_s)
    elif row == "size":
        from bench import size
        size.run(results, ns, sizes.size_frames, sizes.size_s, work / "size", token)
    elif row == "metrics":
        from bench import metrics
        metrics.run(results, ns, work / "metrics", token, sizes.api_workers, sizes.api_tasks, sizes.postgres)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a ~2-minute smoke with small sizes")
    parser.add_argument("--only", action="append", choices=ROWS, help="run only this row (repeatable)")
    parser.add_argument("-n", type=int, help="messages / tasks / chunks per throughput row")
    parser.add_argument("--profile", action="store_true",
                        help="record py-spy profiles of the dispatcher and gateway (perturbs the figures)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, databases)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else Sizes()
    if args.n:
        sizes = dataclasses.replace(sizes, n=args.n)
    ns = f"bench{farm.new_run_id()}"
    token = farm.new_token()
    work = Path(tempfile.mkdtemp(prefix=f"{ns}-"))
    if args.profile:
        profile.PROFILE_DIR = work / "profiles"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sentinel = RestartSentinel()
    results = Results()
    failed: list[str] = []
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    print(f"# corral bench: namespace {ns}, work dir {work}, load average {load_before:.2f}", flush=True)
    try:
        for row in args.only or ROWS:
            t0 = time.monotonic()
            try:
                run_row(row, results, ns, sizes, work, token)
            except Exception:  # noqa: BLE001 - one broken row must not hide the others
                failed.append(row)
                print(f"## row {row} FAILED:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
            print(f"# {row}: {time.monotonic() - t0:.0f}s", file=sys.stderr, flush=True)
    finally:
        farm.kill_all()
        deleted = delete_namespace(f"{ns}.")
        print(f"# deleted {deleted} queues of {ns}", file=sys.stderr)
    # Other processes on the box (a test suite, say) skew every figure: the load says so.
    header = f"{machine.describe()}; load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
    print_table(results, judge(results), header, time.monotonic() - started)
    if sentinel.broker_restarted():
        print("\nWARNING: RabbitMQ restarted (or dropped connections) during this run: "
              "the figures above are not valid; run again on a quiet machine.")
        failed.append("broker restarted")
    if args.profile:
        for raw in sorted(profile.PROFILE_DIR.glob("*.txt")):
            print(f"\n### profile {raw.stem} ({raw})")
            for pct, name in profile.top_frames(raw):
                print(f"  {pct:5.1f}%  {name}")
            print("  innermost:")
            for pct, name in profile.top_leaves(raw):
                print(f"  {pct:5.1f}%  {name}")
    if not args.keep and not args.profile:
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    if failed:
        print(f"\nrows that failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
