"""The blender_render parser on output the tests capture from the real Blender, now."""
from __future__ import annotations

import subprocess

import pytest

from agent.parsers.blender_render import BlenderRenderParser
from tests.blender_scenes import blender_path, make_scene

pytestmark = [pytest.mark.integration, pytest.mark.blender]


def captured(*args: str) -> list[str]:
    result = subprocess.run([blender_path(), "-b", *args], capture_output=True, text=True, timeout=300)
    return (result.stdout + result.stderr).splitlines()


def parse(frames: list[int], lines: list[str]) -> BlenderRenderParser:
    parser = BlenderRenderParser(frames)
    for line in lines:
        parser.feed(line)
    return parser


@pytest.mark.parametrize("engine", ["CYCLES", "BLENDER_WORKBENCH"])
def test_real_render_output_yields_every_saved_frame_and_file(tmp_path, engine):
    scene = make_scene(tmp_path / f"{engine}.blend", frames=3, engine=engine)
    lines = captured("--disable-autoexec", str(scene), "-o", str(tmp_path / "out" / "f_####"), "-F", "PNG",
                     "-f", "1,3")
    parser = parse([1, 3], lines)
    assert parser.progress.frames_done == [1, 3], lines[-15:]
    out = tmp_path / "out"
    assert parser.progress.files == [str(out / "f_0001.png"), str(out / "f_0003.png")]
    assert parser.progress.fatal == ""


def test_real_output_for_a_missing_file_keeps_blenders_error_and_saves_nothing(tmp_path):
    missing = tmp_path / "nope.blend"
    lines = captured("--disable-autoexec", str(missing), "-o", str(tmp_path / "f_#"), "-f", "1")
    parser = parse([1], lines)
    assert parser.progress.frames_done == []
    assert "Cannot read file" in parser.progress.error, lines
