"""The declaration a job-type file makes, and loading it with errors that name file, line and field.

A job-type file is YAML (docs/jobtypes.md has the schema). ``load_text`` turns
one into a ``JobType`` or raises ``JobTypeError`` for the first mistake, with
the line PyYAML's node marks give for the field at fault.
"""
from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterator
from typing import Any

import yaml

from common.errors import CorralError
from common.jobtypes import tokens

SETTING_TYPES = ("string", "integer", "float", "boolean", "path", "frames", "choice", "environment")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_STRING = 4096
MAX_CHUNK_SIZE = 100_000
Path = tuple[str | int, ...]


class JobTypeError(CorralError):
    """A job-type file cannot be loaded; the message names the file, the line and the field."""

    def __init__(self, source: str, line: int | None, field: str, reason: str) -> None:
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {field}: {reason}" if field else f"{where}: {reason}")
        self.source, self.line, self.field, self.reason = source, line, field, reason


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting a task of the type takes."""

    name: str
    type: str
    label: str = ""
    description: str = ""
    required: bool = False
    default: Any = None
    min: float | None = None
    max: float | None = None
    min_length: int = 1
    max_length: int = MAX_STRING
    pattern: str = ""
    choices: tuple[str, ...] = ()
    arguments: tuple[tuple[str, str], ...] = ()  # choice -> what goes into argv, when it differs
    access: str = ""  # paths: read | write
    relative_to: str = ""  # paths: '//' means the folder of this (path) setting
    allow_dash: bool = False  # may the value start with '-'

    def argument(self, value: Any) -> str:
        """The argv form of a value (a choice's mapped argument, a boolean as true/false)."""
        if isinstance(value, bool):
            return "true" if value else "false"
        return dict(self.arguments).get(value, str(value)) if self.arguments else str(value)


@dataclasses.dataclass(frozen=True)
class Group:
    """Arguments included only when a condition holds (``when``) or any of several does."""

    when: tuple[str, ...]
    args: tuple[Arg, ...]
    any: bool = False  # ``when_any``: one of the conditions is enough


Arg = str | Group


@dataclasses.dataclass(frozen=True)
class RegexSpec:
    """A parser declared in the file: patterns the agent applies to each output line."""

    progress: str = ""
    progress_unit: str = "frame"  # frame: the frame being worked on; percent: of the chunk's frames
    file_written: str = ""
    error: str = ""
    fatal: str = ""

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v}


@dataclasses.dataclass(frozen=True)
class Step:
    """One step of the type's tasks: an agent command run over chunks of frames (or once)."""

    name: str
    command: str
    args: tuple[Arg, ...]
    after: tuple[str, ...] = ()
    when: tuple[str, ...] = ()
    chunks: str = "frames"  # frames | single
    chunk_size: int | str = 1  # a number, or the name of an integer setting
    chunk_target_s: float | str | None = None  # adaptive sizing (dispatcher/adaptive.py)
    chunk_min: int = 1
    chunk_max: int = 100
    contiguous: bool = False  # never pack frames across a gap into one chunk
    parser: str = "noop"
    regex: RegexSpec | None = None
    done_on_exit: bool = False
    env_allow: tuple[str, ...] = ()
    stall_timeout_s: int | None = None
    retries: int | None = None
    pool: str = ""


@dataclasses.dataclass(frozen=True)
class JobType:
    name: str
    label: str
    version: int
    description: str
    settings: tuple[Setting, ...]
    steps: tuple[Step, ...]
    source: str = ""

    @functools.cached_property
    def _by_name(self) -> dict[str, Setting]:
        return {s.name: s for s in self.settings}

    def setting(self, name: str) -> Setting | None:
        return self._by_name.get(name)

    @property
    def parsers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(step.parser for step in self.steps))

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)

    def validate(self, settings: dict[str, Any]) -> Any:
        """``common.jobtypes.validate(self, settings)``: the normalised ``Validated`` settings."""
        from common.jobtypes.validate import validate

        return validate(self, settings)


