"""Encode a task's rendered frames into an H.264 video with ffmpeg (the ``ffmpeg_encode`` command).

``python -m agent.children.encode_frames --ffmpeg PATH --pattern /out/shot_#### --format PNG
--frames=1-10 --fps 24 --output /out/shot.mp4``. The frame files are named by
Blender's rule (``agent.blender_paths``); a frame list may have gaps and
Blender's padding varies, so the files are linked into a temporary directory
as a dense numbered sequence and ffmpeg reads each frame exactly once, in
order. ffmpeg's own output (its ``frame=`` progress) passes through.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from agent.blender_paths import EXTENSIONS, frame_path
from common.frames import parse_frames

EVEN_SIZE = "scale=trunc(iw/2)*2:trunc(ih/2)*2"  # libx264 with yuv420p needs even dimensions


def input_files(pattern: str, file_format: str, frames: list[int]) -> list[str]:
    """The frame files the video is made of, in order."""
    return [frame_path(pattern, frame, file_format) for frame in frames]


def build_argv(ffmpeg: str, fps: int, input_pattern: str, video: str) -> list[str]:
    return [ffmpeg, "-y", "-framerate", str(fps), "-i", input_pattern,
            "-vf", EVEN_SIZE, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-r", str(fps), video]


def link_sequence(files: list[str], directory: str) -> str:
    """Link the frames as 000001.ext, 000002.ext, ...; return ffmpeg's input pattern for them."""
    for number, path in enumerate(files, start=1):
        ext = os.path.splitext(path)[1]
        os.symlink(os.path.abspath(path), os.path.join(directory, f"{number:06d}{ext}"))
    return os.path.join(directory, "%06d" + os.path.splitext(files[0])[1])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="encode_frames", description=__doc__)
    parser.add_argument("--ffmpeg", required=True)
    parser.add_argument("--pattern", required=True, help="Blender output path with '#' padding")
    parser.add_argument("--format", required=True, choices=sorted(EXTENSIONS))
    parser.add_argument("--frames", required=True, help="frame list such as 1-10,15")
    parser.add_argument("--fps", type=int, required=True, choices=range(1, 241), metavar="1..240")
    parser.add_argument("--output", required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    frames = parse_frames(args.frames)
    files = input_files(args.pattern, args.format, frames)
    for frame, path in zip(frames, files, strict=True):
        if not os.path.isfile(path):
            print(f"Error: missing input frame {frame}: {path}", flush=True)
            return 1
    # SIGTERM (a cancel) must still remove the links.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    sequence = tempfile.mkdtemp(prefix="corral-frames-")
    try:
        pattern = link_sequence(files, sequence)
        return subprocess.run(build_argv(args.ffmpeg, args.fps, pattern, args.output),
                              stdin=subprocess.DEVNULL, check=False).returncode
    finally:
        shutil.rmtree(sequence, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
