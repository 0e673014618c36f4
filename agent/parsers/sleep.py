"""Parser for ``agent.children.sleeper``: ``Fra:N sleeping ...`` then ``Frame N done``."""
from __future__ import annotations

import re

from agent.parsers.base import Parser

_START = re.compile(r"^Fra:(-?\d+)\b")
_DONE = re.compile(r"^Frame (-?\d+) done\b")


class SleepParser(Parser):
    """Tracks the frame being slept on and the frames finished."""

    def feed(self, line: str) -> bool:
        match = _DONE.match(line)
        if match:
            return self.progress.mark_done(int(match.group(1)))
        match = _START.match(line)
        if match:
            frame = int(match.group(1))
            changed = frame != self.progress.frame_current
            self.progress.frame_current = frame
            return changed
        return False
