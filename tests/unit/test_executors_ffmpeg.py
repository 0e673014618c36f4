"""The ffmpeg_encode command (agent.children.encode_frames) and Blender's file-name rule it depends on."""
from __future__ import annotations

import os

import pytest

from agent.blender_paths import frame_path
from agent.children import encode_frames


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


def test_ffmpeg_argv_reads_a_numbered_sequence_and_encodes_even_sized_h264():
    argv = encode_frames.build_argv("/usr/local/bin/ffmpeg", 25, "/tmp/seq/%06d.png", "/v/out.mp4")
    assert argv == ["/usr/local/bin/ffmpeg", "-y", "-framerate", "25", "-i", "/tmp/seq/%06d.png",
                    "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", "-r", "25", "/v/out.mp4"]


def test_every_frame_file_is_linked_in_order_as_a_dense_sequence(tmp_path):
    for frame in (1, 2, 4):
        (tmp_path / f"f_{frame:03d}.png").write_bytes(b"png")
    files = encode_frames.input_files(str(tmp_path / "f_###"), "PNG", [1, 2, 4])
    sequence = tmp_path / "seq"
    sequence.mkdir()
    pattern = encode_frames.link_sequence(files, str(sequence))
    assert pattern == f"{sequence}/%06d.png"
    links = sorted(os.listdir(sequence))
    assert links == ["000001.png", "000002.png", "000003.png"]
    assert [os.readlink(sequence / name) for name in links] == [f"{tmp_path}/f_00{n}.png" for n in (1, 2, 4)]


def test_a_missing_input_frame_fails_before_ffmpeg_starts_and_says_which(tmp_path, capsys):
    (tmp_path / "f_001.png").write_bytes(b"png")
    code = encode_frames.main(["--ffmpeg", "/nonexistent/ffmpeg", "--pattern", str(tmp_path / "f_###"),
                               "--format", "PNG", "--frames=1-2", "--fps", "24",
                               "--output", str(tmp_path / "v.mp4")])
    assert code == 1
    assert capsys.readouterr().out.strip() == f"Error: missing input frame 2: {tmp_path}/f_002.png"


@pytest.mark.parametrize("bad", [["--fps", "0"], ["--format", "GIF"], ["--codec", "vp9"]])
def test_the_encoder_refuses_arguments_it_cannot_run(tmp_path, bad):
    args = {"--ffmpeg": "ffmpeg", "--pattern": str(tmp_path / "f_###"), "--format": "PNG",
            "--frames": "1", "--fps": "24", "--output": str(tmp_path / "v.mp4")}
    argv = [x for k, v in args.items() if k != bad[0] for x in (k, v)] + bad
    with pytest.raises(SystemExit) as exited:
        encode_frames.main(argv)
    assert exited.value.code == 2
