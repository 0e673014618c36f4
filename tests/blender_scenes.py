"""Test scenes made at test time by Blender's own Python: no binary fixtures in the repo."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from corral import scenes
from tests.conftest import missing


def blender_path() -> str:
    path = shutil.which(os.environ.get("CORRAL_BLENDER", "blender"))
    if path is None:
        missing("Blender")
    return path


def make_scene(path: Path, frames: int = 24, engine: str = "CYCLES") -> Path:
    """A tiny animated scene: 64x48, Cycles on the CPU at 1 sample, no denoising."""
    return scenes.make_scene(blender_path(), path, frames, engine)
