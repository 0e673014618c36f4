"""Real renders: blender_render against the real Blender 3.4 on a farm of three agent processes."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import uuid

import pytest
import requests

from tests.blender_scenes import blender_path, make_scene
from tests.conftest import delete_namespace_queues, missing, wait_for
from tests.integration.farmproc import Farm
from tests.integration.test_farm import chunk_rows

pytestmark = [pytest.mark.integration, pytest.mark.blender]


def ffprobe(path, entries="stream=width,height"):
    tool = shutil.which("ffprobe")
    if tool is None:
        missing("ffprobe (ffmpeg)")
    out = subprocess.run([tool, "-v", "error", "-select_streams", "v:0", "-count_frames",
                          "-show_entries", entries, "-of", "json", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["streams"][0]


@pytest.fixture(scope="module")
def render_farm(broker_url, tmp_path_factory):
    blender_path()
    root = tmp_path_factory.mktemp("render")
    crashy = root / "crashy-blender"
    crashy.write_text('#!/bin/sh\nif [ "$1" = "--version" ]; then exec blender --version; fi\n'
                      'blender "$@"\nkill -SEGV $$\n')
    crashy.chmod(crashy.stat().st_mode | stat.S_IXUSR)
    namespace = f"b{uuid.uuid4().hex[:10]}"
    env = dict(os.environ)
    env.update({
        "CORRAL_BROKER_URL": broker_url, "CORRAL_NAMESPACE": namespace,
        "CORRAL_DATABASE_URL": f"sqlite:///{root / 'corral.db'}", "CORRAL_DATA_DIR": str(root / "var"),
        "CORRAL_HEARTBEAT_INTERVAL": "0.5", "CORRAL_AGENT_TIMEOUT": "5", "CORRAL_TICK_INTERVAL": "0.2",
        "CORRAL_AGENT_SECRET": f"render-secret-{namespace}", "CORRAL_API_CACHE": "0",
        "PYTHONUNBUFFERED": "1",
    })
    logdir = root / "logs"
    logdir.mkdir()
    farm = Farm(env, logdir)
    farm.gateway()
    farm.dispatcher()
    for name in ("r1", "r2", "r3"):
        farm.agent(name)
    farm.env = dict(env, CORRAL_BLENDER=str(crashy))
    farm.agent("crashy", "crashy")
    farm.env = env
    farm.wait_online(["r1", "r2", "r3", "crashy"])
    farm.root = root
    farm.scene = make_scene(root / "anim.blend", frames=24)
    yield farm
    farm.close()
    delete_namespace_queues(broker_url, namespace)


def render(farm, settings, **fields):
    base = {"filepath": str(farm.scene), "format": "PNG", "chunk_size": 4}
    return farm.submit("blender_render", {**base, **settings}, **fields)


def test_a_24_frame_animation_renders_every_frame_and_then_its_preview_video(render_farm):
    farm = render_farm
    out = farm.root / "anim"
    task = render(farm, {"frame_start": 1, "frame_end": 24, "output_path": f"{out}/frame_####",
                         "video": True, "fps": 12})
    seen = set()

    def done():
        current = farm.get(f"/tasks/{task['id']}")
        seen.add(current["frame_current"])
        return current if current["status"] in ("completed", "failed") else None
    result = wait_for(done, timeout=180, interval=0.1, what="the render to finish")
    assert result["status"] == "completed", (result, farm.logs())
    files = sorted(p.name for p in out.glob("frame_*.png"))
    assert files == [f"frame_{n:04d}.png" for n in range(1, 25)]
    for path in out.glob("frame_*.png"):
        size = ffprobe(path)
        assert (size["width"], size["height"]) == (64, 48), path
    assert len(seen - {None}) >= 3, f"frame_current rose in too few steps: {sorted(seen - {None})}"
    rows = chunk_rows(farm.env, task["id"])
    renders = [r for r in rows if r["command"] == "blender_render"]
    (video,) = [r for r in rows if r["command"] == "ffmpeg_encode"]
    assert len(renders) == 6 and len({r["worker"] for r in renders}) > 1
    assert video["started_at"] >= max(r["finished_at"] for r in renders)
    movie = out / "frame.mp4"
    assert int(ffprobe(movie, "stream=nb_read_frames")["nb_read_frames"]) == 24
    preview = requests.get(f"{farm.api}/tasks/{task['id']}/preview", headers=farm.headers, timeout=10)
    assert preview.status_code == 200 and preview.headers["content-type"] == "image/png"
    frames = [out / f"frame_{n:04d}.png" for n in range(1, 25)]
    newest = max(reversed(frames), key=lambda p: p.stat().st_mtime_ns)  # the later frame on a tie
    assert preview.headers["x-corral-frame-file"] == newest.name
    assert preview.content == newest.read_bytes()


def test_a_frame_list_renders_exactly_its_frames_as_jpeg(render_farm):
    farm = render_farm
    out = farm.root / "list"
    task = render(farm, {"frames": "1-3,7,10-11", "output_path": f"{out}/f_##", "format": "JPEG",
                         "chunk_size": 2})
    assert farm.wait_task(task["id"], timeout=120)["frames_done"] == 6
    assert sorted(p.name for p in out.iterdir()) == [f"f_{n:02d}.jpg" for n in (1, 2, 3, 7, 10, 11)]
    assert ffprobe(out / "f_07.jpg")["width"] == 64


def test_open_exr_output_is_written_and_readable(render_farm):
    farm = render_farm
    out = farm.root / "exr"
    task = render(farm, {"frame_start": 5, "frame_end": 6, "output_path": f"{out}/e_####",
                         "format": "OPEN_EXR"})
    farm.wait_task(task["id"], timeout=120)
    assert sorted(p.name for p in out.iterdir()) == ["e_0005.exr", "e_0006.exr"]
    assert ffprobe(out / "e_0005.exr")["height"] == 48


@pytest.mark.parametrize("case", ["missing", "corrupt", "unwritable", "crash"])
def test_a_broken_render_fails_the_task_with_its_reason_and_never_claims_success(render_farm, case):
    farm = render_farm
    scene, output, pool = str(farm.scene), str(farm.root / f"fail-{case}" / "f_##"), "default"
    if case == "missing":
        scene = str(farm.root / "no-such.blend")
    elif case == "corrupt":
        bad = farm.root / "corrupt.blend"
        bad.write_bytes(os.urandom(4096))
        scene = str(bad)
    elif case == "unwritable":
        blocker = farm.root / "a-file"
        blocker.write_text("not a directory")
        output = f"{blocker}/f_##"
    else:
        pool = "crashy"
    task = farm.submit("blender_render", {"filepath": scene, "output_path": output, "frame_start": 1,
                                          "frame_end": 2, "chunk_size": 2}, max_retries=1, pool=pool)
    result = farm.wait_task(task["id"], statuses=("failed",), timeout=120)
    expected = {"missing": "not found", "corrupt": "not supported", "unwritable": "output",
                "crash": "signal"}[case]
    assert expected in result["error"].lower() or expected in result["error"], result["error"]
    rows = chunk_rows(farm.env, task["id"])
    assert rows[0]["failures"] == 2 and rows[0]["status"] == "failed"
    chunks = farm.get(f"/tasks/{task['id']}/chunks")
    listed = chunks["chunks"] if isinstance(chunks, dict) else chunks
    assert len(listed[0]["attempts_history"]) == 2
    assert all(a["log_tail"] for a in listed[0]["attempts_history"])


def test_corral_demo_scene_builds_a_blend_that_renders(tmp_path):
    import subprocess as sp

    from tests.integration.farmproc import CORRAL

    blender = blender_path()
    out = sp.run([*CORRAL, "demo-scene", str(tmp_path / "demo.blend"), "--frames", "3", "--width", "32",
                  "--height", "24"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    render = sp.run([blender, "-b", str(tmp_path / "demo.blend"), "-o", str(tmp_path / "f_#"), "-F", "PNG",
                     "-f", "3"], capture_output=True, text=True, timeout=300)
    assert "Saved:" in render.stdout
    assert (ffprobe(tmp_path / "f_3.png")["width"], ffprobe(tmp_path / "f_3.png")["height"]) == (32, 24)
