"""Output parsers by name: each turns a child's output lines into progress.

A parser is built for one chunk from the frames it must render (in render
order) and is fed the child's output one line at a time. ``feed`` returns True
when the progress changed, so the runner knows when a report is due. The
``regex`` parser takes its patterns from the chunk (``params.parser_spec``),
declared in the job-type file.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from agent.parsers import blender_render, ffmpeg, noop, regex, sleep
from agent.parsers.base import Parser, Progress

ParserFactory = Callable[[list[int], dict[str, Any]], Parser]


def _plain(cls: type[Parser]) -> ParserFactory:
    return lambda frames, spec: cls(frames)


PARSERS: Mapping[str, ParserFactory] = {
    "blender_render": _plain(blender_render.BlenderRenderParser),
    "sleep": _plain(sleep.SleepParser),
    "noop": _plain(noop.NoopParser),
    "ffmpeg": _plain(ffmpeg.FfmpegParser),
    "regex": regex.RegexParser,
}

__all__ = ["PARSERS", "Parser", "ParserFactory", "Progress"]
