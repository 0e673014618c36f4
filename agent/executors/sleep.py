"""The ``sleep`` command: a real child process that sleeps per frame."""
from __future__ import annotations

import sys
from typing import Any

from agent.errors import UnsupportedParams
from agent.executors.base import Command, check_keys
from common.config import Config
from common.frames import format_ranges
from common.messages import ChunkAssign

MAX_SECONDS_PER_FRAME = 3600.0


def build_argv(params: dict[str, Any], frames: list[list[int]]) -> list[str]:
    check_keys(params, {"seconds_per_frame", "exit_code"}, "sleep")
    seconds = params.get("seconds_per_frame", 1.0)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
            or not 0 <= seconds <= MAX_SECONDS_PER_FRAME:
        raise UnsupportedParams(f"params.seconds_per_frame must be 0 to {MAX_SECONDS_PER_FRAME:g} seconds")
    spec = format_ranges(frames)
    # "--frames=-3--1" keeps argparse from reading a negative frame list as an option.
    frame_args = [f"--frames={spec}"] if spec.startswith("-") else ["--frames", spec]
    exit_code = params.get("exit_code", 0)
    if isinstance(exit_code, bool) or not isinstance(exit_code, int) or not 0 <= exit_code <= 255:
        raise UnsupportedParams("params.exit_code must be 0 to 255")
    argv = [sys.executable, "-m", "agent.children.sleeper", *frame_args, "--seconds", str(float(seconds))]
    return argv + (["--exit-code", str(exit_code)] if exit_code else [])


def prepare(assign: ChunkAssign, config: Config) -> Command:
    return Command(argv=build_argv(assign.params, assign.frames))
