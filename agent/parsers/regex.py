"""A parser declared in a job-type file: patterns for progress, files written and errors.

``progress`` has one group: with ``progress_unit: frame`` it is the frame being
worked on (the chunk's frames before it, in render order, are done); with
``percent`` it is how far through the chunk the command is (that share of the
chunk's frames is done). ``file_written`` captures a path; the frame it belongs
to is the next one not yet done. ``error`` lines become the failure reason and
``fatal`` lines fail the chunk even if the command exits 0.
"""
from __future__ import annotations

import math
import re
from typing import Any

from agent.errors import UnsupportedParams
from agent.parsers.base import Parser

MAX_PATTERN_CHARS = 1000


def _compile(spec: dict[str, Any], key: str, groups: int | None) -> re.Pattern[str] | None:
    text = spec.get(key, "")
    if not text:
        return None
    if not isinstance(text, str) or len(text) > MAX_PATTERN_CHARS:
        raise UnsupportedParams(f"params.parser_spec.{key} must be a pattern of at most "
                                f"{MAX_PATTERN_CHARS} characters")
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise UnsupportedParams(f"params.parser_spec.{key}: {exc}") from None
    if groups is not None and pattern.groups != groups:
        raise UnsupportedParams(f"params.parser_spec.{key} must have exactly {groups} group")
    return pattern


class RegexParser(Parser):
    """Applies the file's patterns to each line (``re.search``)."""

    def __init__(self, frames: list[int], spec: dict[str, Any]) -> None:
        super().__init__(frames)
        if not isinstance(spec, dict):
            raise UnsupportedParams("params.parser_spec must be an object")
        self.unit = spec.get("progress_unit", "frame")
        if self.unit not in ("frame", "percent"):
            raise UnsupportedParams("params.parser_spec.progress_unit must be frame or percent")
        self.progress_re = _compile(spec, "progress", 1)
        self.file_re = _compile(spec, "file_written", 1)
        self.error_re = _compile(spec, "error", None)
        self.fatal_re = _compile(spec, "fatal", None)
        self.percent = 0.0

    def feed(self, line: str) -> bool:
        if self.fatal_re is not None and self.fatal_re.search(line):
            self.progress.fatal = self.progress.error = line.strip()[:300]
            return False
        if self.error_re is not None and self.error_re.search(line):
            self.progress.error = line.strip()[:300]
        if self.file_re is not None:
            match = self.file_re.search(line)
            if match:
                return self._file(match.group(1))
        if self.progress_re is not None:
            match = self.progress_re.search(line)
            if match:
                return self._progress(match.group(1))
        return False

    def _file(self, path: str) -> bool:
        return self.file_written(path, self.next_expected())

    def _progress(self, text: str) -> bool:
        try:
            value = float(text)
        except ValueError:
            return False
        if self.unit == "percent":
            return self._percent(value)
        frame = int(value)
        if frame not in self.frames:
            return False
        changed = frame != self.progress.frame_current
        self.progress.frame_current = frame
        for earlier in self.frames[:self.frames.index(frame)]:
            changed = self.progress.mark_done(earlier) or changed
        return changed

    def _percent(self, value: float) -> bool:
        self.percent = max(self.percent, min(value, 100.0))
        count = math.floor(len(self.frames) * self.percent / 100.0 + 1e-9)
        changed = False
        for frame in self.frames[:count]:
            changed = self.progress.mark_done(frame) or changed
        if count < len(self.frames):
            changed = self.progress.frame_current != self.frames[count] or changed
            self.progress.frame_current = self.frames[count]
        return changed
