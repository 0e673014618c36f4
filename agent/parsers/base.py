"""The progress state every parser updates."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Progress:
    """What a chunk has achieved so far, as reported to the dispatcher."""

    frames_done: list[int] = dataclasses.field(default_factory=list)
    frame_current: int | None = None
    files: list[str] = dataclasses.field(default_factory=list)
    error: str = ""  # the last error line the child printed, for the failure reason
    fatal: str = ""  # a line that dooms the chunk even if the child would exit 0

    def mark_done(self, frame: int, file: str | None = None) -> bool:
        """Record a finished frame (and its file); False if nothing new was learned."""
        changed = False
        if frame not in self.frames_done:
            self.frames_done.append(frame)
            changed = True
        if file is not None and file not in self.files:
            self.files.append(file)
            changed = True
        return changed


class Parser:
    """Base parser: keeps the progress and the frames still expected."""

    def __init__(self, frames: list[int]) -> None:
        self.frames = list(frames)
        self.progress = Progress()

    def feed(self, line: str) -> bool:  # pragma: no cover - every parser overrides it
        raise NotImplementedError

    def next_expected(self) -> int | None:
        """The first frame of the chunk not yet done, in render order."""
        done = set(self.progress.frames_done)
        return next((f for f in self.frames if f not in done), None)

    def file_written(self, path: str, frame: int | None) -> bool:
        """Record a written file as ``frame`` done; with no frame left (more files than frames,
        e.g. stereo views) keep the file alone. True when the progress changed."""
        if frame is None:
            if path in self.progress.files:
                return False
            self.progress.files.append(path)
            return True
        self.progress.frame_current = frame
        return self.progress.mark_done(frame, path)

    def finish_all(self) -> None:
        """Mark every frame done: the command succeeded as a whole (noop, a video encode)."""
        for frame in self.frames:
            self.progress.mark_done(frame)


class RefusedParser(Parser):
    """Stands in for a parser whose spec was refused; the chunk fails with ``reason`` before it runs."""

    def __init__(self, frames: list[int], reason: str) -> None:
        super().__init__(frames)
        self.reason = reason

    def feed(self, line: str) -> bool:
        return False
