"""A renderer whose frames get slower halfway: for the adaptive-chunking test.

``slowing.py --frames=1-4 --slow-from 21 --fast 0.05 --slow 0.4`` sleeps
``fast`` seconds for frames before ``slow-from`` and ``slow`` after, printing
``Frame N done`` like the sleeper so the built-in sleep parser reads it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from common.frames import parse_frames  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(prog="slowing")
    parser.add_argument("--frames", required=True)
    parser.add_argument("--slow-from", type=int, required=True)
    parser.add_argument("--fast", type=float, required=True)
    parser.add_argument("--slow", type=float, required=True)
    args = parser.parse_args()
    for frame in parse_frames(args.frames):
        print(f"Fra:{frame} rendering", flush=True)
        time.sleep(args.fast if frame < args.slow_from else args.slow)
        print(f"Frame {frame} done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
