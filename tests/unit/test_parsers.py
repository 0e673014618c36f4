"""Parsers against real output: Blender 3.4.1, ffmpeg 5.1 and the sleeper."""
from __future__ import annotations

from agent.parsers import PARSERS
from agent.parsers.blender_render import BlenderRenderParser
from agent.parsers.ffmpeg import FfmpegParser
from agent.parsers.noop import NoopParser
from agent.parsers.sleep import SleepParser

# blender -b --disable-autoexec cycles.blend -o /tmp/bl/out/c_#### -F PNG -s 1 -e 2 -a
# (Cycles, CPU, 1 sample, 64x48; most of the per-frame status lines left out)
CYCLES_OUTPUT = """\
Blender 3.4.1
Read blend: /tmp/bl/cycles.blend
Fra:1 Mem:9.04M (Peak 10.83M) | Time:00:00.00 | Mem:0.00M, Peak:0.00M | Scene, ViewLayer | Synchronizing object | Cube
Fra:1 Mem:9.04M (Peak 10.83M) | Time:00:00.00 | Mem:0.00M, Peak:0.00M | Scene, ViewLayer | Initializing
Fra:1 Mem:9.40M (Peak 10.83M) | Time:00:00.04 | Mem:0.00M, Peak:0.00M | Scene, ViewLayer | Updating Scene BVH | Building BVH 0%
Fra:1 Mem:9.90M (Peak 10.83M) | Time:00:00.04 | Mem:0.76M, Peak:0.76M | Scene, ViewLayer | Sample 0/1
Fra:1 Mem:10.06M (Peak 10.83M) | Time:00:00.04 | Mem:0.86M, Peak:0.86M | Scene, ViewLayer | Sample 1/1
Fra:1 Mem:10.06M (Peak 10.83M) | Time:00:00.04 | Mem:0.86M, Peak:0.86M | Scene, ViewLayer | Finished
Saved: '/tmp/bl/out/c_0001.png'
 Time: 00:00.35 (Saving: 00:00.30)

Fra:2 Mem:9.29M (Peak 10.83M) | Time:00:00.00 | Mem:0.00M, Peak:0.00M | Scene, ViewLayer | Synchronizing object | Cube
Fra:2 Mem:10.06M (Peak 10.83M) | Time:00:00.00 | Mem:0.86M, Peak:0.86M | Scene, ViewLayer | Sample 1/1
Fra:2 Mem:10.06M (Peak 10.83M) | Time:00:00.00 | Mem:0.86M, Peak:0.86M | Scene, ViewLayer | Finished
Saved: '/tmp/bl/out/c_0002.png'
 Time: 00:00.00 (Saving: 00:00.00)


Blender quit
"""  # noqa: E501 - real Blender lines, kept whole

# blender -b --disable-autoexec wb.blend -o /tmp/bl/out/w_ -F PNG -f 1,3  (Workbench: no Fra: lines)
WORKBENCH_OUTPUT = """\
Blender 3.4.1
Read blend: /tmp/bl/wb.blend
EGL Error (0x3001): EGL_NOT_INITIALIZED: EGL is not initialized, or could not be initialized, \
for the specified EGL display connection.

Managed to successfully fallback to surfaceless EGL rendering!

Saved: '/tmp/bl/out/w_0001.png'
 Time: 00:02.01 (Saving: 00:00.22)

Saved: '/tmp/bl/out/w_0003.png'
 Time: 00:00.00 (Saving: 00:00.00)


Blender quit
"""

# blender -b --disable-autoexec eevee.blend -o /tmp/bl/out/e_## -F JPEG -f 2
EEVEE_OUTPUT = """\
Blender 3.4.1
Read blend: /tmp/bl/eevee.blend
Fra:2 Mem:10.78M (Peak 11.90M) | Time:00:01.40 | Syncing Cube
Fra:2 Mem:10.78M (Peak 11.90M) | Time:00:02.16 | Syncing Light
Fra:2 Mem:10.78M (Peak 11.90M) | Time:00:02.16 | Rendering 1 / 64 samples
Fra:2 Mem:10.79M (Peak 11.90M) | Time:00:07.13 | Rendering 64 / 64 samples
Saved: '/tmp/bl/out/e_02.jpg'
 Time: 00:07.49 (Saving: 00:00.35)


Blender quit
"""

# blender -b --disable-autoexec /tmp/bl/nope.blend ...  (exit code 1)
MISSING_FILE_OUTPUT = """\
Blender 3.4.1
Error: Cannot read file '/tmp/bl/nope.blend': No such file or directory

Blender quit
"""

# --python-exit-code 7 --python-expr "1/0"  (exit code 7)
PYTHON_ERROR_OUTPUT = """\
Blender 3.4.1
Read blend: /tmp/bl/cycles.blend
Error: Python: Traceback (most recent call last):
  File "<string>", line 1, in <module>
ZeroDivisionError: division by zero

Error: script failed, expr: '1/0', exiting.
"""

