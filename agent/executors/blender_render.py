"""The ``blender_render`` command: render a chunk's frames with Blender in background mode.

Blender 3.4 takes one contiguous range as ``-s A -e B -a`` and several as
``-f 1,3,5..7``. Camera, resolution and sample overrides go through a fixed,
generated ``--python-expr`` (it runs even with ``--disable-autoexec``, which
only governs scripts stored in the .blend) placed before the render flags.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from agent.errors import PreflightFailed, UnsupportedParams
from agent.executors.base import Command, check_keys, ensure_output_dir, get_int, get_str
from common import jobtypes
from common.config import Config
from common.messages import ChunkAssign

# Settings the task carries for the dispatcher (video, fps) pass through unused.
ALLOWED = {"filepath", "output_path", "format", "scene", "camera", "engine",
           "resolution_percentage", "samples", "threads", "env", "video", "fps"}
# Corral's format names -> Blender's -F codes
FORMAT_CODES = {
    "PNG": "PNG", "JPEG": "JPEG", "OPEN_EXR": "OPEN_EXR", "OPEN_EXR_MULTILAYER": "OPEN_EXR_MULTILAYER",
    "TIFF": "TIFF", "BMP": "BMP", "TARGA": "TGA",
}
PROTECTED_ENV = {"PATH", "LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONPATH", "PYTHONSTARTUP", "HOME"}


def build_argv(params: dict[str, Any], frames: list[list[int]], config: Config) -> list[str]:
    """The Blender command line for ``params`` and ``frames``; refuses what it does not understand."""
    check_keys(params, ALLOWED, "blender_render")
    file_format = get_str(params, "format", required=False, choices=tuple(FORMAT_CODES)) or "PNG"
    argv = [config.blender, "-b"]
    if not config.blender_allow_python:
        argv.append("--disable-autoexec")
    argv.append(str(get_str(params, "filepath")))
    scene = get_str(params, "scene", required=False)
    if scene is not None:
        argv += ["-S", scene]
    engine = get_str(params, "engine", required=False, choices=jobtypes.BLENDER_ENGINES)
    if engine is not None:
        argv += ["-E", engine]
    expr = override_expression(params)
    if expr:
        argv += ["--python-exit-code", "1", "--python-expr", expr]
    argv += ["-o", str(get_str(params, "output_path")), "-F", FORMAT_CODES[file_format]]
    if "threads" in params:
        argv += ["-t", str(get_int(params, "threads", 0, 1024))]
    return argv + frame_args(frames)


def frame_args(frames: list[list[int]]) -> list[str]:
    if not frames:
        raise UnsupportedParams("blender_render: the chunk has no frames")
    if any(first < 0 for first, _ in frames):
        # Blender reads "-5" in -s/-e/-f as "5 before the end", not frame -5.
        raise UnsupportedParams("blender_render: negative frame numbers are not supported")
    if len(frames) == 1:
        first, last = frames[0]
        return ["-s", str(first), "-e", str(last), "-a"]
    return ["-f", ",".join(str(a) if a == b else f"{a}..{b}" for a, b in frames)]


def override_expression(params: dict[str, Any]) -> str:
    """Python for the camera/resolution/samples overrides, built from validated values only."""
    lines = []
    camera = get_str(params, "camera", required=False)
    if camera is not None:
        lines.append(f"scene.camera = bpy.data.objects[{camera!r}]")
    if "resolution_percentage" in params:
        percent = get_int(params, "resolution_percentage", 1, 1000)
        lines.append(f"scene.render.resolution_percentage = {percent!r}")
    if "samples" in params:
        samples = get_int(params, "samples", 1, 1_000_000)
        lines += [
            "if scene.render.engine == 'CYCLES':",
            f"    scene.cycles.samples = {samples!r}",
            "elif scene.render.engine == 'BLENDER_EEVEE':",
            f"    scene.eevee.taa_render_samples = {samples!r}",
        ]
    if not lines:
        return ""
    return "\n".join(["import bpy", "scene = bpy.context.scene", *lines])


def child_env(params: dict[str, Any]) -> dict[str, str]:
    env = params.get("env", {})
    if not isinstance(env, dict) or len(env) > 64:
        raise UnsupportedParams("params.env must be an object of at most 64 string values")
    for key, value in env.items():
        if not key.isidentifier() or not key.isupper() or key in PROTECTED_ENV:
            raise UnsupportedParams(f"params.env.{key}: not an allowed variable name")
        if not isinstance(value, str) or any(c in value for c in "\x00\n\r"):
            raise UnsupportedParams(f"params.env.{key}: must be a single-line string")
    return dict(env)


def output_location(output_path: str, blend_file: str) -> str:
    """Blender's ``//`` prefix means relative to the .blend file's folder."""
    if output_path.startswith("//"):
        return os.path.join(os.path.dirname(os.path.abspath(blend_file)), output_path[2:])
    return output_path


def prepare(assign: ChunkAssign, config: Config) -> Command:
    argv = build_argv(assign.params, assign.frames, config)
    env = child_env(assign.params)
    blend = assign.params["filepath"]
    if not Path(blend).is_file():
        raise PreflightFailed(f"blend file not found: {blend}")
    ensure_output_dir(output_location(assign.params["output_path"], blend))
    return Command(argv=argv, env=env)
