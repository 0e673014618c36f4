"""What this agent can run: its command registry, from the built-ins found here and its configuration.

A command is a name the job types use (``blender_render``, ``husk``) mapped to
an executable on this machine, fixed leading arguments, the environment
variables a task may set for it, and whether it may run here at all. Messages
carry only the arguments after those; the executable always comes from here.
The agent advertises the enabled commands whose executable it found, so the
dispatcher never sends it anything else.

``CORRAL_AGENT_COMMANDS`` names a YAML file (docs/jobtypes.md)::

    commands:
      husk: {executable: /opt/hfs20.5/bin/husk, env_allow: [HOUDINI_*]}
      blender_render: {enabled: false}     # a built-in can be turned off or replaced
"""
from __future__ import annotations

import dataclasses
import logging
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from agent.parsers import PARSERS, ParserFactory
from common.config import Config
from common.errors import ConfigError

log = logging.getLogger(__name__)

VERSION_TIMEOUT_S = 30.0
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
ENV_PATTERN_RE = re.compile(r"^[A-Z_][A-Z0-9_]*\*?$|^\*$")
FIELDS = ("executable", "args", "env_allow", "enabled")
# tool -> (the flag that prints its version, the line that carries it)
_VERSION = {
    "blender": ("--version", re.compile(r"^Blender (\S+)")),
    "ffmpeg": ("-version", re.compile(r"^ffmpeg version (\S+)")),  # ffmpeg refuses --version
}


@dataclasses.dataclass(frozen=True)
class CommandSpec:
    """One command this agent offers. ``executable`` None: done inside the agent (``noop``)."""

    name: str
    executable: str | None
    args: tuple[str, ...] = ()
    env_allow: tuple[str, ...] = ()
    enabled: bool = True


@dataclasses.dataclass(frozen=True)
class Registry:
    """The commands and parsers an agent offers, and the tool versions behind them."""

    specs: Mapping[str, CommandSpec]
    parsers: Mapping[str, ParserFactory] = dataclasses.field(default_factory=lambda: dict(PARSERS))
    versions: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def commands(self) -> list[str]:
        return sorted(name for name, spec in self.specs.items() if spec.enabled)

    def spec(self, name: str) -> CommandSpec | None:
        found = self.specs.get(name)
        return found if found is not None and found.enabled else None


def tool_version(executable: str, tool: str) -> str | None:
    """The version the tool reports, or None when it is not installed or not usable."""
    path = shutil.which(executable)
    if path is None:
        return None
    try:
        flag, pattern = _VERSION[tool]
        result = subprocess.run([path, flag], capture_output=True, text=True,
                                timeout=VERSION_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("%s at %s does not answer --version: %s", tool, path, exc)
        return None
    for line in result.stdout.splitlines():
        match = pattern.match(line.strip())
        if match:
            return match.group(1)
    log.warning("%s at %s printed no version (exit code %s)", tool, path, result.returncode)
    return None


def blender_spec(executable: str, allow_python: bool) -> CommandSpec:
    """Blender in background mode; a task can never turn autoexec back on (it is fixed here)."""
    lead = ("-b",) if allow_python else ("-b", "--disable-autoexec")
    return CommandSpec("blender_render", executable, lead, ("*",))


def ffmpeg_encode_spec(ffmpeg: str) -> CommandSpec:
    lead = ("-m", "agent.children.encode_frames", "--ffmpeg", ffmpeg)
    return CommandSpec("ffmpeg_encode", sys.executable, lead)


def builtin_commands(config: Config) -> tuple[dict[str, CommandSpec], dict[str, str]]:
    """The built-in commands whose tools are installed, and the versions found."""
    specs = {
        "noop": CommandSpec("noop", None),
        "sleep": CommandSpec("sleep", sys.executable, ("-m", "agent.children.sleeper")),
    }
    versions: dict[str, str] = {}
    blender = tool_version(config.blender, "blender")
    if blender is not None:
        versions["blender"] = blender
        specs["blender_render"] = blender_spec(str(shutil.which(config.blender)), config.blender_allow_python)
    else:
        log.info("blender (%s) not found: blender_render is not offered", config.blender)
    ffmpeg = tool_version(config.ffmpeg, "ffmpeg")
    if ffmpeg is not None:
        versions["ffmpeg"] = ffmpeg
        specs["ffmpeg_encode"] = ffmpeg_encode_spec(str(shutil.which(config.ffmpeg)))
    else:
        log.info("ffmpeg (%s) not found: ffmpeg_encode is not offered", config.ffmpeg)
    return specs, versions


def load_commands(path: str) -> dict[str, dict[str, Any]]:
    """The entries of a commands file, checked; raise ``ConfigError`` saying what is wrong."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"CORRAL_AGENT_COMMANDS {path}: cannot be read: {exc}") from None
    if not isinstance(data, dict) or set(data) != {"commands"} or not isinstance(data["commands"], dict):
        raise ConfigError(f"CORRAL_AGENT_COMMANDS {path}: must be a mapping with one key, commands")
    for name, entry in data["commands"].items():
        _check_entry(path, name, entry)
    return data["commands"]


def _check_entry(path: str, name: Any, entry: Any) -> None:
    where = f"CORRAL_AGENT_COMMANDS {path}: commands.{name}"
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfigError(f"{where}: a command name must match {NAME_RE.pattern}")
    if not isinstance(entry, dict) or set(entry) - set(FIELDS):
        raise ConfigError(f"{where}: must be a mapping of {', '.join(FIELDS)}")
    if "executable" in entry and (not isinstance(entry["executable"], str) or not entry["executable"]):
        raise ConfigError(f"{where}.executable: must be a program name or path")
    for key in ("args", "env_allow"):
        value = entry.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and "\x00" not in v for v in value):
            raise ConfigError(f"{where}.{key}: must be a list of strings")
    for pattern in entry.get("env_allow", []):
        if not ENV_PATTERN_RE.match(pattern):
            raise ConfigError(f"{where}.env_allow: {pattern!r} must be an UPPER_CASE name, a prefix*, or *")
    if not isinstance(entry.get("enabled", True), bool):
        raise ConfigError(f"{where}.enabled: must be true or false")


def _configured(name: str, entry: dict[str, Any], builtin: CommandSpec | None) -> CommandSpec | None:
    if "executable" not in entry:
        if builtin is None:
            log.warning("command %s has no executable and is not a built-in here: not offered", name)
            return None
        return dataclasses.replace(builtin, enabled=entry.get("enabled", True))
    found = shutil.which(entry["executable"])
    if found is None:
        log.info("command %s: %s not found: not offered", name, entry["executable"])
        return None
    return CommandSpec(name, found, tuple(entry.get("args", [])), tuple(entry.get("env_allow", [])),
                       entry.get("enabled", True))


def default_registry(config: Config) -> Registry:
    """The built-in commands found here, with the commands file's entries on top."""
    specs, versions = builtin_commands(config)
    if config.agent_commands:
        for name, entry in load_commands(config.agent_commands).items():
            spec = _configured(name, entry, specs.get(name))
            if spec is None:
                specs.pop(name, None)
            else:
                specs[name] = spec
    return Registry(specs=specs, versions=versions)
