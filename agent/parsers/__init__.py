"""Output parsers by name: each turns a child's output lines into progress.

A parser is built for one chunk from the frames it must render (in render
order) and is fed the child's output one line at a time. ``feed`` returns True
when the progress changed, so the runner knows when a report is due.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

from agent.parsers import blender_render, ffmpeg, noop, sleep
from agent.parsers.base import Parser, Progress

ParserFactory = Callable[[list[int]], Parser]

PARSERS: Mapping[str, ParserFactory] = {
    "blender_render": blender_render.BlenderRenderParser,
    "sleep": sleep.SleepParser,
    "noop": noop.NoopParser,
    "ffmpeg": ffmpeg.FfmpegParser,
}

__all__ = ["PARSERS", "Parser", "ParserFactory", "Progress"]
