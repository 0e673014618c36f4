"""The ffmpeg_encode executor and Blender's file-name rule it depends on."""
from __future__ import annotations

import os

import pytest

from agent.blender_paths import frame_path
from agent.errors import PreflightFailed, UnsupportedParams
from agent.executors import ffmpeg_encode
from common.config import Config
from common.messages import ChunkAssign

CONFIG = Config(ffmpeg="/usr/local/bin/ffmpeg")


# Expected values are what Blender 3.4.1's scene.render.frame_path() returned.
@pytest.mark.parametrize(("output", "file_format", "frame", "expected"), [
    ("/o/x_###", "PNG", 3, "/o/x_003.png"),
    ("/o/x_###", "PNG", -5, "/o/x_-005.png"),
    ("/o/x_##", "PNG", 12345, "/o/x_12345.png"),
    ("/o/x_", "PNG", 3, "/o/x_0003.png"),
    ("/o/x_", "JPEG", -5, "/o/x_-0005.jpg"),
    ("/o/x_##.jpg", "PNG", 3, "/o/x_03.png"),
    ("/o/x_##.JPEG", "JPEG", 3, "/o/x_03.JPEG"),
    ("/o/x_##.JPEG", "TIFF", 3, "/o/x_03.tif"),
    ("/o/x.tif", "PNG", 3, "/o/x.tif0003.png"),
    ("/o/x_##.dds", "OPEN_EXR", 3, "/o/x_03.exr"),
    ("/o/a#b/x", "TARGA", 3, "/o/a#b/x0003.tga"),
    ("/o/x_#_y_##.txt", "PNG", 3, "/o/x_#_y_03.txt.png"),
    ("/o/x_####.exr", "OPEN_EXR_MULTILAYER", 3, "/o/x_0003.exr"),
    ("/o/x_##", "BMP", 7, "/o/x_07.bmp"),
])
def test_frame_files_follow_blenders_naming_rule(output, file_format, frame, expected):
    assert frame_path(output, frame, file_format) == expected


def params(tmp_path, **extra):
    return {"output_path": str(tmp_path / "f_###"), "format": "PNG", "frames": [[1, 2], [4, 4]],
            "fps": 24, "video_path": str(tmp_path / "video" / "out.mp4"), **extra}


def chunk(p: dict) -> ChunkAssign:
    return ChunkAssign(chunk_id=9, task_id=1, lease_id="L", attempt=1, command="ffmpeg_encode",
                       parser="ffmpeg", params=p, frames=[[1, 2], [4, 4]])


def test_ffmpeg_argv_reads_a_numbered_sequence_and_encodes_even_sized_h264():
    argv = ffmpeg_encode.build_argv({"fps": 25, "video_path": "/v/out.mp4"}, "/tmp/seq/%06d.png", CONFIG)
    assert argv == ["/usr/local/bin/ffmpeg", "-y", "-framerate", "25", "-i", "/tmp/seq/%06d.png",
                    "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", "-r", "25", "/v/out.mp4"]


def test_ffmpeg_prepare_links_every_frame_file_in_order_and_cleans_up(tmp_path):
    for frame in (1, 2, 4):
        (tmp_path / f"f_{frame:03d}.png").write_bytes(b"png")
    command = ffmpeg_encode.prepare(chunk(params(tmp_path)), CONFIG)
    pattern = command.argv[command.argv.index("-i") + 1]
    sequence = os.path.dirname(pattern)
    assert pattern.endswith("%06d.png")
    links = sorted(os.listdir(sequence))
    assert links == ["000001.png", "000002.png", "000003.png"]
    assert [os.readlink(os.path.join(sequence, name)) for name in links] == [
        f"{tmp_path}/f_00{n}.png" for n in (1, 2, 4)]
    assert command.all_done_on_success and (tmp_path / "video").is_dir()
    command.cleanup()
    assert not os.path.exists(sequence)


def test_ffmpeg_fails_before_starting_when_an_input_frame_is_missing(tmp_path):
    (tmp_path / "f_001.png").write_bytes(b"png")
    with pytest.raises(PreflightFailed, match=r"missing input frame 2: .*f_002\.png"):
        ffmpeg_encode.prepare(chunk(params(tmp_path)), CONFIG)


@pytest.mark.parametrize(("extra", "reason"), [
    ({"codec": "vp9"}, "unsupported params codec"),
    ({"fps": 0}, "params.fps: must be at least 1"),
    ({"frames": "1-3"}, "params.frames must be a list"),
    ({"output_path": "//renders/f_###"}, "blend-relative"),
])
def test_ffmpeg_refuses_params_it_cannot_run(tmp_path, extra, reason):
    with pytest.raises(UnsupportedParams, match=reason):
        ffmpeg_encode.prepare(chunk(params(tmp_path, **extra)), CONFIG)
