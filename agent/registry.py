"""What this agent can run: executors and parsers by name, filtered by the tools found.

Blender and ffmpeg come only from the config (``config.blender``,
``config.ffmpeg``); a command whose tool is missing is not offered, so the
dispatcher never sends it here.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import shutil
import subprocess
from collections.abc import Mapping

from agent.executors import EXECUTORS, TOOLS, Executor
from agent.parsers import PARSERS, ParserFactory
from common.config import Config

log = logging.getLogger(__name__)

VERSION_TIMEOUT_S = 30.0
# tool -> (the flag that prints its version, the line that carries it)
_VERSION = {
    "blender": ("--version", re.compile(r"^Blender (\S+)")),
    "ffmpeg": ("-version", re.compile(r"^ffmpeg version (\S+)")),  # ffmpeg refuses --version
}


@dataclasses.dataclass(frozen=True)
class Registry:
    """The executors and parsers an agent offers, and the tool versions behind them."""

    executors: Mapping[str, Executor]
    parsers: Mapping[str, ParserFactory] = dataclasses.field(default_factory=lambda: dict(PARSERS))
    versions: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def commands(self) -> list[str]:
        return sorted(self.executors)


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


def default_registry(config: Config) -> Registry:
    """Every executor whose tool is installed, with the versions found."""
    versions: dict[str, str] = {}
    for tool in sorted(set(TOOLS.values())):
        version = tool_version(getattr(config, tool), tool)
        if version is None:
            log.info("%s (%s) not found: its commands are not offered", tool, getattr(config, tool))
        else:
            versions[tool] = version
    executors = {name: ex for name, ex in EXECUTORS.items() if TOOLS.get(name, "") in versions
                 or name not in TOOLS}
    return Registry(executors=executors, versions=versions)
