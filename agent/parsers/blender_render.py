"""Parser for Blender's render output (checked against Blender 3.4).

Cycles and Eevee print ``Fra:N Mem:...`` status lines while rendering a frame;
Workbench prints none. Every engine prints ``Saved: '/path/file.png'`` once a
frame's file is written, so a ``Saved:`` line is what counts as a frame done.
Its frame is the last ``Fra:`` seen since the previous save, else the next
frame of the chunk in render order.
"""
from __future__ import annotations

import re

from agent.parsers.base import Parser

_FRA = re.compile(r"^Fra:(-?\d+)\s")
_SAVED = re.compile(r"^Saved: '(.*)'\s*$")
_ERROR = re.compile(r"^(Error\b|Writing: .*\.crash\.txt)")
# Blender renders the file's active scene when -S names a missing one: never what was asked.
_FATAL = re.compile(r"^Can't find scene: ")


class BlenderRenderParser(Parser):
    """Reads ``Fra:`` and ``Saved:`` lines; remembers the last error line."""

    def __init__(self, frames: list[int]) -> None:
        super().__init__(frames)
        self._fra_since_save: int | None = None

    def feed(self, line: str) -> bool:
        match = _FRA.match(line)
        if match:
            frame = int(match.group(1))
            self._fra_since_save = frame
            changed = frame != self.progress.frame_current
            self.progress.frame_current = frame
            return changed
        match = _SAVED.match(line)
        if match:
            return self._saved(match.group(1))
        if _FATAL.match(line):
            self.progress.fatal = self.progress.error = line.strip()[:300]
        elif _ERROR.match(line):
            self.progress.error = line.strip()[:300]
        return False

    def _saved(self, path: str) -> bool:
        frame = self._fra_since_save
        if frame is None:
            frame = self.next_expected()
        self._fra_since_save = None
        return self.file_written(path, frame)
