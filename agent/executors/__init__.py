"""Turning a chunk into a child process: the one executor every command goes through.

The command's executable and fixed leading arguments come from this agent's
registry (``agent.registry``); the chunk brings only the arguments after them
(``params.args``, each one argv element, never a shell string), the variables
it sets (``params.env``, each allowed by the command's ``env_allow``) and the
paths it reads or writes (``params.paths``), checked here before anything runs.
"""
from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Any

from agent.errors import PreflightFailed, UnsupportedParams
from agent.executors.base import Command
from agent.registry import CommandSpec
from common.jobtypes import env_name_allowed
from common.messages import ChunkAssign

PARAMS = frozenset({"args", "env", "paths", "done_on_exit", "parser_spec", "stall_timeout_s"})
MAX_ARGS = 10_000
MAX_ARG_CHARS = 131_072  # Linux's limit for one argument


def prepare(assign: ChunkAssign, spec: CommandSpec) -> Command:
    """The command for a chunk, its inputs and output folders checked; ``ChunkRefused`` says why not."""
    command = build(assign, spec)
    preflight(assign.params.get("paths", []))
    return command


def build(assign: ChunkAssign, spec: CommandSpec) -> Command:
    """The command line and environment for a chunk (pure); raise ``UnsupportedParams`` if it cannot run."""
    params = assign.params
    unknown = sorted(set(params) - PARAMS)
    if unknown:
        raise UnsupportedParams(f"{assign.command}: unsupported params {', '.join(unknown)}")
    args = _args(params.get("args", []))
    env = _env(params.get("env", {}), spec)
    if spec.executable is None:
        return Command(argv=None, all_done_on_success=True)
    return Command(argv=[spec.executable, *spec.args, *args], env=env,
                   all_done_on_success=params.get("done_on_exit") is True)


def _args(args: Any) -> list[str]:
    if not isinstance(args, list) or len(args) > MAX_ARGS:
        raise UnsupportedParams(f"params.args must be a list of at most {MAX_ARGS} strings")
    for i, arg in enumerate(args):
        if not isinstance(arg, str) or "\x00" in arg or len(arg) > MAX_ARG_CHARS:
            raise UnsupportedParams(f"params.args[{i}] must be a string without NUL")
    return list(args)


def _env(env: Any, spec: CommandSpec) -> dict[str, str]:
    if not isinstance(env, dict) or len(env) > 64:
        raise UnsupportedParams("params.env must be an object of at most 64 string values")
    for key, value in env.items():
        if not key.isidentifier() or not key.isupper() or not env_name_allowed(key):
            raise UnsupportedParams(f"params.env.{key}: not an allowed variable name")
        if not any(fnmatch.fnmatchcase(key, pattern) for pattern in spec.env_allow):
            raise UnsupportedParams(f"params.env.{key}: command {spec.name} on this agent does not allow it")
        if not isinstance(value, str) or any(c in value for c in "\x00\n\r"):
            raise UnsupportedParams(f"params.env.{key}: must be a single-line string")
    return dict(env)


def preflight(paths: Any) -> None:
    """Inputs must exist and output folders must be writable before the command starts."""
    if not isinstance(paths, list):
        raise UnsupportedParams("params.paths must be a list")
    for entry in paths:
        path, access = entry.get("path"), entry.get("access")
        if access == "read" and not _pattern(path) and not os.path.exists(path):
            raise PreflightFailed(f"input {entry.get('setting', 'file')} not found: {path}")
        if access == "write":
            ensure_output_dir(path)


def _pattern(path: str) -> bool:
    return "#" in os.path.basename(path) or "%" in os.path.basename(path)


def ensure_output_dir(path: str, what: str = "output directory") -> Path:
    """Create the directory a file will be written to and check it is writable."""
    directory = Path(path).parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PreflightFailed(f"cannot create {what} {directory}: {exc.strerror or exc}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PreflightFailed(f"{what} {directory} is not writable")
    return directory


__all__ = ["Command", "build", "ensure_output_dir", "preflight", "prepare"]
