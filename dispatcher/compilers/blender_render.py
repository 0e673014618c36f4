"""``blender_render``: render chunks, plus an optional MP4 preview chunk after them."""
from __future__ import annotations

import posixpath
import re
from typing import Any

from common.frames import split_chunks
from dispatcher.compilers import ChunkSpec

_RENDER_KEYS = ("filepath", "output_path", "format", "scene", "camera", "engine",
                "resolution_percentage", "samples", "threads", "env")


def compile_task(settings: dict[str, Any]) -> list[ChunkSpec]:
    params = {key: settings[key] for key in _RENDER_KEYS if key in settings}
    params["output_path"] = absolute_output(settings["filepath"], settings["output_path"])
    chunks = [ChunkSpec(i, "blender_render", frames, params)
              for i, frames in enumerate(split_chunks(settings["frames"], settings["chunk_size"]))]
    if settings.get("video"):
        chunks.append(ChunkSpec(
            index=len(chunks),
            command="ffmpeg_encode",
            frames=[],  # renders no frame of its own: it encodes the others
            params={
                "output_path": params["output_path"],
                "format": params["format"],
                "frames": settings["frames"],
                "fps": settings["fps"],
                "video_path": video_path(params["output_path"]),
            },
            parser="ffmpeg",
            depends_on=tuple(range(len(chunks))),
        ))
    return chunks


def absolute_output(filepath: str, output_path: str) -> str:
    """Resolve Blender's ``//`` (relative to the .blend file) so agents get one path."""
    if output_path.startswith("//"):
        return posixpath.join(posixpath.dirname(filepath), output_path[2:])
    return output_path


def video_path(output_path: str) -> str:
    """The preview video sits next to the frames: ``/out/shot_####`` → ``/out/shot.mp4``."""
    folder, name = posixpath.split(output_path)
    stem = re.sub(r"[#._-]+$", "", name.replace("#", "")) or "preview"
    return posixpath.join(folder, f"{stem}.mp4")
