"""Command executors by name (Flamenco's command registry).

An executor turns a ``ChunkAssign`` and the agent's config into a ``Command``:
an argv list (never a shell) plus environment, or nothing to run for a noop.
It raises ``UnsupportedParams`` or ``PreflightFailed`` with the reason the
chunk fails. ``TOOLS`` names the external program a command needs.
"""
from __future__ import annotations

from collections.abc import Mapping

from agent.executors import blender_render, ffmpeg_encode, noop, sleep
from agent.executors.base import Command, Executor

EXECUTORS: Mapping[str, Executor] = {
    "noop": noop.prepare,
    "sleep": sleep.prepare,
    "blender_render": blender_render.prepare,
    "ffmpeg_encode": ffmpeg_encode.prepare,
}

# command -> the tool (a config field naming its executable) it needs
TOOLS: Mapping[str, str] = {"blender_render": "blender", "ffmpeg_encode": "ffmpeg"}

__all__ = ["EXECUTORS", "TOOLS", "Command", "Executor"]

