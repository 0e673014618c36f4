"""Blender's rule for the file a frame is saved to (checked against Blender 3.4).

``scene.render.frame_path()`` of Blender 3.4 gives, for output ``/o/x_###``:

- The last run of ``#`` in the file name (not the directories) becomes the
  frame number with at least that many digits (``-5`` → ``-005``).
- Without a ``#`` in the file name, four digits are appended (``x.tif`` → ``x.tif0003``).
- Then the format's extension: kept when already right (case-insensitive,
  ``.jpg``/``.jpeg``, ``.tif``/``.tiff``), replacing another known image
  extension (``x_##.exr`` as PNG → ``x_03.png``), else appended (``.txt.png``).
"""
from __future__ import annotations

import re

# format -> accepted extensions, the first one is what Blender adds
EXTENSIONS: dict[str, tuple[str, ...]] = {
    "PNG": (".png",),
    "JPEG": (".jpg", ".jpeg"),
    "OPEN_EXR": (".exr",),
    "OPEN_EXR_MULTILAYER": (".exr",),
    "TIFF": (".tif", ".tiff"),
    "BMP": (".bmp",),
    "TARGA": (".tga",),
}
# Blender's list of image extensions (imb_ext_image) that get replaced rather than kept.
KNOWN_IMAGE_EXTENSIONS = (
    ".png", ".tga", ".bmp", ".jpg", ".jpeg", ".sgi", ".rgb", ".rgba", ".tif", ".tiff", ".tx",
    ".jp2", ".j2c", ".hdr", ".dds", ".dpx", ".cin", ".exr", ".psd", ".pdd", ".psb", ".webp",
)
DEFAULT_DIGITS = 4
_HASHES = re.compile(r"#+")


def frame_number(frame: int, digits: int) -> str:
    """C's ``%.*d``: at least ``digits`` digits, the sign in front."""
    sign = "-" if frame < 0 else ""
    return f"{sign}{abs(frame):0{digits}d}"


def frame_path(output_path: str, frame: int, file_format: str) -> str:
    """The path Blender writes ``frame`` to for ``-o output_path -F file_format``."""
    if file_format not in EXTENSIONS:
        raise ValueError(f"unknown image format {file_format!r}")
    head, sep, name = output_path.rpartition("/")
    runs = list(_HASHES.finditer(name))
    if runs:
        run = runs[-1]
        name = name[: run.start()] + frame_number(frame, run.end() - run.start()) + name[run.end():]
    else:
        name += frame_number(frame, DEFAULT_DIGITS)
    return head + sep + _with_extension(name, file_format)


def _with_extension(name: str, file_format: str) -> str:
    lower = name.lower()
    accepted = EXTENSIONS[file_format]
    if lower.endswith(accepted):
        return name
    for ext in KNOWN_IMAGE_EXTENSIONS:
        if lower.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)] + accepted[0]
    return name + accepted[0]