BUILTIN_PARSERS = ("blender_render", "sleep", "noop", "ffmpeg")
CHUNK_TOKENS = ("frame_first", "frame_last", "frame_count", "frames",
                "task_frames", "task_frame_first", "task_frame_last")
CONDITIONS = ("frames_contiguous",)


# ---------------------------------------------------------------- YAML with line numbers


def _plain(node: yaml.Node, path: Path, marks: dict[Path, int]) -> Any:
    """A composed node as plain data, recording the line of every path."""
    marks[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = yaml.safe_load(yaml.serialize(key_node))
            marks.setdefault((*path, key), key_node.start_mark.line + 1)
            out[key] = _plain(value_node, (*path, key), marks)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item, (*path, i), marks) for i, item in enumerate(node.value)]
    return yaml.safe_load(yaml.serialize(node))


class _Reader:
    """Walks the data and raises the first mistake with its line."""

    def __init__(self, source: str, marks: dict[Path, int]) -> None:
        self.source, self.marks = source, marks

    def fail(self, path: Path, reason: str) -> JobTypeError:
        line = None
        for cut in range(len(path), -1, -1):
            line = self.marks.get(tuple(path[:cut]))
            if line:
                break
        return JobTypeError(self.source, line, _dotted(path), reason)

    def mapping(self, value: Any, path: Path, known: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
        if not isinstance(value, dict):
            raise self.fail(path, "must be a mapping")
        for key in value:
            if key not in known:
                raise self.fail((*path, key), f"is not a known field (known: {', '.join(known)})")
        for key in required:
            if key not in value:
                raise self.fail(path, f"{key} is required")
        return value

    def string(self, value: Any, path: Path, pattern: re.Pattern[str] | None = None) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(path, "must be a non-empty string")
        if pattern is not None and not pattern.match(value):
            raise self.fail(path, f"must match {pattern.pattern}")
        return value

    def integer(self, value: Any, path: Path, lo: int = 0, hi: int = 10**9) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.fail(path, f"must be an integer from {lo} to {hi}")
        return value

    def number(self, value: Any, path: Path) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(path, "must be a number")
        return value

    def boolean(self, value: Any, path: Path) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, "must be true or false")
        return value

    def names(self, value: Any, path: Path) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise self.fail(path, "must be a name or a list of names")
        return tuple(self.string(v, (*path, i)) for i, v in enumerate(items))

    def regex(self, value: Any, path: Path, groups: int | None = None) -> str:
        text = self.string(value, path)
        try:
            compiled = re.compile(text)
        except re.error as exc:
            raise self.fail(path, f"is not a valid regular expression: {exc}") from None
        if groups is not None and compiled.groups != groups:
            raise self.fail(path, f"must have exactly {groups} group(s), has {compiled.groups}")
        return text


def _dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_text(text: str, source: str) -> JobType:
    """Parse one job-type file's text; raise ``JobTypeError`` naming the first mistake."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise JobTypeError(source, mark.line + 1 if mark else None, "",
                           f"is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if node is None:
        raise JobTypeError(source, None, "", "is empty")
    marks: dict[Path, int] = {}
    data = _plain(node, (), marks)
    from common.jobtypes.declare import declare

    return declare(_Reader(source, marks), data, source)


def walk_args(args: tuple[Arg, ...],
              conditions: tuple[str, ...] = ()) -> Iterator[tuple[str, tuple[str, ...]]]:
    """Every template of an argument list with the conditions it sits under."""
    for arg in args:
        if isinstance(arg, Group):
            yield from walk_args(arg.args, conditions if arg.any else (*conditions, *arg.when))
        else:
            yield arg, conditions


__all__ = ["JobType", "JobTypeError", "Setting", "Step", "Group", "RegexSpec", "load_text", "tokens"]
