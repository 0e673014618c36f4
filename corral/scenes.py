"""Small demo scenes made by Blender's own Python, for the README tour and the tests.

No .blend file is shipped: ``corral demo-scene`` (and the test suite) asks the
installed Blender to build a tiny animated scene (64x48 by default, Cycles on
the CPU at 1 sample, denoising off) and save it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SCENE_SCRIPT = """
import bpy, sys
out, frames, engine, width, height = sys.argv[sys.argv.index("--") + 1:]
frames, width, height = int(frames), int(width), int(height)
scene = bpy.context.scene
scene.render.engine = engine
if engine == "CYCLES":
    scene.cycles.device = "CPU"
    scene.cycles.samples = 1
    scene.cycles.use_denoising = False
scene.render.resolution_x, scene.render.resolution_y = width, height
scene.render.resolution_percentage = 100
scene.frame_start, scene.frame_end = 1, frames
cube = bpy.data.objects["Cube"]
cube.location = (-1.5, 0, 0)
cube.keyframe_insert("location", frame=1)
cube.location = (1.5, 0, 0)
cube.keyframe_insert("location", frame=frames)
bpy.ops.wm.save_as_mainfile(filepath=out)
"""


class SceneError(RuntimeError):
    """Blender could not build the scene."""


def make_scene(blender: str, path: Path, frames: int = 24, engine: str = "CYCLES",
               width: int = 64, height: int = 48) -> Path:
    """Write an animated scene to ``path`` with the Blender at ``blender``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(SCENE_SCRIPT)
    try:
        result = subprocess.run(
            [blender, "-b", "--factory-startup", "--python", script.name, "--",
             str(path), str(frames), engine, str(width), str(height)],
            capture_output=True, text=True, timeout=300)
    finally:
        os.unlink(script.name)
    if not path.exists():
        raise SceneError(f"Blender did not write {path}:\n{(result.stdout + result.stderr)[-2000:]}")
    return path


def add_demo_scene_command(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo-scene", help="build a small animated .blend with the local Blender")
    demo.add_argument("path", help="where to save the .blend (inside a storage root)")
    demo.add_argument("--frames", type=int, default=48)
    demo.add_argument("--width", type=int, default=320)
    demo.add_argument("--height", type=int, default=240)
    demo.add_argument("--engine", choices=("CYCLES", "BLENDER_EEVEE", "BLENDER_WORKBENCH"), default="CYCLES")
    demo.set_defaults(func=cmd_demo_scene)


def cmd_demo_scene(args: argparse.Namespace) -> int:
    blender = shutil.which(os.environ.get("CORRAL_BLENDER", "blender"))
    if blender is None:
        print("corral demo-scene: Blender is not installed (apt-get install blender, or set CORRAL_BLENDER)",
              file=sys.stderr)
        return 2
    try:
        path = make_scene(blender, Path(args.path).resolve(), args.frames, args.engine,
                          args.width, args.height)
    except SceneError as exc:
        print(f"corral demo-scene: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0
