"""Job types a studio writes, on real RabbitMQ with real gateway, dispatcher and agent processes.

The tools are registered the way a studio would: one job-type file in
CORRAL_JOB_TYPES_DIR and one line per command in the agent's
CORRAL_AGENT_COMMANDS file. Houdini is not installed here: its step runs a
stand-in (tests/standins/husk.py) that prints what husk prints.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.blender_scenes import make_scene
from tests.conftest import missing, wait_for
from tests.integration.test_farm import chunk_rows

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
STANDINS = ROOT / "tests" / "standins"
DOCS = ROOT / "docs" / "jobtypes"

SIM_RENDER_ENCODE = """\
name: sim_render_encode
label: Simulate, render, encode
version: 1
settings:
  frames: {type: frames, min: 0}
  chunk_size: {type: integer, default: 2, min: 1, max: 100}
  cache: {type: path, access: write, required: true}
  scene: {type: path, access: read, required: true}
  output_path: {type: path, access: write, required: true}
  video_path: {type: path, access: write, required: true}
steps:
  - name: sim
    command: sim
    chunks: single
    args: ["--cache", "{cache}", "--frames={task_frames}"]
  - name: render
    command: blender_render
    after: [sim]
    chunk_size: chunk_size
    contiguous: true
    parser: blender_render
    args: ["{scene}", "-o", "{output_path}", "-F", "PNG", "-s", "{frame_first}", "-e", "{frame_last}", "-a"]
  - name: encode
    command: ffmpeg_encode
    after: [render]
    chunks: single
    parser: ffmpeg
    args: ["--pattern", "{output_path}", "--format", "PNG", "--frames={task_frames}", "--fps", "12",
           "--output", "{video_path}"]
"""

SLOWING = """\
name: slowing
version: 1
settings:
  frames: {type: frames, min: 0}
steps:
  - name: render
    command: slowing
    chunk_target_s: 1.0
    chunk_min: 1
    chunk_max: 10
    parser: sleep
    args: ["--frames={frames}", "--slow-from", "41", "--fast", "0.05", "--slow", "0.4"]
"""


def commands_file(path: Path, **commands: str) -> str:
    """An agent's CORRAL_AGENT_COMMANDS file: each command runs one of the stand-in scripts."""
    lines = ["commands:"]
    for name, script in commands.items():
        lines.append(f"  {name}: {{executable: {sys.executable}, args: [{STANDINS / script}], "
                     "env_allow: [HOUDINI_*]}")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture
def studio(farm, tmp_path):
    """A farm whose gateway and dispatcher read this test's job-type directory."""
    types = tmp_path / "jobtypes"
    types.mkdir()
    farm.env["CORRAL_JOB_TYPES_DIR"] = str(types)
    farm.types = types
    return farm


def start_agent(farm, name, commands_path=None, **extra_env):
    base = dict(farm.env)
    farm.env = dict(base, **extra_env)
    if commands_path is not None:
        farm.env["CORRAL_AGENT_COMMANDS"] = commands_path
    farm.agent(name)
    farm.env = base


def test_a_sim_then_blender_render_then_ffmpeg_encode_task_runs_each_step_after_the_one_it_waits_for(
        studio, tmp_path):
    farm = studio
    if shutil.which("ffmpeg") is None:
        missing("ffmpeg")
    scene = make_scene(tmp_path / "anim.blend", frames=6)
    (farm.types / "sim_render_encode.yaml").write_text(SIM_RENDER_ENCODE)
    farm.gateway()
    farm.dispatcher()
    commands = commands_file(tmp_path / "commands.yaml", sim="sim.py")
    for name in ("s1", "s2"):
        start_agent(farm, name, commands, SIM_SECONDS_PER_FRAME="0.2")
    farm.wait_online(["s1", "s2"])
    out = tmp_path / "out"
    task = farm.submit("sim_render_encode", {
        "frames": "1-6", "chunk_size": 2, "cache": f"{out}/cache", "scene": str(scene),
        "output_path": f"{out}/frames/f_####", "video_path": f"{out}/preview.mp4"})
    done = farm.wait_task(task["id"], statuses=("completed", "failed"), timeout=240)
    assert done["status"] == "completed", (done, farm.logs())
    assert sorted(p.name for p in (out / "cache").iterdir()) == [f"sim.{n:04d}.txt" for n in range(1, 7)]
    assert sorted(p.name for p in (out / "frames").glob("*.png")) == [f"f_{n:04d}.png" for n in range(1, 7)]
    assert (out / "preview.mp4").read_bytes()[4:8] == b"ftyp"
    rows = chunk_rows(farm.env, task["id"])
    by_step = {step: [r for r in rows if r["step"] == step] for step in ("sim", "render", "encode")}
    assert [len(v) for v in by_step.values()] == [1, 3, 1]
    (sim,), renders, (encode,) = by_step.values()
    assert min(r["started_at"] for r in renders) >= sim["finished_at"]
    assert encode["started_at"] >= max(r["finished_at"] for r in renders)
    detail = farm.get(f"/tasks/{task['id']}")
    assert [(s["name"], s["chunks_by_status"]) for s in detail["steps"]] == [
        ("sim", {"completed": 1}), ("render", {"completed": 3}), ("encode", {"completed": 1})]


