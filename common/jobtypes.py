"""Task types and parsers known to the farm, and validation of task settings.

Validation is shared: the gateway refuses bad settings at submit time with the
field named, and the dispatcher's compilers receive only normalised settings.
Each validator is pure: a settings dict in, a ``Validated`` out.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from common import frames as framelib
from common import storage
from common.errors import ValidationError

BLENDER_FORMATS = ("PNG", "JPEG", "OPEN_EXR", "OPEN_EXR_MULTILAYER", "TIFF", "BMP", "TARGA")
BLENDER_ENGINES = ("CYCLES", "BLENDER_EEVEE", "BLENDER_WORKBENCH")
MAX_STRING = 4096
MAX_CHUNK_SIZE = 100_000


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


# ---------------------------------------------------------------- field checks


def _field(name: str) -> str:
    return f"settings.{name}"


def get_int(s: dict[str, Any], name: str, default: int | None = None,
            lo: int | None = None, hi: int | None = None) -> int:
    value = s.get(name, default)
    if value is None:
        raise ValidationError(_field(name), "is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(_field(name), "must be an integer")
    if lo is not None and value < lo:
        raise ValidationError(_field(name), f"must be at least {lo}")
    if hi is not None and value > hi:
        raise ValidationError(_field(name), f"must be at most {hi}")
    return value


def get_number(s: dict[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    value = s.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(_field(name), "must be a number")
    if not lo <= value <= hi:
        raise ValidationError(_field(name), f"must be between {lo} and {hi}")
    return float(value)


def get_str(s: dict[str, Any], name: str, required: bool = True,
            choices: tuple[str, ...] | None = None) -> str | None:
    """A plain string that cannot smuggle a flag, a NUL or a line break into argv."""
    value = s.get(name)
    if value is None:
        if required:
            raise ValidationError(_field(name), "is required")
        return None
    if not isinstance(value, str):
        raise ValidationError(_field(name), "must be a string")
    if not value or len(value) > MAX_STRING:
        raise ValidationError(_field(name), f"must be 1 to {MAX_STRING} characters")
    if value.startswith("-"):
        raise ValidationError(_field(name), "must not start with '-'")
    if any(c in value for c in "\x00\n\r"):
        raise ValidationError(_field(name), "must not contain NUL or line breaks")
    if choices is not None and value not in choices:
        raise ValidationError(_field(name), f"must be one of {', '.join(choices)}")
    return value


def get_bool(s: dict[str, Any], name: str, default: bool = False) -> bool:
    value = s.get(name, default)
    if not isinstance(value, bool):
        raise ValidationError(_field(name), "must be true or false")
    return value


def get_frames(s: dict[str, Any]) -> framelib.Ranges:
    """Frames from ``frames`` (a list string) or ``frame_start``/``frame_end``."""
    if "frames" in s:
        if "frame_start" in s or "frame_end" in s:
            raise ValidationError(_field("frames"), "give either frames or frame_start/frame_end")
        return framelib.to_ranges(framelib.parse_frames(s["frames"], _field("frames")))
    lo, hi = framelib.FRAME_MIN, framelib.FRAME_MAX
    start = get_int(s, "frame_start", lo=lo, hi=hi)
    end = get_int(s, "frame_end", lo=lo, hi=hi)
    if end < start:
        raise ValidationError(_field("frame_end"), f"must not be less than frame_start ({start})")
    if end - start + 1 > framelib.MAX_FRAMES:
        raise ValidationError(_field("frame_end"), f"more than {framelib.MAX_FRAMES} frames")
    return [[start, end]]


def _reject_unknown(s: dict[str, Any], known: set[str]) -> None:
    for key in s:
        if key not in known:
            raise ValidationError(_field(key), "is not a setting of this task type")


# ---------------------------------------------------------------- task types

_FRAME_KEYS = {"frames", "frame_start", "frame_end", "chunk_size"}


def validate_noop(s: dict[str, Any]) -> Validated:
    _reject_unknown(s, _FRAME_KEYS)
    ranges = get_frames(s)
    size = get_int(s, "chunk_size", 1, lo=1, hi=MAX_CHUNK_SIZE)
    return Validated({"frames": ranges, "chunk_size": size}, ranges)


def validate_sleep(s: dict[str, Any]) -> Validated:
    """``exit_code`` makes every chunk fail after sleeping: a fault-injection knob for demos and tests."""
    _reject_unknown(s, _FRAME_KEYS | {"seconds_per_frame", "exit_code"})
    ranges = get_frames(s)
    size = get_int(s, "chunk_size", 1, lo=1, hi=MAX_CHUNK_SIZE)
    seconds = get_number(s, "seconds_per_frame", 1.0, 0.0, 3600.0)
    exit_code = get_int(s, "exit_code", 0, lo=0, hi=255)
    return Validated({"frames": ranges, "chunk_size": size, "seconds_per_frame": seconds,
                      "exit_code": exit_code}, ranges)


_BLENDER_OPTIONAL_STR = ("scene", "camera")


def validate_blender_render(s: dict[str, Any]) -> Validated:
    _reject_unknown(s, _FRAME_KEYS | {
        "filepath", "output_path", "format", "scene", "camera", "engine",
        "resolution_percentage", "samples", "threads", "env", "video", "fps"})
    ranges = get_frames(s)
    out: dict[str, Any] = {
        "frames": ranges,
        "chunk_size": get_int(s, "chunk_size", 1, lo=1, hi=MAX_CHUNK_SIZE),
        "filepath": get_str(s, "filepath"),
        "output_path": get_str(s, "output_path"),
        "format": get_str(s, "format", required=False, choices=BLENDER_FORMATS) or "PNG",
        "video": get_bool(s, "video"),
    }
    for name in _BLENDER_OPTIONAL_STR:
        if name in s:
            out[name] = get_str(s, name)
    if "engine" in s:
        out["engine"] = get_str(s, "engine", choices=BLENDER_ENGINES)
    if "resolution_percentage" in s:
        out["resolution_percentage"] = get_int(s, "resolution_percentage", lo=1, hi=1000)
    if "samples" in s:
        out["samples"] = get_int(s, "samples", lo=1, hi=1_000_000)
    if "threads" in s:
        out["threads"] = get_int(s, "threads", lo=0, hi=1024)
    if "fps" in s or out["video"]:
        out["fps"] = get_int(s, "fps", 24, lo=1, hi=240)
    if "env" in s:
        out["env"] = _get_env(s["env"])
    return Validated(out, ranges, out["format"])


# Variables that make Blender, its Python or the loader run code from elsewhere.
PROTECTED_ENV = frozenset({"PATH", "HOME", "IFS", "ENV", "BASH_ENV", "SHELL", "TMPDIR"})
PROTECTED_ENV_PREFIXES = ("LD_", "DYLD_", "PYTHON", "BLENDER_", "CORRAL_")


def env_name_allowed(key: str) -> bool:
    """Whether a task may set the variable ``key`` for its command."""
    return key not in PROTECTED_ENV and not key.startswith(PROTECTED_ENV_PREFIXES)


def _get_env(env: Any) -> dict[str, str]:
    if not isinstance(env, dict) or len(env) > 64:
        raise ValidationError(_field("env"), "must be an object of at most 64 string values")
    for key, value in env.items():
        if not key.isidentifier() or not key.isupper() or len(key) > 128:
            raise ValidationError(_field(f"env.{key[:128]}"), "names must be UPPER_CASE identifiers")
        if not env_name_allowed(key):
            raise ValidationError(_field(f"env.{key}"), "may not be overridden")
        if not isinstance(value, str) or any(c in value for c in "\x00\n\r") or len(value) > MAX_STRING:
            raise ValidationError(_field(f"env.{key}"), "must be a single-line string")
    return dict(env)


@dataclasses.dataclass(frozen=True)
class TaskType:
    name: str
    validate: Callable[[dict[str, Any]], Validated]
    default_parser: str
    parsers: tuple[str, ...]
    # Settings naming files the task reads or writes: they must be inside the storage roots.
    path_settings: tuple[str, ...] = ()


TASK_TYPES: dict[str, TaskType] = {
    t.name: t
    for t in (
        TaskType("blender_render", validate_blender_render, "blender_render", ("blender_render",),
                 path_settings=("filepath", "output_path")),
        TaskType("sleep", validate_sleep, "sleep", ("sleep",)),
        TaskType("noop", validate_noop, "noop", ("noop",)),
    )
}

# Every parser an agent may be asked to use.
PARSERS = ("blender_render", "sleep", "noop", "ffmpeg")


def task_type(name: Any) -> TaskType:
    if not isinstance(name, str) or name not in TASK_TYPES:
        raise ValidationError("type", f"must be one of {', '.join(sorted(TASK_TYPES))}")
    return TASK_TYPES[name]


def resolve_parser(ttype: TaskType, parser: Any) -> str:
    if parser is None or parser == "":
        return ttype.default_parser
    if not isinstance(parser, str) or parser not in ttype.parsers:
        raise ValidationError("parser", f"must be one of {', '.join(ttype.parsers)} for type {ttype.name}")
    return parser


def check_paths(ttype: TaskType, settings: dict[str, Any], roots: tuple[str, ...]) -> None:
    """Refuse validated settings whose paths resolve outside the storage roots.

    Not part of the pure validators: resolving links reads the filesystem.
    A ``//`` output path is relative to the folder of the ``filepath`` .blend.
    """
    blend = settings.get("filepath")
    for name in ttype.path_settings:
        base = blend if name != "filepath" and isinstance(blend, str) else None
        storage.inside_roots(settings[name], roots, _field(name), blend_file=base)
