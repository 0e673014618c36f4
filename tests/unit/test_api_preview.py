"""GET /tasks/{id}/preview serves the newest frame a task wrote."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from falcon import testing

from api_gateway.app import create_app
from common.config import load_config
from common.db import open_and_migrate
from common.models import Chunk, Task
from tests.conftest import missing

# The gateway is closed by default: these tests act as the admin (docs/security.md).
ADMIN = "test-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
CONFIG = load_config({}, admin_token=ADMIN, storage_roots=("/",))


PNG_1x1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000100ffff03000006000557bfabd40000000049454e44ae426082")


class NullPublisher:
    def event(self, message, persistent=True):
        pass


@pytest.fixture
def client(tmp_path):
    open_and_migrate(f"sqlite:///{tmp_path}/p.db")
    return testing.TestClient(create_app(CONFIG, NullPublisher()), headers=AUTH)


def task_with_files(files):
    task = Task.create(type="blender_render", parser="blender_render", settings={}, frame_start=1,
                       frame_end=2)
    Chunk.create(task=task, index=0, command="blender_render", frames=[[1, 2]], frame_count=2, files=files)
    return task.id


def test_the_newest_png_frame_is_served_as_stored(client, tmp_path):
    old, new = tmp_path / "f_0001.png", tmp_path / "f_0002.png"
    old.write_bytes(b"old")
    new.write_bytes(PNG_1x1)
    os.utime(old, (1, 1))
    response = client.simulate_get(f"/tasks/{task_with_files([str(old), str(new)])}/preview")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == PNG_1x1


def test_a_task_without_frames_answers_409_saying_so(client):
    response = client.simulate_get(f"/tasks/{task_with_files([])}/preview")
    assert response.status_code == 409
    assert "not written a frame" in response.json["error"]["message"]


def test_an_unknown_task_has_no_preview(client):
    assert client.simulate_get("/tasks/999/preview").status_code == 404


def test_an_exr_frame_is_converted_to_png(client, tmp_path):
    if shutil.which("ffmpeg") is None:
        missing("ffmpeg (to make an EXR)")
    exr = tmp_path / "f_0001.exr"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=red:s=8x6", "-frames:v", "1",
                    "-pix_fmt", "gbrpf32le", str(exr)], check=True)
    response = client.simulate_get(f"/tasks/{task_with_files([str(exr)])}/preview")
    assert response.status_code == 200 and response.content.startswith(b"\x89PNG")
