"""Executors build exact argv lists from chunk params and refuse what they do not understand."""
from __future__ import annotations

import sys

import pytest

from agent.errors import PreflightFailed, UnsupportedParams
from agent.executors import EXECUTORS, blender_render, noop, sleep
from common.config import Config
from common.messages import ChunkAssign

CONFIG = Config(blender="/opt/blender/blender")
PARAMS = {"filepath": "/farm/shot.blend", "output_path": "/farm/out/shot_####", "format": "PNG"}


def assign(command: str, params: dict, frames: list[list[int]]) -> ChunkAssign:
    return ChunkAssign(chunk_id=1, task_id=1, lease_id="L", attempt=1, command=command,
                       parser=command, params=params, frames=frames)


def test_blender_renders_one_contiguous_range_with_start_end_and_animation():
    argv = blender_render.build_argv(PARAMS, [[1, 4]], CONFIG)
    assert argv == ["/opt/blender/blender", "-b", "--disable-autoexec", "/farm/shot.blend",
                    "-o", "/farm/out/shot_####", "-F", "PNG", "-s", "1", "-e", "4", "-a"]


def test_blender_renders_gapped_frames_as_a_comma_list_with_dot_dot_ranges():
    argv = blender_render.build_argv(PARAMS, [[1, 1], [3, 3], [5, 7]], CONFIG)
    assert argv[-2:] == ["-f", "1,3,5..7"]
    assert "-a" not in argv


def test_blender_puts_scene_engine_and_threads_where_blender_reads_them():
    params = {**PARAMS, "scene": "Main", "engine": "CYCLES", "threads": 4, "format": "TARGA"}
    argv = blender_render.build_argv(params, [[10, 10]], CONFIG)
    assert argv == ["/opt/blender/blender", "-b", "--disable-autoexec", "/farm/shot.blend",
                    "-S", "Main", "-E", "CYCLES", "-o", "/farm/out/shot_####", "-F", "TGA",
                    "-t", "4", "-s", "10", "-e", "10", "-a"]


def test_blender_allows_autoexec_only_when_configured():
    argv = blender_render.build_argv(PARAMS, [[1, 2]], Config(blender="blender", blender_allow_python=True))
    assert argv[:3] == ["blender", "-b", "/farm/shot.blend"]


def test_blender_overrides_become_a_generated_python_expression_before_the_render_flags():
    params = {**PARAMS, "camera": "Cam'; import os #", "resolution_percentage": 50, "samples": 16}
    argv = blender_render.build_argv(params, [[1, 2]], CONFIG)
    expr_at = argv.index("--python-expr")
    assert argv[expr_at - 2:expr_at] == ["--python-exit-code", "1"]
    assert expr_at < argv.index("-o") < argv.index("-s")
    assert argv[expr_at + 1] == "\n".join([
        "import bpy",
        "scene = bpy.context.scene",
        "scene.camera = bpy.data.objects[\"Cam'; import os #\"]",
        "scene.render.resolution_percentage = 50",
        "if scene.render.engine == 'CYCLES':",
        "    scene.cycles.samples = 16",
        "elif scene.render.engine == 'BLENDER_EEVEE':",
        "    scene.eevee.taa_render_samples = 16",
    ])
    compile(argv[expr_at + 1], "<expr>", "exec")  # the odd camera name stays a string literal


def test_blender_without_overrides_runs_no_python():
    assert "--python-expr" not in blender_render.build_argv(PARAMS, [[1, 2]], CONFIG)


