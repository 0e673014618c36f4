"""The agent's command registry: built-ins found on the machine plus the commands file."""
from __future__ import annotations

import sys

import pytest

from agent.registry import default_registry
from common.config import Config
from common.errors import ConfigError

NO_TOOLS = {"blender": "/nonexistent/blender", "ffmpeg": "/nonexistent/ffmpeg"}


def registry(tmp_path, text: str):
    path = tmp_path / "commands.yaml"
    path.write_text(text)
    return default_registry(Config(agent_commands=str(path), **NO_TOOLS))


def test_a_command_line_in_the_file_adds_a_command_with_its_executable_and_allowlist(tmp_path):
    reg = registry(tmp_path, f"commands:\n  sim: {{executable: {sys.executable}, args: [/farm/sim.py], "
                             "env_allow: [SIM_*]}\n")
    assert reg.commands == ["noop", "sim", "sleep"]
    sim = reg.spec("sim")
    assert (sim.executable, sim.args, sim.env_allow) == (sys.executable, ("/farm/sim.py",), ("SIM_*",))


def test_a_command_whose_executable_is_not_on_this_machine_is_not_offered(tmp_path):
    reg = registry(tmp_path, "commands:\n  husk: {executable: /opt/hfs20.5/bin/husk}\n")
    assert "husk" not in reg.commands and reg.spec("husk") is None


def test_a_built_in_can_be_turned_off(tmp_path):
    reg = registry(tmp_path, "commands:\n  sleep: {enabled: false}\n")
    assert reg.commands == ["noop"] and reg.spec("sleep") is None


def test_an_executable_is_found_on_the_path_by_name(tmp_path):
    reg = registry(tmp_path, "commands:\n  listing: {executable: ls}\n")
    assert reg.spec("listing").executable.endswith("/ls")


@pytest.mark.parametrize(("text", "message"), [
    ("commands: [sim]\n", "must be a mapping with one key, commands"),
    ("commands:\n  Sim: {executable: ls}\n", "commands.Sim: a command name must match"),
    ("commands:\n  sim: {executable: ls, shell: true}\n", "commands.sim: must be a mapping of"),
    ("commands:\n  sim: {executable: ls, args: -x}\n", "commands.sim.args: must be a list of strings"),
    ("commands:\n  sim: {executable: ls, env_allow: [path]}\n", "commands.sim.env_allow: 'path' must be"),
    ("commands:\n  sim: {executable: ls, enabled: maybe}\n", "commands.sim.enabled: must be true or false"),
    ("commands:\n  sim: {executable: ''}\n", "commands.sim.executable: must be a program name"),
    ("commands: {\n", "cannot be read"),
])
def test_a_bad_commands_file_stops_the_agent_with_a_sentence(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        registry(tmp_path, text)
