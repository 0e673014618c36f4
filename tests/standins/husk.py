"""A stand-in for Houdini's husk (not installed here): takes husk's arguments, prints its progress lines.

Accepts ``USD_FILE --renderer R [--settings P] [--camera P] --frame F --frame-count N --output PATH
--make-output-path --verbose aN`` and, like husk with Alfred-style verbosity, prints
``ALF_PROGRESS N%`` lines while it "renders", writing one small file per frame
(``$F4`` in the output path is the frame number, padded to 4).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="husk")
    parser.add_argument("usd_file")
    parser.add_argument("--renderer", required=True)
    parser.add_argument("--settings")
    parser.add_argument("--camera")
    parser.add_argument("--frame", type=int, required=True)
    parser.add_argument("--frame-count", type=int, required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--make-output-path", action="store_true")
    parser.add_argument("--verbose", default="1")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.usd_file):
        print(f"USD ERROR: cannot open stage {args.usd_file}", flush=True)
        return 1
    seconds = float(os.environ.get("HOUDINI_STANDIN_SECONDS_PER_FRAME", "0.05"))
    print(f"husk: rendering {args.usd_file} with {args.renderer}", flush=True)
    for i in range(args.frame_count):
        frame = args.frame + i
        for part in (1, 2):
            time.sleep(seconds / 2)
            percent = int(100 * (i + part / 2) / args.frame_count)
            print(f"ALF_PROGRESS {percent}%", flush=True)
        path = re.sub(r"\$F(\d*)", lambda m, f=frame: str(f).zfill(int(m.group(1) or 1)), args.output)
        if args.make_output_path:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(f"frame {frame}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
