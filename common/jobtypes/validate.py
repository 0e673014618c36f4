"""Checking a task's settings against its type's declaration: pure, field-naming errors.

The gateway refuses bad settings at submit time with the field named
(``settings.frame_end``), and the dispatcher's compiler receives only the
normalised settings this returns.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import re
from typing import Any

from common import frames as framelib
from common import storage
from common.errors import ValidationError
from common.jobtypes import tokens
from common.jobtypes.schema import JobType, Setting, walk_args

# Variables that make a command, its Python or the loader run code from elsewhere.
PROTECTED_ENV = frozenset({"PATH", "HOME", "IFS", "ENV", "BASH_ENV", "SHELL", "TMPDIR"})
PROTECTED_ENV_PREFIXES = ("LD_", "DYLD_", "PYTHON", "BLENDER_", "CORRAL_")
MAX_ENV = 64


@dataclasses.dataclass(frozen=True)
class Validated:
    """Normalised settings plus what the task row shows of them."""

    settings: dict[str, Any]
    frames: framelib.Ranges
    format: str = ""

    @property
    def frame_start(self) -> int:
        return self.frames[0][0]

    @property
    def frame_end(self) -> int:
        return self.frames[-1][1]

    @property
    def frames_total(self) -> int:
        return framelib.count(self.frames)


def _field(name: str) -> str:
    return f"settings.{name}"


def env_name_allowed(key: str) -> bool:
    """Whether a task may set the variable ``key`` for its command at all."""
    return key not in PROTECTED_ENV and not key.startswith(PROTECTED_ENV_PREFIXES)


def env_matches(key: str, patterns: tuple[str, ...] | list[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def validate(jobtype: JobType, raw: dict[str, Any]) -> Validated:
    """The settings a task of ``jobtype`` carries, normalised; ``ValidationError`` names a bad field."""
    known = {s.name for s in jobtype.settings} | {"frame_start", "frame_end"}
    for key in raw:
        if key not in known:
            raise ValidationError(_field(key), "is not a setting of this task type")
    out: dict[str, Any] = {}
    for setting in jobtype.settings:
        if setting.type == "frames":
            out["frames"] = _frames(setting, raw)
        elif setting.name in raw and raw[setting.name] is not None:
            out[setting.name] = check_value(setting, raw[setting.name])
        elif setting.required:
            raise ValidationError(_field(setting.name), "is required")
    _defaults(jobtype, out)
    _check_env(jobtype, out)
    _check_leading_dashes(jobtype, out)
    fmt = out.get("format") if isinstance(out.get("format"), str) else ""
    return Validated(out, out["frames"], fmt or "")


def _defaults(jobtype: JobType, out: dict[str, Any]) -> None:
    """Fill defaults; a string default may be a template of other settings (``{output_path|dirname}``)."""
    for setting in jobtype.settings:
        if setting.name in out or setting.default is None:
            continue
        default = setting.default
        if isinstance(default, str) and "{" in default:
            default = _expand_default(jobtype, default, out)
            if default is None:
                continue
        out[setting.name] = default


def _expand_default(jobtype: JobType, template: str, out: dict[str, Any]) -> str | None:
    text = ""
    for part in tokens.parse(template):
        if isinstance(part, str):
            text += part
            continue
        if part.name not in out:
            return None  # what it is made of is not set: no default either
        setting = jobtype.setting(part.name)
        raw = out[part.name]
        value = raw if part.filter == "value" or setting is None else setting.argument(raw)
        text += tokens.apply_filter(str(value), part.filter)
    return text


def check_value(setting: Setting, value: Any) -> Any:
    name = setting.name
    kind = setting.type
    if kind == "integer":
        return _number(setting, value, integer=True)
    if kind == "float":
        return float(_number(setting, value, integer=False))
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValidationError(_field(name), "must be true or false")
        return value
    if kind == "environment":
        return _env(name, value)
    text = _text(setting, value)
    if kind == "choice" and text not in setting.choices:
        raise ValidationError(_field(name), f"must be one of {', '.join(setting.choices)}")
    if setting.pattern and not re.fullmatch(setting.pattern, text):
        raise ValidationError(_field(name), f"must match {setting.pattern}")
    return text


def _number(setting: Setting, value: Any, integer: bool) -> int | float:
    name = setting.name
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise ValidationError(_field(name), "must be an integer" if integer else "must be a number")
    lo, hi = setting.min, setting.max
    if not integer and lo is not None and hi is not None and not lo <= value <= hi:
        raise ValidationError(_field(name), f"must be between {lo:g} and {hi:g}")
    if lo is not None and value < lo:
        raise ValidationError(_field(name), f"must be at least {lo:g}")
    if hi is not None and value > hi:
        raise ValidationError(_field(name), f"must be at most {hi:g}")
    return value


def _text(setting: Setting, value: Any) -> str:
    """A plain string that cannot smuggle a flag, a NUL or a line break into argv."""
    name = setting.name
    if not isinstance(value, str):
        raise ValidationError(_field(name), "must be a string")
    if not setting.min_length <= len(value) <= setting.max_length:
        raise ValidationError(_field(name),
                              f"must be {setting.min_length} to {setting.max_length} characters")
    if value.startswith("-") and not setting.allow_dash:
        raise ValidationError(_field(name), "must not start with '-'")
    if any(c in value for c in "\x00\n\r"):
        raise ValidationError(_field(name), "must not contain NUL or line breaks")
    return value


def _env(name: str, env: Any) -> dict[str, str]:
    if not isinstance(env, dict) or len(env) > MAX_ENV:
        raise ValidationError(_field(name), f"must be an object of at most {MAX_ENV} string values")
    for key, value in env.items():
        if not key.isidentifier() or not key.isupper() or len(key) > 128:
            raise ValidationError(_field(f"{name}.{key[:128]}"), "names must be UPPER_CASE identifiers")
        if not env_name_allowed(key):
            raise ValidationError(_field(f"{name}.{key}"), "may not be overridden")
        if not isinstance(value, str) or any(c in value for c in "\x00\n\r") or len(value) > 4096:
            raise ValidationError(_field(f"{name}.{key}"), "must be a single-line string")
    return dict(env)


def _frames(setting: Setting, s: dict[str, Any]) -> framelib.Ranges:
    """Frames from ``frames`` (a list string) or ``frame_start``/``frame_end``, within the limits."""
    lo = int(setting.min) if setting.min is not None else framelib.FRAME_MIN
    hi = int(setting.max) if setting.max is not None else framelib.FRAME_MAX
    if "frames" in s:
        if "frame_start" in s or "frame_end" in s:
            raise ValidationError(_field("frames"), "give either frames or frame_start/frame_end")
        ranges = framelib.to_ranges(framelib.parse_frames(s["frames"], _field("frames")))
        if ranges[0][0] < lo or ranges[-1][1] > hi:
            raise ValidationError(_field("frames"), f"frames must be within {lo}..{hi} for this task type")
        return ranges
    bounds = Setting(name="frame_start", type="integer", min=lo, max=hi)
    start = _required_int(bounds, s)
    end = _required_int(dataclasses.replace(bounds, name="frame_end"), s)
    if end < start:
        raise ValidationError(_field("frame_end"), f"must not be less than frame_start ({start})")
    if end - start + 1 > framelib.MAX_FRAMES:
        raise ValidationError(_field("frame_end"), f"more than {framelib.MAX_FRAMES} frames")
    return [[start, end]]


def _required_int(setting: Setting, s: dict[str, Any]) -> int:
    if s.get(setting.name) is None:
        raise ValidationError(_field(setting.name), "is required")
    return int(_number(setting, s[setting.name], integer=True))


def _check_env(jobtype: JobType, out: dict[str, Any]) -> None:
    """Every variable a task sets must be allowed for at least one step that runs."""
    for setting in jobtype.settings:
        if setting.type != "environment" or setting.name not in out:
            continue
        for key in out[setting.name]:
            if not any(env_matches(key, step.env_allow) for step in jobtype.steps):
                raise ValidationError(_field(f"{setting.name}.{key}"), "no step of this task type may set it")


def _check_leading_dashes(jobtype: JobType, out: dict[str, Any]) -> None:
    """A value that opens an argument must not start with '-' (it would read as a flag)."""
    for step in jobtype.steps:
        for template, _ in walk_args(step.args):
            parts = tokens.parse(template)
            if not parts or isinstance(parts[0], str):
                continue
            first = parts[0]
            if first.name in ("frame_first", "frame_last", "frames", "task_frames", "task_frame_first",
                              "task_frame_last"):
                _negative_frames(jobtype, out)
            else:
                setting = jobtype.setting(first.name)
                value = out.get(first.name)
                if setting is not None and value is not None and not setting.allow_dash \
                        and setting.argument(value).startswith("-"):
                    raise ValidationError(_field(first.name),
                                          "must not start with '-' (it opens an argument)")


def _negative_frames(jobtype: JobType, out: dict[str, Any]) -> None:
    frames_setting = jobtype.setting("frames")
    if out["frames"][0][0] < 0 and not (frames_setting and frames_setting.allow_dash):
        raise ValidationError(_field("frames"), "negative frames would start an argument with '-'")


def check_paths(jobtype: JobType, settings: dict[str, Any], roots: tuple[str, ...]) -> None:
    """Refuse validated settings whose paths resolve outside the storage roots.

    Not part of ``validate``: resolving links reads the filesystem. A ``//``
    path is relative to the folder of the path setting named by ``relative_to``.
    """
    for setting in jobtype.settings:
        if setting.type != "path" or setting.name not in settings:
            continue
        base = settings.get(setting.relative_to) if setting.relative_to else None
        storage.inside_roots(settings[setting.name], roots, _field(setting.name),
                             blend_file=base if isinstance(base, str) else None)
