"""What an executor hands the runner."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path


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
