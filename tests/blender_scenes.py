"""Test scenes made at test time by Blender's own Python: no binary fixtures in the repo."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from corral import scenes

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def blender_path() -> str:
    path = shutil.which(os.environ.get("CORRAL_BLENDER", "blender"))
    if path is None:
        if IN_CI:
            pytest.fail("Blender is not installed and CI=true: failing instead of skipping")
        pytest.skip("Blender is not installed")
    return path


def make_scene(path: Path, frames: int = 24, engine: str = "CYCLES") -> Path:
    """A tiny animated scene: 64x48, Cycles on the CPU at 1 sample, no denoising."""
    return scenes.make_scene(blender_path(), path, frames, engine)