# a segmentation fault (Blender then dies of signal 11; no newline after the path)
CRASH_OUTPUT = """\
Blender 3.4.1
Read blend: /tmp/bl/cycles.blend
Writing: /tmp/cycles.crash.txt"""

# -S NoScene: Blender says so, then renders the active scene and exits 0
MISSING_SCENE_OUTPUT = """\
Blender 3.4.1
Read blend: /tmp/bl/cycles.blend
Can't find scene: 'NoScene' in file: '/tmp/bl/cycles.blend'
Saved: '/tmp/bl/fmt/n_0001.png'
"""

# ffmpeg 5.1 ends progress lines with \r; the runner splits them into lines.
FFMPEG_OUTPUT = (
    "  Stream #0:0: Video: h264 (avc1 / 0x31637661), yuv420p(tv, progressive), 64x48 [SAR 1:1 DAR 4:3], "
    "q=2-31, 24 fps, 12288 tbn\n"
    "frame=    1 fps=0.0 q=0.0 size=       0kB time=00:00:00.00 bitrate=N/A speed=   0x    \r"
    "frame=    3 fps=0.0 q=28.0 Lsize=       2kB time=00:00:00.00 bitrate=174716.0kbits/s speed=0.0182x    \n"
    "video:1kB audio:0kB subtitle:0kB other streams:0kB global headers:0kB muxing overhead: 106.177155%\n"
)


def feed(parser, text: str) -> list[bool]:
    return [parser.feed(line) for line in text.replace("\r", "\n").splitlines()]


def test_every_parser_name_of_the_contract_is_registered():
    from common.jobtypes import PARSERS as CONTRACT

    assert set(PARSERS) == set(CONTRACT)


def test_blender_parser_counts_cycles_frames_on_saved_lines():
    parser = BlenderRenderParser([1, 2])
    feed(parser, CYCLES_OUTPUT)
    assert parser.progress.frames_done == [1, 2]
    assert parser.progress.files == ["/tmp/bl/out/c_0001.png", "/tmp/bl/out/c_0002.png"]
    assert parser.progress.frame_current == 2
    assert parser.progress.error == "" and parser.progress.fatal == ""


def test_blender_parser_reports_the_current_frame_before_it_is_saved():
    parser = BlenderRenderParser([1, 2])
    lines = CYCLES_OUTPUT.splitlines()
    changed = [parser.feed(line) for line in lines[:4]]
    assert changed == [False, False, True, False]  # only the first Fra:1 is news
    assert parser.progress.frame_current == 1
    assert parser.progress.frames_done == []


def test_blender_parser_gives_workbench_saves_the_chunk_frames_in_order():
    parser = BlenderRenderParser([1, 3])
    feed(parser, WORKBENCH_OUTPUT)
    assert parser.progress.frames_done == [1, 3]
    assert parser.progress.files == ["/tmp/bl/out/w_0001.png", "/tmp/bl/out/w_0003.png"]
    assert parser.progress.error == ""  # "EGL Error (...)" is noise, not a failure


def test_blender_parser_reads_eevee_frames():
    parser = BlenderRenderParser([2])
    feed(parser, EEVEE_OUTPUT)
    assert parser.progress.frames_done == [2]
    assert parser.progress.files == ["/tmp/bl/out/e_02.jpg"]


def test_blender_parser_keeps_the_error_of_a_missing_file():
    parser = BlenderRenderParser([1])
    feed(parser, MISSING_FILE_OUTPUT)
    assert parser.progress.frames_done == []
    assert parser.progress.error == "Error: Cannot read file '/tmp/bl/nope.blend': No such file or directory"


def test_blender_parser_keeps_the_last_python_error_line():
    parser = BlenderRenderParser([1])
    feed(parser, PYTHON_ERROR_OUTPUT)
    assert parser.progress.error == "Error: script failed, expr: '1/0', exiting."


def test_blender_parser_notes_a_crash_report():
    parser = BlenderRenderParser([1])
    feed(parser, CRASH_OUTPUT)
    assert parser.progress.error == "Writing: /tmp/cycles.crash.txt"
    assert parser.progress.frames_done == []


def test_blender_parser_treats_a_missing_scene_as_fatal():
    parser = BlenderRenderParser([1])
    feed(parser, MISSING_SCENE_OUTPUT)
    assert parser.progress.fatal == "Can't find scene: 'NoScene' in file: '/tmp/bl/cycles.blend'"


def test_blender_parser_does_not_count_a_frame_twice():
    parser = BlenderRenderParser([1])
    assert parser.feed("Saved: '/r/a_0001.png'") is True
    assert parser.feed("Saved: '/r/a_0001.png'") is False
    assert parser.progress.frames_done == [1]


def test_ffmpeg_parser_maps_encoded_frames_onto_the_chunk():
    parser = FfmpegParser([10, 11, 12])
    feed(parser, FFMPEG_OUTPUT)
    assert parser.progress.frames_done == [10, 11, 12]
    assert parser.progress.frame_current == 12