@pytest.mark.parametrize(("params", "frames", "reason"), [
    ({**PARAMS, "script": "x.py"}, [[1, 1]], "unsupported params script"),
    ({**PARAMS, "format": "GIF"}, [[1, 1]], "params.format: must be one of"),
    ({**PARAMS, "samples": "16"}, [[1, 1]], "params.samples: must be an integer"),
    ({**PARAMS, "resolution_percentage": 0}, [[1, 1]], "params.resolution_percentage: must be at least 1"),
    ({**PARAMS, "scene": "--python"}, [[1, 1]], "params.scene: must not start with '-'"),
    ({**PARAMS, "camera": "Cam\nimport os"}, [[1, 1]], "params.camera: must not contain NUL"),
    ({**PARAMS, "engine": "LUXCORE"}, [[1, 1]], "params.engine: must be one of"),
    ({k: v for k, v in PARAMS.items() if k != "filepath"}, [[1, 1]], "params.filepath: is required"),
    (PARAMS, [[-3, -1]], "negative frame numbers are not supported"),
])
def test_blender_refuses_params_it_cannot_run_safely(params, frames, reason):
    with pytest.raises(UnsupportedParams, match=reason.replace("(", r"\(")):
        blender_render.build_argv(params, frames, CONFIG)


def test_blender_environment_is_added_but_protected_names_are_refused():
    assert blender_render.child_env({"env": {"OCIO": "/farm/aces.ocio"}}) == {"OCIO": "/farm/aces.ocio"}
    with pytest.raises(UnsupportedParams, match="LD_PRELOAD"):
        blender_render.child_env({"env": {"LD_PRELOAD": "/tmp/evil.so"}})


def test_blender_fails_before_starting_when_the_blend_file_is_missing(tmp_path):
    params = {**PARAMS, "filepath": str(tmp_path / "missing.blend"), "output_path": str(tmp_path / "o_#")}
    with pytest.raises(PreflightFailed, match="blend file not found: .*missing.blend"):
        blender_render.prepare(assign("blender_render", params, [[1, 1]]), CONFIG)


def test_blender_fails_before_starting_when_the_output_directory_cannot_be_created(tmp_path):
    blend = tmp_path / "shot.blend"
    blend.write_bytes(b"BLENDER")
    (tmp_path / "file").write_text("not a directory")
    params = {**PARAMS, "filepath": str(blend), "output_path": str(tmp_path / "file" / "sub" / "o_#")}
    with pytest.raises(PreflightFailed, match="cannot create output directory"):
        blender_render.prepare(assign("blender_render", params, [[1, 1]]), CONFIG)


def test_blender_prepare_creates_the_output_directory_relative_to_the_blend_file(tmp_path):
    blend = tmp_path / "shot.blend"
    blend.write_bytes(b"BLENDER")
    params = {**PARAMS, "filepath": str(blend), "output_path": "//renders/o_##", "env": {"A": "1"}}
    command = blender_render.prepare(assign("blender_render", params, [[1, 1]]), CONFIG)
    assert (tmp_path / "renders").is_dir()
    assert command.env == {"A": "1"} and command.argv[0] == "/opt/blender/blender"


def test_sleep_runs_the_sleeper_child_with_the_chunk_frames():
    assert sleep.build_argv({"seconds_per_frame": 0.5}, [[1, 3], [7, 7]]) == [
        sys.executable, "-m", "agent.children.sleeper", "--frames", "1-3,7", "--seconds", "0.5"]


def test_sleep_passes_negative_frames_so_argparse_keeps_them():
    assert sleep.build_argv({"seconds_per_frame": 0}, [[-2, 0]])[3:] == ["--frames=-2-0", "--seconds", "0.0"]


@pytest.mark.parametrize("params", [{"seconds_per_frame": "1"}, {"seconds_per_frame": -1},
                                    {"seconds_per_frame": True}, {"seconds": 1}])
def test_sleep_refuses_bad_params(params):
    with pytest.raises(UnsupportedParams):
        sleep.build_argv(params, [[1, 1]])


def test_noop_runs_nothing_and_takes_no_params():
    command = noop.prepare(assign("noop", {}, [[1, 2]]), CONFIG)
    assert command.argv is None and command.all_done_on_success
    with pytest.raises(UnsupportedParams):
        noop.prepare(assign("noop", {"x": 1}, [[1, 2]]), CONFIG)


def test_registry_names_every_command_the_dispatcher_sends():
    assert set(EXECUTORS) == {"noop", "sleep", "blender_render", "ffmpeg_encode"}
