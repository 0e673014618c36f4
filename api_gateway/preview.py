"""``/tasks/{id}/preview``: the last frame a task wrote, for dashboards and curl.

PNG and JPEG frames are sent as stored. EXR (and other formats browsers do not
show) is converted to PNG with ffmpeg when the gateway host has it; without
ffmpeg the answer says so with a 409 instead of sending bytes nobody can view.
Only files inside the storage roots are candidates: the file list comes from
agents, and a forged report must not make the gateway read anything else.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess

import falcon

from api_gateway import queries
from api_gateway.errors import Conflict
from common.config import Config
from common.errors import ValidationError
from common.storage import inside_roots

log = logging.getLogger(__name__)

DIRECT = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
CONVERTIBLE = {".exr", ".tif", ".tiff", ".bmp", ".tga"}
CONVERT_TIMEOUT_S = 20


def last_written(files: list[str], roots: tuple[str, ...]) -> str | None:
    """The newest existing image among a task's reported output files (the later one on a tie)."""
    newest, newest_mtime = None, -1
    for reported in files:
        ext = os.path.splitext(reported)[1].lower()
        if ext not in DIRECT and ext not in CONVERTIBLE:
            continue
        try:
            path = inside_roots(reported, roots, "file")
            mtime = os.stat(path).st_mtime_ns
        except (OSError, ValidationError):
            continue
        if mtime >= newest_mtime:
            newest, newest_mtime = path, mtime
    return newest


class TaskPreview:
    def __init__(self, config: Config) -> None:
        self.ffmpeg = config.ffmpeg
        self.roots = config.resolved_storage_roots

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: int) -> None:
        task = queries.get_task(task_id)
        path = last_written(queries.files_of(task.id), self.roots)
        if path is None:
            raise Conflict(f"task {task.id} has not written a frame yet")
        ext = os.path.splitext(path)[1].lower()
        if ext in DIRECT:
            with open(path, "rb") as handle:
                resp.data = handle.read()
            resp.content_type = DIRECT[ext]
        else:
            resp.data = self._to_png(path)
            resp.content_type = "image/png"
        resp.set_header("X-Corral-Frame-File", os.path.basename(path))
        resp.cache_control = ["no-store"]

    def _to_png(self, path: str) -> bytes:
        tool = shutil.which(self.ffmpeg)
        if tool is None:
            raise Conflict(f"the last frame is {os.path.splitext(path)[1]}; converting it for preview "
                           "needs ffmpeg on the gateway host, which is not installed")
        result = subprocess.run(
            [tool, "-v", "error", "-i", path, "-frames:v", "1", "-f", "image2pipe", "-vcodec", "png", "-"],
            capture_output=True, timeout=CONVERT_TIMEOUT_S, check=False)
        if result.returncode != 0 or not result.stdout:
            log.warning("ffmpeg could not convert %s for preview: %s", path,
                        result.stderr.decode(errors="replace").strip()[-500:])
            raise Conflict("the last frame could not be converted for preview (the gateway's log says why)")
        return result.stdout