def test_ffmpeg_parser_reports_partial_progress_and_errors():
    parser = FfmpegParser([1, 2, 3, 4])
    assert parser.feed("frame=    2 fps=0.0 q=0.0 size=       0kB time=00:00:00.00 bitrate=N/A") is True
    assert parser.progress.frames_done == [1, 2]
    parser.feed("/tmp/x/f_0003.png: No such file or directory")
    assert parser.progress.error == "/tmp/x/f_0003.png: No such file or directory"


def test_sleep_parser_reads_the_sleeper_lines():
    parser = SleepParser([1, 2, 3, 7])
    text = ("sleeper pid 4242 frames 1-3,7\nFra:1 sleeping 0.5s\nFrame 1 done\n"
            "Fra:2 sleeping 0.5s\nFrame 2 done\nFra:3 sleeping 0.5s\n")
    assert feed(parser, text) == [False, True, True, True, True, True]
    assert parser.progress.frames_done == [1, 2]
    assert parser.progress.frame_current == 3


def test_noop_parser_ignores_output_and_finish_all_marks_every_frame():
    parser = NoopParser([4, 5])
    assert parser.feed("anything") is False
    parser.finish_all()
    assert parser.progress.frames_done == [4, 5]


# ---------------------------------------------------------------- regex parsers from job-type files

def _regex_spec(file_name: str) -> dict:
    from pathlib import Path

    from common.jobtypes import load_file

    docs = Path(__file__).resolve().parents[2] / "docs" / "jobtypes"
    return load_file(docs / file_name).steps[0].regex.as_dict()


def test_the_husk_regex_parser_reads_alfred_progress_from_the_stand_in(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from agent.parsers import PARSERS

    out = tmp_path / "r.$F4.exr"
    (tmp_path / "shot.usd").write_text("#usda 1.0\n")
    run = subprocess.run([sys.executable, "-m", "tests.standins.husk", str(tmp_path / "shot.usd"),
                          "--renderer", "BRAY_HdKarma", "--frame", "5", "--frame-count", "4", "--output",
                          str(out), "--make-output-path", "--verbose", "a2"],
                         capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[2],
                         env={"HOUDINI_STANDIN_SECONDS_PER_FRAME": "0"})
    lines = run.stdout.splitlines()
    assert "ALF_PROGRESS 12%" in lines and lines[-1] == "ALF_PROGRESS 100%"
    parser = PARSERS["regex"]([5, 6, 7, 8], _regex_spec("husk.yaml"))
    seen = []
    for line in lines:
        parser.feed(line)
        seen.append(list(parser.progress.frames_done))
    assert seen[lines.index("ALF_PROGRESS 50%")] == [5, 6]
    assert parser.progress.frames_done == [5, 6, 7, 8]


def test_the_percent_parser_maps_40_percent_of_ten_frames_to_the_first_four():
    from agent.parsers.regex import RegexParser

    parser = RegexParser(list(range(1, 11)), {"progress": r"ALF_PROGRESS (\d+)%", "progress_unit": "percent"})
    assert parser.feed("ALF_PROGRESS 40%")
    assert (parser.progress.frames_done, parser.progress.frame_current) == ([1, 2, 3, 4], 5)
    assert not parser.feed("ALF_PROGRESS 30%")  # progress never goes back
    assert not parser.feed("unrelated line")


NUKE_OUTPUT = """\
Nuke 15.1v2, 64 bit, built Apr 12 2024.
Frame 11 (1 of 3)
Writing /farm/comp/sh010.0011.exr took 1.52 seconds
Frame 12 (2 of 3)
Writing /farm/comp/sh010.0012.exr took 1.31 seconds
Frame 13 (3 of 3)
ERROR: Read1: /farm/plates/sh010.0013.exr: No such file or directory
"""


def test_the_nuke_regex_parser_counts_frames_and_files_and_keeps_the_error():
    from agent.parsers import PARSERS

    parser = PARSERS["regex"]([11, 12, 13], _regex_spec("nuke.yaml"))
    for line in NUKE_OUTPUT.splitlines():
        parser.feed(line)
    assert parser.progress.frames_done == [11, 12]
    assert parser.progress.files == ["/farm/comp/sh010.0011.exr", "/farm/comp/sh010.0012.exr"]
    assert parser.progress.frame_current == 13
    assert parser.progress.error.startswith("ERROR: Read1")


def test_a_fatal_pattern_dooms_the_chunk_and_a_bad_pattern_is_refused():
    import pytest

    from agent.errors import UnsupportedParams
    from agent.parsers.regex import RegexParser

    parser = RegexParser([1], {"progress": r"F(\d+)", "fatal": "^License denied"})
    parser.feed("License denied for node 3")
    assert parser.progress.fatal == "License denied for node 3"
    with pytest.raises(UnsupportedParams, match="progress must have exactly 1 group"):
        RegexParser([1], {"progress": r"F\d+"})
    with pytest.raises(UnsupportedParams, match="parser_spec.error"):
        RegexParser([1], {"progress": r"F(\d+)", "error": "("})
