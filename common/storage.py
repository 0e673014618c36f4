"""Storage roots: every path a task reads or writes must resolve inside one of them.

The gateway checks a task's paths at submit time and the agent checks a chunk's
again just before it runs anything (a symlink can change in between). Checks
resolve ``..`` and symlinks with ``os.path.realpath``, so neither a relative hop
nor a link planted under a root leads outside it.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from common.errors import ValidationError

BLEND_RELATIVE = "//"  # Blender's prefix for "relative to the .blend file's folder"


def inside_roots(path: Any, roots: Iterable[str], field: str = "path",
                 blend_file: str | None = None) -> str:
    """Return ``path`` resolved, or raise ``ValidationError(field, reason)`` if it leaves the roots.

    ``path`` must be absolute, or start with ``//`` when ``blend_file`` is given
    (Blender's relative-to-the-.blend rule). When the file name holds Blender's
    ``#`` frame padding, the directory is resolved and the name kept as it is.
    The reason never names the roots or what a link points to.
    """
    if not isinstance(path, str) or not path:
        raise ValidationError(field, "must be a non-empty path")
    if "\x00" in path:
        raise ValidationError(field, "must not contain NUL")
    if path.startswith(BLEND_RELATIVE):
        if blend_file is None:
            raise ValidationError(field, "must be an absolute path ('//' is only for output paths)")
        path = os.path.join(os.path.dirname(blend_file), path[len(BLEND_RELATIVE):])
    if not os.path.isabs(path):
        raise ValidationError(field, "must be an absolute path")
    resolved = _resolve(path)
    for root in roots:
        real_root = os.path.realpath(root)
        if resolved == real_root or resolved.startswith(real_root.rstrip(os.sep) + os.sep):
            return resolved
    raise ValidationError(field, "must be inside the farm's storage roots (after resolving '..' and links)")


def _resolve(path: str) -> str:
    head, name = os.path.split(path)
    if "#" in name:
        # Frame padding: the files are the name with numbers; what matters is where they go.
        return os.path.join(os.path.realpath(head or os.sep), name)
    return os.path.realpath(path)


def check_params(params: Mapping[str, Any], roots: Iterable[str], prefix: str = "params") -> dict[str, str]:
    """Check every path a chunk names (``params.paths``); return ``{setting: resolved path}``.

    For the agent, just before it runs a chunk. The compiler has already made
    ``//`` paths absolute, so every path here must be absolute.
    """
    roots = tuple(roots)
    entries = params.get("paths", [])
    if not isinstance(entries, list):
        raise ValidationError(f"{prefix}.paths", "must be a list")
    resolved = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or entry.get("access") not in ("read", "write"):
            raise ValidationError(f"{prefix}.paths[{i}]", "must be {setting, path, access: read|write}")
        name = str(entry.get("setting", i))
        resolved[name] = inside_roots(entry.get("path"), roots, f"{prefix}.paths.{name}")
    return resolved
