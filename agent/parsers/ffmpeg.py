"""Parser for ffmpeg's ``frame=   N fps=...`` progress lines.

ffmpeg ends its progress lines with a carriage return; the runner splits on
both ``\\r`` and ``\\n`` so each update arrives as a line. ``frame=N`` means the
first N input frames of the chunk are encoded.
"""
from __future__ import annotations

import re

from agent.parsers.base import Parser

_FRAME = re.compile(r"^frame=\s*(\d+)\b")
_ERROR = re.compile(r"(No such file or directory|Invalid data|Error|error while|Impossible to open)")


class FfmpegParser(Parser):
    """Maps the encoded frame count onto the chunk's frames."""

    def feed(self, line: str) -> bool:
        match = _FRAME.match(line.strip())
        if not match:
            if _ERROR.search(line):
                self.progress.error = line.strip()[:300]
            return False
        count = min(int(match.group(1)), len(self.frames))
        changed = False
        for frame in self.frames[:count]:
            changed = self.progress.mark_done(frame) or changed
        if count:
            self.progress.frame_current = self.frames[count - 1]
        return changed
