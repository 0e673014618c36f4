"""A small "simulation" registered as an agent command in the tests: one cache file per frame.

``sim.py --cache DIR --frames=1-10`` writes ``DIR/sim.0001.txt`` ... and prints
``sim frame N`` for each; ``SIM_SECONDS_PER_FRAME`` slows it down.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from common.frames import parse_frames  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(prog="sim")
    parser.add_argument("--cache", required=True)
    parser.add_argument("--frames", required=True)
    args = parser.parse_args()
    os.makedirs(args.cache, exist_ok=True)
    seconds = float(os.environ.get("SIM_SECONDS_PER_FRAME", "0"))
    for frame in parse_frames(args.frames):
        time.sleep(seconds)
        with open(os.path.join(args.cache, f"sim.{frame:04d}.txt"), "w", encoding="utf-8") as handle:
            handle.write(f"state of frame {frame}\n")
        print(f"sim frame {frame}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
