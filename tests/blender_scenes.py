"""Test scenes made at test time by Blender's own Python: no binary fixtures in the repo."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

SCENE_SCRIPT = """
import bpy, sys
out, frames, engine = sys.argv[sys.argv.index("--") + 1:]
frames = int(frames)
scene = bpy.context.scene
scene.render.engine = engine
if engine == "CYCLES":
    scene.cycles.device = "CPU"
    scene.cycles.samples = 1
    scene.cycles.use_denoising = False
scene.render.resolution_x, scene.render.resolution_y = 64, 48
scene.render.resolution_percentage = 100
scene.frame_start, scene.frame_end = 1, frames
cube = bpy.data.objects["Cube"]
cube.location = (-1.5, 0, 0)
cube.keyframe_insert("location", frame=1)
cube.location = (1.5, 0, 0)
cube.keyframe_insert("location", frame=frames)
bpy.ops.wm.save_as_mainfile(filepath=out)
"""


def blender_path() -> str:
    path = shutil.which(os.environ.get("CORRAL_BLENDER", "blender"))
    if path is None:
        if IN_CI:
            pytest.fail("Blender is not installed and CI=true: failing instead of skipping")
        pytest.skip("Blender is not installed")
    return path


def make_scene(path: Path, frames: int = 24, engine: str = "CYCLES") -> Path:
    """Write a tiny animated scene (64x48, 1 sample, no denoising) to ``path``."""
    script = path.with_suffix(".py")
    script.write_text(SCENE_SCRIPT)
    result = subprocess.run(
        [blender_path(), "-b", "--factory-startup", "--python", str(script), "--",
         str(path), str(frames), engine],
        capture_output=True, text=True, timeout=120)
    assert path.exists(), f"Blender did not write the scene:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
    return path
