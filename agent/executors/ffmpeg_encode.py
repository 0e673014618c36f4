"""The ``ffmpeg_encode`` command: encode a task's rendered frames into a video.

The frame files are named by Blender's rule (``agent.blender_paths``) and
linked into a temporary directory as a dense numbered sequence for ffmpeg.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from agent.blender_paths import EXTENSIONS, frame_path
from agent.errors import PreflightFailed, UnsupportedParams
from agent.executors.base import Command, check_keys, ensure_output_dir, get_int, get_str
from common.config import Config
from common.frames import expand
from common.messages import ChunkAssign

ALLOWED = {"output_path", "format", "frames", "fps", "video_path"}
EVEN_SIZE = "scale=trunc(iw/2)*2:trunc(ih/2)*2"  # libx264 with yuv420p needs even dimensions


def input_files(params: dict[str, Any]) -> list[str]:
    """The frame files the video is made of, in order."""
    check_keys(params, ALLOWED, "ffmpeg_encode")
    output_path = str(get_str(params, "output_path"))
    if output_path.startswith("//"):
        raise UnsupportedParams("params.output_path: a '//' (blend-relative) path cannot be encoded")
    file_format = get_str(params, "format", required=False, choices=tuple(EXTENSIONS)) or "PNG"
    ranges = params.get("frames")
    if not isinstance(ranges, list) or not ranges or not all(
            isinstance(r, list) and len(r) == 2 and all(type(v) is int for v in r) and r[0] <= r[1]
            for r in ranges):
        raise UnsupportedParams("params.frames must be a list of [first, last] frame ranges")
    return [frame_path(output_path, frame, file_format) for frame in expand(ranges)]


def build_argv(params: dict[str, Any], input_pattern: str, config: Config) -> list[str]:
    fps = get_int(params, "fps", 1, 240)
    video = str(get_str(params, "video_path"))
    return [config.ffmpeg, "-y", "-framerate", str(fps), "-i", input_pattern,
            "-vf", EVEN_SIZE, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-r", str(fps), video]


def link_sequence(files: list[str], directory: str) -> None:
    """Link the frames as 000001.ext, 000002.ext, ...: one input frame per video frame.

    A frame list may have gaps and Blender's padding varies; a dense sequence of
    links lets ffmpeg's image reader take every frame exactly once, in order.
    """
    for number, path in enumerate(files, start=1):
        ext = os.path.splitext(path)[1]
        os.symlink(os.path.abspath(path), os.path.join(directory, f"{number:06d}{ext}"))


def prepare(assign: ChunkAssign, config: Config) -> Command:
    files = input_files(assign.params)
    build_argv(assign.params, "", config)  # refuse bad params before touching the disk
    for frame, path in zip(expand(assign.params["frames"]), files, strict=True):
        if not os.path.isfile(path):
            raise PreflightFailed(f"missing input frame {frame}: {path}")
    ensure_output_dir(assign.params["video_path"], "video directory")
    sequence = tempfile.mkdtemp(prefix="corral-frames-")
    link_sequence(files, sequence)
    pattern = os.path.join(sequence, "%06d" + os.path.splitext(files[0])[1])
    argv = build_argv(assign.params, pattern, config)
    return Command(argv=argv, all_done_on_success=True, temp_files=[Path(sequence)])
