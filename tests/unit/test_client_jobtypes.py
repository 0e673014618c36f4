"""``corral jobtypes list|show|check`` against the real gateway (wsgiref in a thread)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from corral.jobtypes_cli import add_jobtypes_commands
from tests.unit.test_client import api, publisher  # noqa: F401 - fixtures
from tests.unit.test_jobtypes import GOOD

DOCS = Path(__file__).resolve().parents[2] / "docs" / "jobtypes"


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="corral")
    add_jobtypes_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_list_prints_each_loaded_type_with_its_steps(api, capsys):  # noqa: F811
    assert run("jobtypes", "list", "--api", api) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["NAME", "VERSION", "LABEL", "STEPS"]
    blender = next(line for line in out if line.startswith("blender_render"))
    assert blender.endswith("render(blender_render) -> video(ffmpeg_encode)")


def test_show_prints_the_settings_and_the_steps(api, capsys):  # noqa: F811
    assert run("jobtypes", "show", "sleep", "--api", api) == 0
    out = capsys.readouterr().out
    assert out.startswith("sleep v1: Sleep")
    assert "seconds_per_frame  float" in out and "min 0, max 3600" in out
    assert run("jobtypes", "show", "nope", "--api", api) == 1
    assert "job type nope not found" in capsys.readouterr().err


def test_check_accepts_a_good_file_and_prints_the_declaration_as_json(tmp_path, capsys):
    path = tmp_path / "sim.yaml"
    path.write_text(GOOD)
    assert run("jobtypes", "check", str(path), "--json") == 0
    body = json.loads(capsys.readouterr().out)
    assert body["name"] == "sim_render" and body["steps"][1]["regex"]["progress_unit"] == "percent"
    assert run("jobtypes", "check", str(DOCS / "nuke.yaml")) == 0
    assert capsys.readouterr().out.startswith(f"{DOCS / 'nuke.yaml'}: ok")


def test_check_prints_the_first_mistake_with_file_line_and_field_and_exits_1(tmp_path, capsys):
    path = tmp_path / "sim.yaml"
    path.write_text(GOOD.replace("after: [sim]", "after: [comp]"))
    assert run("jobtypes", "check", str(path)) == 1
    assert capsys.readouterr().out.strip() == (
        f"corral jobtypes check: {path}:19: steps[1].after[0]: 'comp' is not a step declared before this one")
