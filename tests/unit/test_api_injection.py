"""Injection through every setting of every task type: refused naming the field, or inert.

A hostile value either gets a 400 naming the setting, or it is accepted and
then reaches the command as one whole argument (never a flag, never through a
shell). Accepted tasks are compiled and their command run exactly as the
agent would, with a stand-in Blender that records its arguments: no marker
file may appear and no argument may be a flag a user wrote.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest
from falcon import testing

from agent import executors
from agent.registry import blender_spec, builtin_commands, ffmpeg_encode_spec
from api_gateway.app import create_app
from api_gateway.ratelimit import FailureLimiter
from common.config import load_config
from common.db import open_and_migrate
from common.jobtypes import registry
from common.jobtypes.schema import walk_args
from common.jobtypes.tokens import tokens_of
from common.messages import ChunkAssign
from dispatcher.compilers import compile_task

ADMIN = "test-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
# Every flag Corral itself puts on a Blender command line (the agent, then the blender_render file).
BLENDER_FLAGS = {"-b", "--disable-autoexec", "-S", "-E", "--python-exit-code", "--python-expr", "-o", "-F",
                 "-t", "-s", "-e", "-a", "-f", "--", "--camera", "--resolution-percentage", "--samples"}
ENCODE_FLAGS = {"-m", "--ffmpeg", "--pattern", "--format", "--fps", "--output"}


class NullPublisher:
    def event(self, message) -> None:
        pass


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("inject")
    root = base / "storage"
    root.mkdir()
    (root / "a.blend").write_bytes(b"BLENDER")
    marker = base / "PWNED"
    recorder = base / "argv.json"
    fake = base / "fake-blender"
    fake.write_text(f"#!{sys.executable}\nimport json, sys\n"
                    f"open({str(recorder)!r}, 'w').write(json.dumps(sys.argv[1:]))\n")
    fake.chmod(0o755)
    db = open_and_migrate(f"sqlite:///{base}/i.db")
    config = load_config({}, admin_token=ADMIN, storage_roots=(str(root),), blender=str(fake))
    client = testing.TestClient(create_app(config, NullPublisher(), limiter=FailureLimiter(1e6, 10**6)),
                                headers=AUTH)
    yield client, root, marker, recorder, config
    db.close()


def hostile_strings(marker):
    m = str(marker)
    return ["-P", f"-P{m}.py", f"--python-expr=open({m!r},'w')", f"$(touch {m})", f"`touch {m}`",
            f"x; touch {m}", f"x && touch {m}", f"x\ntouch {m}", "x\ry", "x\x00y",
            f"x' + __import__('os').system('touch {m}') + '", "' ]; import os #", "", "x" * 5000,
            7, 3.5, True, ["-P", m], {"a": 1}]


HOSTILE_NUMBERS = ["3; rm -rf /", "3", 3.5, -1, 10**15, True, "1e3", [1], {"n": 1}, None]
HOSTILE_FRAMES = ["1-3;touch x", "1-3\n4", "-P", "1-3 && id", 5, ["1-3"], "", "1-" + "9" * 30]


def cases(marker, root):
    """(task type, base settings, setting name, hostile value) for every setting of every type."""
    frames = {"frames": "1-2"}
    blend = {"frames": "1-2", "filepath": f"{root}/a.blend", "output_path": f"{root}/out/f_##", "video": True}
    out = []
    for ttype, base, numbers in (("noop", frames, ("chunk_size",)),
                                 ("sleep", {**frames, "seconds_per_frame": 0},
                                  ("chunk_size", "seconds_per_frame", "exit_code")),
                                 ("blender_render", blend, ("chunk_size", "resolution_percentage", "samples",
                                                            "threads", "fps"))):
        out += [(ttype, base, "frames", v) for v in HOSTILE_FRAMES]
        by_range = {**{k: v for k, v in base.items() if k != "frames"}, "frame_start": 1, "frame_end": 2}
        out += [(ttype, by_range, key, v) for key in ("frame_start", "frame_end") for v in HOSTILE_NUMBERS]
        out += [(ttype, base, key, v) for key in numbers for v in HOSTILE_NUMBERS]
    for key in ("scene", "camera", "format", "engine"):
        out += [("blender_render", blend, key, v) for v in hostile_strings(marker)]
    for key in ("filepath", "output_path", "video_path"):
        out += [("blender_render", blend, key, v) for v in hostile_strings(marker)]
        out += [("blender_render", blend, key, f"{root}/{v}") for v in hostile_strings(marker)
                if isinstance(v, str) and v]
    env_values = [{"LD_PRELOAD": f"{root}/evil.so"}, {"PYTHONHOME": str(root)}, {"PYTHONSTARTUP": "x"},
                  {"BLENDER_USER_SCRIPTS": str(root)}, {"PATH": str(root)}, {"CORRAL_AGENT_SECRET": "x"},
                  {"lower": "x"}, {"OK": f"a\ntouch {marker}"}, {"OK": 5}, {"OCIO": f"$(touch {marker})"},
                  {f"K{i}": "v" for i in range(65)}, "A=1", ["A=1"]]
    out += [("blender_render", blend, "env", v) for v in env_values]
    out += [("blender_render", blend, "video", v) for v in ("true", 1, None, [True])]
    return out


def test_the_hostile_values_reach_every_token_of_every_built_in_job_type(tmp_path):
    covered = {(ttype, key) for ttype, _, key, _ in cases(tmp_path / "m", tmp_path)}
    for jobtype in registry().values():
        for step in jobtype.steps:
            for template, _ in walk_args(step.args):
                for token in tokens_of(template):
                    # Frame tokens are filled from the frames setting (frames, frame_start, frame_end).
                    name = "frames" if jobtype.setting(token.name) is None else token.name
                    assert (jobtype.name, name) in covered, (jobtype.name, step.name, template)


def test_every_hostile_setting_is_refused_by_name_or_inert(world):
    client, root, marker, recorder, config = world
    refused = accepted = 0
    for ttype, base, key, value in cases(marker, root):
        settings = {**base, key: value}
        result = client.simulate_post("/tasks", json={"type": ttype, "settings": settings})
        assert result.status_code in (202, 400), (ttype, key, value, result.text)
        if result.status_code == 400:
            refused += 1
            field = result.json["error"]["field"]
            assert field.startswith(f"settings.{key}"), (ttype, key, value, result.text)
            continue
        accepted += 1
        run_like_the_agent(result.json, config, recorder)
        assert not marker.exists(), (ttype, key, value)
    assert refused > 200 and accepted > 10  # both paths were exercised


def run_like_the_agent(task, config, recorder):
    """Compile the task and run each chunk's command as the agent would (no shell)."""
    specs = {"blender_render": blender_spec(config.blender, allow_python=False),
             "ffmpeg_encode": ffmpeg_encode_spec("/usr/bin/ffmpeg"),
             **builtin_commands(config)[0]}
    for spec in compile_task(task["type"], task["settings"]):
        assign = ChunkAssign(task_id=task["id"], chunk_id=1, lease_id="l", attempt=1, command=spec.command,
                             parser=spec.parser or task["parser"], params=spec.params, frames=spec.frames)
        command = executors.build(assign, specs[spec.command])
        if spec.command == "blender_render":
            check_blender_argv(command.argv, task["settings"])
            recorder.unlink(missing_ok=True)
            subprocess.run(command.argv, env=command.env, check=True, timeout=30, stdin=subprocess.DEVNULL)
            assert json.loads(recorder.read_text()) == command.argv[1:]
        elif spec.command == "ffmpeg_encode":
            flags = [a for a in command.argv[1:] if a.startswith("-") and not a.startswith("--frames=")]
            assert set(flags) <= ENCODE_FLAGS, command.argv
        elif spec.command == "sleep":
            assert command.argv[:3] == [sys.executable, "-m", "agent.children.sleeper"]
            assert all(not a.startswith("-") or a in ("--seconds", "--exit-code") or a.startswith("--frames=")
                       for a in command.argv[3:]), command.argv


def check_blender_argv(argv, settings):
    for arg in argv[1:]:
        # Every dash-argument is one Corral put there (frame ranges like "-5" cannot reach here).
        assert not arg.startswith("-") or arg in BLENDER_FLAGS, argv
    if "--python-expr" in argv:
        # The script is the job type's own text: no value is ever pasted into code.
        script = argv[argv.index("--python-expr") + 1]
        assert script in [t for step in registry()["blender_render"].steps for t, _ in walk_args(step.args)]
        ast.parse(script)
    if "camera" in settings:
        assert argv[argv.index("--camera") + 1] == settings["camera"]
