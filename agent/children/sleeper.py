"""A stand-in renderer: sleeps for each frame and says so, one line per step.

``python -m agent.children.sleeper --frames 1-3,7 --seconds 0.5`` prints its
pid first (tests use it to check the process is gone after a kill), then
``Fra:N sleeping 0.5s`` and ``Frame N done`` for every frame.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from common.frames import parse_frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sleeper", description=__doc__)
    parser.add_argument("--frames", required=True, help="frame list such as 1-3,7")
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per frame")
    parser.add_argument("--exit-code", type=int, default=0, help="exit with this code after the frames")
    args = parser.parse_args(argv)
    frames = parse_frames(args.frames)
    print(f"sleeper pid {os.getpid()} frames {args.frames}", flush=True)
    for frame in frames:
        print(f"Fra:{frame} sleeping {args.seconds}s", flush=True)
        time.sleep(args.seconds)
        print(f"Frame {frame} done", flush=True)
    if args.exit_code:
        print(f"sleeper failing on purpose with exit code {args.exit_code}", flush=True)
    return args.exit_code


if __name__ == "__main__":
    sys.exit(main())
