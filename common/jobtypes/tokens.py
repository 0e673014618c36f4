"""Argument templates: ``{name}``, ``{name|filter}`` and ``{name:spec}`` inside one argv element.

A template is one argv element. Its tokens are replaced by values, and the
result stays one element: nothing is split, joined or given to a shell. A
result that starts with ``-`` only because a value does is refused unless the
setting allows it (``allow_dash``), so a value never becomes a flag.
``{{`` and ``}}`` stand for literal braces.
"""
from __future__ import annotations

import dataclasses
import functools
import posixpath
import re

from common.errors import CorralError

_TOKEN = re.compile(r"\{\{|\}\}|\{([a-z][a-z0-9_]*)(?:\|([a-z_]+))?(?::([^{}]*))?\}|[{}]")
FILTERS = ("value", "dirname", "basename", "sequence_name", "printf")
_HASHES = re.compile(r"#+")


class TemplateError(CorralError):
    """A template is malformed, or a value would break the one-argument rule."""


@dataclasses.dataclass(frozen=True)
class Token:
    name: str
    filter: str = ""
    spec: str = ""


Part = str | Token


def parse(template: str) -> list[Part]:
    """Split a template into literal text and tokens; raise ``TemplateError`` if malformed."""
    parts: list[Part] = []
    text = ""
    pos = 0
    for match in _TOKEN.finditer(template):
        text += template[pos:match.start()]
        pos = match.end()
        whole = match.group(0)
        if whole in ("{{", "}}"):
            text += whole[0]
        elif whole in ("{", "}"):
            raise TemplateError(f"unmatched {whole!r} in {template!r} (write {whole * 2} for a literal)")
        else:
            if text:
                parts.append(text)
                text = ""
            parts.append(Token(match.group(1), match.group(2) or "", match.group(3) or ""))
    text += template[pos:]
    if text:
        parts.append(text)
    return parts


@functools.lru_cache(maxsize=4096)
def _tokens(template: str) -> tuple[Token, ...]:
    return tuple(p for p in parse(template) if isinstance(p, Token))


def tokens_of(template: str) -> list[Token]:
    return list(_tokens(template))


def apply_filter(value: str, name: str) -> str:
    """Path helpers; ``value`` itself is handled by the caller (the submitted choice)."""
    if name == "dirname":
        folder = posixpath.dirname(value)
        # Blender's "//" (the .blend's folder) has to stay a prefix, not become the root.
        return "//." if folder == "//" else folder or "."
    if name == "basename":
        return posixpath.basename(value)
    if name == "sequence_name":
        return sequence_name(value)
    if name == "printf":
        return printf_pattern(value)
    return value


def sequence_name(path: str) -> str:
    """A frame pattern's name without its padding: ``/o/shot_####.exr`` -> ``shot``."""
    stem = posixpath.basename(path)
    stem, _ = posixpath.splitext(stem) if "." in stem.lstrip(".") else (stem, "")
    return re.sub(r"[#._-]+$", "", stem.replace("#", "")) or "sequence"


def printf_pattern(path: str) -> str:
    """The last run of ``#`` in the file name as ``%0Nd`` (ffmpeg, Nuke): ``x_###.png`` -> ``x_%03d.png``."""
    head, sep, name = path.rpartition("/")
    runs = list(_HASHES.finditer(name))
    if not runs:
        return path
    run = runs[-1]
    name = f"{name[:run.start()]}%0{run.end() - run.start()}d{name[run.end():]}"
    return head + sep + name


def format_frames(ranges: list[list[int]], spec: str) -> str:
    """A frame list; ``spec`` is the range separator (``-`` by default, Blender takes ``..``)."""
    sep = spec or "-"
    return ",".join(str(a) if a == b else f"{a}{sep}{b}" for a, b in ranges)


def format_int(value: int, spec: str) -> str:
    """An integer, zero-padded to ``spec`` digits when given (``{frame_first:4}`` -> ``0007``)."""
    if not spec:
        return str(value)
    if not spec.isdigit() or int(spec) > 32:
        raise TemplateError(f"width {spec!r} must be a number of digits up to 32")
    sign = "-" if value < 0 else ""
    return f"{sign}{abs(value):0{int(spec)}d}"
