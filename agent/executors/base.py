"""What an executor hands the runner, and helpers every executor shares."""
from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.errors import PreflightFailed, UnsupportedParams
from common import jobtypes
from common.config import Config
from common.errors import ValidationError
from common.messages import ChunkAssign


@dataclasses.dataclass
class Command:
    """One chunk's work: a child process (``argv``) or, when ``argv`` is None, nothing to run.

    ``all_done_on_success`` says an exit 0 means every frame is done even if
    the output did not name each one (a noop, a video encode).
    """

    argv: list[str] | None
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    all_done_on_success: bool = False
    temp_files: list[Path] = dataclasses.field(default_factory=list)

    def cleanup(self) -> None:
        for path in self.temp_files:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


Executor = Callable[[ChunkAssign, Config], Command]


def check_keys(params: dict[str, Any], allowed: set[str], command: str) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise UnsupportedParams(f"{command}: unsupported params {', '.join(unknown)}")


def validated(check: Callable[..., Any], params: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
    """Run a ``common.jobtypes`` field check, turning its error into a refusal."""
    try:
        return check(params, *args, **kwargs)
    except ValidationError as exc:
        raise UnsupportedParams(f"params.{exc.field.removeprefix('settings.')}: {exc.reason}") from None


def get_str(params: dict[str, Any], name: str, required: bool = True,
            choices: tuple[str, ...] | None = None) -> str | None:
    return validated(jobtypes.get_str, params, name, required=required, choices=choices)


def get_int(params: dict[str, Any], name: str, lo: int, hi: int, default: int | None = None) -> int:
    return validated(jobtypes.get_int, params, name, default=default, lo=lo, hi=hi)


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
