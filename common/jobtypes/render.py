"""Filling a step's argument templates for one chunk: each template gives exactly one argument.

Pure and shared: the dispatcher's compiler calls it for every chunk, and tests
call it for every token of every type. The rule that keeps a value from
becoming a flag is enforced here: an argument that starts with ``-`` because of
a value (not because the template's own text does) is refused unless that
setting says ``allow_dash``.
"""
from __future__ import annotations

import dataclasses
import functools
import posixpath
from typing import Any

from common import frames as framelib
from common.jobtypes import tokens
from common.jobtypes.schema import CHUNK_TOKENS, Arg, Group, JobType, Setting
from common.jobtypes.tokens import TemplateError

FRAME_INT_TOKENS = ("frame_first", "frame_last", "frame_count", "task_frame_first", "task_frame_last")


@dataclasses.dataclass(frozen=True)
class Scope:
    """What a template may name: the task's settings (paths resolved) and one chunk's frames."""

    jobtype: JobType
    values: dict[str, Any]
    frames: framelib.Ranges  # the chunk's; [] for a single-chunk step
    # Arguments that do not depend on the chunk, rendered once per task (a 100,000-chunk compile).
    constant: dict[Any, str] = dataclasses.field(default_factory=dict)

    def for_chunk(self, frames: framelib.Ranges) -> Scope:
        return Scope(self.jobtype, self.values, frames, self.constant)  # not dataclasses.replace: hot

    def holds(self, condition: str) -> bool:
        negate = condition.startswith("not ")
        subject = condition.removeprefix("not ").strip()
        if subject == "frames_contiguous":
            result = len(self.frames) == 1
        else:
            value = self.values.get(subject)
            result = value is not None and value is not False  # 0 is a value (threads 0: all cores)
        return result != negate


@functools.lru_cache(maxsize=4096)
def _parts(template: str) -> tuple[tokens.Part, ...]:
    return tuple(tokens.parse(template))


def resolve_paths(jobtype: JobType, settings: dict[str, Any]) -> dict[str, Any]:
    """Settings with ``//`` paths made absolute against their ``relative_to`` setting's folder."""
    values = dict(settings)
    for s in jobtype.settings:
        value = values.get(s.name)
        if s.type == "path" and s.relative_to and isinstance(value, str) and value.startswith("//"):
            base = posixpath.dirname(str(values[s.relative_to]))
            values[s.name] = posixpath.normpath(posixpath.join(base, value[2:]))
    return values


def render_args(args: tuple[Arg, ...], scope: Scope) -> list[str]:
    """The argument list for one chunk (groups whose condition fails are left out)."""
    out: list[str] = []
    for arg in args:
        if isinstance(arg, Group):
            if _group_holds(arg, scope):
                out += render_args(arg.args, scope)
        else:
            out.append(render(arg, scope))
    return out


def _group_holds(group: Group, scope: Scope) -> bool:
    """Conditions on settings are the same for every chunk: decided once per task."""
    if "frames_contiguous" in "".join(group.when):
        return (any if group.any else all)(scope.holds(c) for c in group.when)
    key = ("group", id(group))
    if key not in scope.constant:
        scope.constant[key] = "1" if (any if group.any else all)(scope.holds(c) for c in group.when) else ""
    return scope.constant[key] == "1"


def render(template: str, scope: Scope) -> str:
    """One argument: the template with its tokens replaced; raise ``TemplateError`` if it cannot be."""
    cached = scope.constant.get(template)
    if cached is not None:
        return cached
    text = _render(template, scope)
    if not any(isinstance(p, tokens.Token) and p.name in CHUNK_TOKENS for p in _parts(template)):
        scope.constant[template] = text
    return text


def _render(template: str, scope: Scope) -> str:
    text = ""
    for i, part in enumerate(_parts(template)):
        if isinstance(part, str):
            text += part
            continue
        value, setting = _value(part, scope)
        if i == 0 and value.startswith("-") and not (setting is not None and setting.allow_dash):
            raise TemplateError(f"{{{part.name}}} would start the argument {template!r} with '-'")
        if "\x00" in value:
            raise TemplateError(f"{{{part.name}}} holds a NUL character")
        text += value
    return text


def _value(token: tokens.Token, scope: Scope) -> tuple[str, Setting | None]:
    name = token.name
    task_frames = scope.values["frames"]
    if name in ("frames", "task_frames"):
        frames = scope.frames if name == "frames" else task_frames
        return tokens.format_frames(frames, token.spec), scope.jobtype.setting("frames")
    if name in FRAME_INT_TOKENS:
        return tokens.format_int(_frame_int(name, scope.frames, task_frames), token.spec), \
            scope.jobtype.setting("frames")
    setting = scope.jobtype.setting(name)
    if setting is None or scope.values.get(name) is None:
        raise TemplateError(f"{{{name}}} has no value")
    raw = scope.values[name]
    value = str(raw) if token.filter == "value" else setting.argument(raw)
    return tokens.apply_filter(value, token.filter), setting


def _frame_int(name: str, frames: framelib.Ranges, task_frames: framelib.Ranges) -> int:
    if name.startswith("task_"):
        return task_frames[0][0] if name == "task_frame_first" else task_frames[-1][1]
    if not frames:
        raise TemplateError(f"{{{name}}}: the chunk has no frames")
    if name == "frame_first":
        return frames[0][0]
    if name == "frame_last":
        return frames[-1][1]
    return framelib.count(frames)


__all__ = ["Scope", "TemplateError", "render", "render_args", "resolve_paths"]
