"""The one executor: exact argv lists from the agent's command registry plus the chunk's arguments.

The Blender and sleep command lines come from the built-in job-type files
through the compiler, so these tests pin what those files produce.
"""
from __future__ import annotations

import sys

import pytest

from agent import executors
from agent.errors import PreflightFailed, UnsupportedParams
from agent.registry import CommandSpec, Registry, blender_spec, builtin_commands
from common import jobtypes
from common.config import Config
from common.messages import ChunkAssign
from dispatcher.compilers import compile_task

BLENDER = blender_spec("/opt/blender/blender", allow_python=False)
SETTINGS = {"filepath": "/farm/shot.blend", "output_path": "/farm/out/shot_####", "format": "PNG"}
SLEEP, _ = builtin_commands(Config(blender="/nonexistent/blender", ffmpeg="/nonexistent/ffmpeg"))


def assign(command: str, params: dict, frames: list[list[int]]) -> ChunkAssign:
    return ChunkAssign(chunk_id=1, task_id=1, lease_id="L", attempt=1, command=command,
                       parser=command, params=params, frames=frames)


def argv(type_name: str, settings: dict, spec: CommandSpec, chunk: int = 0) -> list[str]:
    """The command line the agent would start for one chunk of a task with these settings."""
    validated = jobtypes.task_type(type_name).validate(settings).settings
    specs = list(compile_task(type_name, validated))
    return executors.build(assign(specs[chunk].command, specs[chunk].params, specs[chunk].frames),
                           spec).argv


def test_blender_renders_one_contiguous_range_with_start_end_and_animation():
    assert argv("blender_render", {**SETTINGS, "frames": "1-4", "chunk_size": 4}, BLENDER) == [
        "/opt/blender/blender", "-b", "--disable-autoexec", "/farm/shot.blend",
        "-o", "/farm/out/shot_####", "-F", "PNG", "-s", "1", "-e", "4", "-a"]


def test_blender_renders_gapped_frames_as_a_comma_list_with_dot_dot_ranges():
    line = argv("blender_render", {**SETTINGS, "frames": "1,3,5-7", "chunk_size": 5}, BLENDER)
    assert line[-2:] == ["-f", "1,3,5..7"]
    assert "-a" not in line


def test_blender_puts_scene_engine_and_threads_where_blender_reads_them():
    settings = {**SETTINGS, "scene": "Main", "engine": "CYCLES", "threads": 4, "format": "TARGA",
                "frames": "10"}
    assert argv("blender_render", settings, BLENDER) == [
        "/opt/blender/blender", "-b", "--disable-autoexec", "/farm/shot.blend",
        "-S", "Main", "-E", "CYCLES", "-o", "/farm/out/shot_####", "-F", "TGA",
        "-t", "4", "-s", "10", "-e", "10", "-a"]


def test_blender_threads_zero_means_every_core_and_is_passed():
    assert argv("blender_render", {**SETTINGS, "threads": 0, "frames": "1"}, BLENDER)[-7:-5] == ["-t", "0"]


def test_blender_allows_autoexec_only_when_the_agent_is_configured_to():
    line = argv("blender_render", {**SETTINGS, "frames": "1-2"}, blender_spec("blender", allow_python=True))
    assert line[:3] == ["blender", "-b", "/farm/shot.blend"]


def test_blender_overrides_run_a_fixed_script_and_their_values_follow_the_double_dash():
    settings = {**SETTINGS, "camera": "Cam'; import os #", "resolution_percentage": 50, "samples": 16,
                "frames": "1-2", "chunk_size": 2}
    line = argv("blender_render", settings, BLENDER)
    expr_at = line.index("--python-expr")
    assert line[expr_at - 2:expr_at] == ["--python-exit-code", "1"]
    assert expr_at < line.index("-o") < line.index("-s") < line.index("--")
    assert line[line.index("--"):] == ["--", "--camera", "Cam'; import os #", "--resolution-percentage", "50",
                                       "--samples", "16"]
    script = line[expr_at + 1]
    assert "Cam" not in script  # the values never become code
    assert script == jobtypes.task_type("blender_render").steps[0].args[3].args[3]
    compile(script, "<expr>", "exec")


def test_blender_without_overrides_runs_no_python():
    line = argv("blender_render", {**SETTINGS, "frames": "1-2"}, BLENDER)
    assert "--python-expr" not in line and "--" not in line


def test_sleep_runs_the_sleeper_child_with_the_chunk_frames():
    settings = {"frames": "1-3,7", "chunk_size": 4, "seconds_per_frame": 0.5}
    assert argv("sleep", settings, SLEEP["sleep"]) == [
        sys.executable, "-m", "agent.children.sleeper", "--frames=1-3,7", "--seconds", "0.5"]