def test_a_husk_step_reports_progress_from_its_alf_progress_lines(studio, tmp_path):
    farm = studio
    shutil.copy(DOCS / "husk.yaml", farm.types / "husk.yaml")
    farm.gateway()
    farm.dispatcher()
    start_agent(farm, "h1", commands_file(tmp_path / "commands.yaml", husk="husk.py"),
                HOUDINI_STANDIN_SECONDS_PER_FRAME="0.6")
    farm.wait_online(["h1"])
    (tmp_path / "shot.usd").write_text("#usda 1.0\n")
    usd = str(tmp_path / "shot.usd")
    task = farm.submit("husk_render", {"frames": "1-8", "chunk_size": 8, "usd_file": usd,
                                       "output_path": f"{tmp_path}/render/shot.$F4.exr"})
    partial = []

    def finished():
        current = farm.get(f"/tasks/{task['id']}")
        if 0 < current["frames_done"] < 8:
            partial.append(current["frames_done"])
        return current if current["status"] in ("completed", "failed") else None
    done = wait_for(finished, timeout=60, interval=0.1, what="the husk task to finish")
    assert done["status"] == "completed", (done, farm.logs())
    assert len(set(partial)) >= 2, f"progress was not reported while husk ran: {partial}"
    (chunk,) = farm.get(f"/tasks/{task['id']}/chunks")["chunks"]
    assert chunk["step"] == "render" and "ALF_PROGRESS 100%" in chunk["log_tail"]
    written = sorted(p.name for p in (tmp_path / "render").iterdir())
    assert written == [f"shot.{n:04d}.exr" for n in range(1, 9)]


def test_an_agent_without_the_command_never_gets_the_step_and_the_task_says_why_it_waits(studio, tmp_path):
    farm = studio
    shutil.copy(DOCS / "husk.yaml", farm.types / "husk.yaml")
    farm.gateway()
    farm.dispatcher()
    start_agent(farm, "plain")  # built-in commands only: no husk here
    farm.wait_online(["plain"])
    assert "husk" not in farm.get("/workers")["plain"]["commands"]
    (tmp_path / "shot.usd").write_text("#usda 1.0\n")
    usd = str(tmp_path / "shot.usd")
    task = farm.submit("husk_render", {"frames": "1-4", "chunk_size": 2, "usd_file": usd,
                                       "output_path": f"{tmp_path}/render/shot.$F4.exr"})

    def waiting_task():
        current = farm.get(f"/tasks/{task['id']}")
        return current if current["waiting_reason"] else None
    waiting = wait_for(waiting_task, timeout=30, what="a waiting reason")
    assert waiting["waiting_reason"] == "waiting: no online, enabled agent in pool 'default' can run 'husk'"
    assert waiting["status"] == "queued"
    assert {c["status"] for c in farm.get(f"/tasks/{task['id']}/chunks")["chunks"]} == {"pending"}
    start_agent(farm, "houdini", commands_file(tmp_path / "commands.yaml", husk="husk.py"),
                HOUDINI_STANDIN_SECONDS_PER_FRAME="0")
    done = farm.wait_task(task["id"], statuses=("completed", "failed"), timeout=60)
    assert done["status"] == "completed" and done["waiting_reason"] == ""
    chunks = farm.get(f"/tasks/{task['id']}/chunks")["chunks"]
    assert {c["worker"] for c in chunks} == {"houdini"}
    assert all(a["worker"] == "houdini" for c in chunks for a in c["attempts_history"])


def test_adaptive_chunks_grow_on_fast_frames_and_shrink_when_frames_get_slower(studio, tmp_path):
    farm = studio
    (farm.types / "slowing.yaml").write_text(SLOWING)
    farm.env["CORRAL_RELEASE_AHEAD"] = "0"  # one chunk at a time: each is sized from the last
    farm.gateway()
    farm.dispatcher()
    start_agent(farm, "ad1", commands_file(tmp_path / "commands.yaml", slowing="slowing.py"))
    farm.wait_online(["ad1"])
    task = farm.submit("slowing", {"frames": "1-60"})
    done = farm.wait_task(task["id"], statuses=("completed", "failed"), timeout=120)
    assert done["status"] == "completed" and done["frames_done"] == 60, farm.logs()
    chunks = sorted(farm.get(f"/tasks/{task['id']}/chunks")["chunks"], key=lambda c: c["frame_start"])
    sizes = [(c["frame_start"], c["frame_count"]) for c in chunks]
    print("adaptive chunks (first frame, frames):", sizes)
    fast = [n for start, n in sizes if start + n - 1 < 41]
    slow = [n for start, n in sizes if start >= 50]
    assert sizes[0] == (1, 1), sizes  # the first chunk measures
    assert max(fast) >= 6, sizes  # 0.05 s frames: about target / frame time, up to chunk_max 10
    assert slow and max(slow) <= 3, sizes  # 0.4 s frames: a 1 s chunk holds two or three
    assert sum(n for _, n in sizes) == 60