def test_sleep_passes_negative_frames_inside_one_argument_so_they_stay_a_value():
    line = argv("sleep", {"frames": "-2-0", "chunk_size": 3, "seconds_per_frame": 0}, SLEEP["sleep"])
    assert line[3:] == ["--frames=-2-0", "--seconds", "0.0"]


def test_sleep_exit_code_is_passed_only_when_set():
    settings = {"frames": "1", "seconds_per_frame": 0, "exit_code": 3}
    assert argv("sleep", settings, SLEEP["sleep"])[-2:] == ["--exit-code", "3"]


def test_noop_runs_nothing_and_every_frame_is_done():
    command = executors.prepare(assign("noop", {"args": []}, [[1, 2]]), SLEEP["noop"])
    assert command.argv is None and command.all_done_on_success


@pytest.mark.parametrize(("params", "reason"), [
    ({"args": [], "script": "x.py"}, "unsupported params script"),
    ({"args": "-P evil.py"}, "params.args must be a list"),
    ({"args": ["ok", 5]}, r"params.args\[1\] must be a string"),
    ({"args": ["a\x00b"]}, r"params.args\[0\] must be a string without NUL"),
    ({"args": [], "env": {"LD_PRELOAD": "/tmp/evil.so"}}, "params.env.LD_PRELOAD: not an allowed"),
    ({"args": [], "env": {"OCIO": "a\nb"}}, "params.env.OCIO: must be a single-line string"),
    ({"args": [], "env": ["A=1"]}, "params.env must be an object"),
])
def test_the_executor_refuses_params_it_cannot_run_safely(params, reason):
    with pytest.raises(UnsupportedParams, match=reason):
        executors.prepare(assign("blender_render", params, [[1, 1]]), BLENDER)


def test_a_variable_the_command_does_not_allow_on_this_agent_is_refused():
    sim = CommandSpec("sim", "/usr/bin/true", env_allow=("SIM_*",))
    assert executors.prepare(assign("sim", {"args": [], "env": {"SIM_SEED": "3"}}, [[1, 1]]),
                             sim).env == {"SIM_SEED": "3"}
    with pytest.raises(UnsupportedParams, match="params.env.OCIO: command sim on this agent does not"):
        executors.prepare(assign("sim", {"args": [], "env": {"OCIO": "x"}}, [[1, 1]]), sim)


def test_the_executable_and_its_leading_arguments_come_from_the_agent_never_the_chunk():
    sim = CommandSpec("sim", "/opt/sim/bin/sim", args=("--batch",))
    command = executors.prepare(assign("sim", {"args": ["/opt/evil", "-x"]}, [[1, 1]]), sim)
    assert command.argv == ["/opt/sim/bin/sim", "--batch", "/opt/evil", "-x"]


def test_the_step_environment_reaches_the_child():
    specs = list(compile_task("blender_render", jobtypes.task_type("blender_render").validate(
        {**SETTINGS, "frames": "1", "env": {"OCIO": "/farm/aces.ocio"}}).settings))
    assert specs[0].params["env"] == {"OCIO": "/farm/aces.ocio"}
    assert executors.build(assign("blender_render", specs[0].params, [[1, 1]]), BLENDER).env == {
        "OCIO": "/farm/aces.ocio"}


def paths(tmp_path, blend, output):
    return {"args": [], "paths": [{"setting": "filepath", "path": str(blend), "access": "read"},
                                  {"setting": "output_path", "path": str(output), "access": "write"}]}


def test_a_chunk_fails_before_starting_when_an_input_file_is_missing(tmp_path):
    with pytest.raises(PreflightFailed, match="input filepath not found: .*missing.blend"):
        executors.prepare(assign("blender_render", paths(tmp_path, tmp_path / "missing.blend",
                                                         tmp_path / "o_#"), [[1, 1]]), BLENDER)


def test_a_chunk_fails_before_starting_when_the_output_directory_cannot_be_created(tmp_path):
    blend = tmp_path / "shot.blend"
    blend.write_bytes(b"BLENDER")
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(PreflightFailed, match="cannot create output directory"):
        executors.prepare(assign("blender_render", paths(tmp_path, blend, tmp_path / "file" / "sub" / "o_#"),
                                 [[1, 1]]), BLENDER)


def test_prepare_creates_the_output_directory(tmp_path):
    blend = tmp_path / "shot.blend"
    blend.write_bytes(b"BLENDER")
    executors.prepare(assign("blender_render", paths(tmp_path, blend, tmp_path / "renders" / "o_##"),
                             [[1, 1]]), BLENDER)
    assert (tmp_path / "renders").is_dir()


def test_every_command_the_built_in_job_types_use_is_a_built_in_agent_command():
    used = {step.command for jt in jobtypes.registry().values() for step in jt.steps}
    assert used == {"noop", "sleep", "blender_render", "ffmpeg_encode"}
    assert {"noop", "sleep"} <= set(Registry(specs=SLEEP).commands)
