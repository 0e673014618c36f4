"""The compiler is pure: exact chunk lists (and argument lists) for given settings of each built-in type."""
from __future__ import annotations

import pytest

from common.errors import ValidationError
from common.frames import parse_frames, split_chunks, to_ranges
from common.jobtypes import task_type
from dispatcher.compilers import compile_task


def compiled(type_name, settings):
    return list(compile_task(type_name, task_type(type_name).validate(settings).settings))


def test_sleep_task_of_ten_frames_in_threes_gives_four_chunks_with_the_last_short():
    chunks = compiled("sleep", {"frame_start": 1, "frame_end": 10, "chunk_size": 3})
    assert [c.frames for c in chunks] == [[[1, 3]], [[4, 6]], [[7, 9]], [[10, 10]]]
    assert {c.command for c in chunks} == {"sleep"}
    assert [c.index for c in chunks] == [0, 1, 2, 3]
    assert chunks[0].params == {"args": ["--frames=1-3", "--seconds", "1.0"], "env": {}, "paths": [],
                                "done_on_exit": False}
    assert [c.step for c in chunks] == ["sleep"] * 4


def test_noop_chunk_size_one_gives_one_chunk_per_frame():
    chunks = compiled("noop", {"frame_start": 5, "frame_end": 7})
    assert [c.frames for c in chunks] == [[[5, 5]], [[6, 6]], [[7, 7]]]


def test_frame_list_runs_are_split_whole_and_only_short_remainders_share_a_chunk():
    chunks = compiled("noop", {"frames": "1-5,9,20-22", "chunk_size": 4})
    assert [c.frames for c in chunks] == [[[1, 4]], [[5, 5], [9, 9]], [[20, 22]]]


def test_scattered_frames_are_packed_up_to_the_chunk_size():
    assert list(split_chunks(to_ranges(parse_frames("1,3,5,7,9")), 2)) == [
        [[1, 1], [3, 3]], [[5, 5], [7, 7]], [[9, 9]]]


def test_frame_list_parsing_sorts_and_deduplicates():
    assert parse_frames("5, 1-3 ,2") == [1, 2, 3, 5]
    assert to_ranges([1, 2, 3, 5, 7, 8]) == [[1, 3], [5, 5], [7, 8]]


@pytest.mark.parametrize("spec", ["", "1-", "a", "5-3", "1,,2", "1-2-3"])
def test_bad_frame_lists_are_refused_naming_the_field(spec):
    with pytest.raises(ValidationError) as err:
        task_type("noop").validate({"frames": spec})
    assert err.value.field == "settings.frames"


def test_blender_task_with_video_adds_an_encode_chunk_that_waits_for_every_render_chunk():
    chunks = compiled("blender_render", {
        "filepath": "/farm/shot.blend", "output_path": "//frames/shot_####", "format": "PNG",
        "frame_start": 1, "frame_end": 10, "chunk_size": 4, "video": True})
    render, video = chunks[:-1], chunks[-1]
    assert [c.frames for c in render] == [[[1, 4]], [[5, 8]], [[9, 10]]]
    assert render[0].params["args"] == ["/farm/shot.blend", "-o", "/farm/frames/shot_####", "-F", "PNG",
                                        "-s", "1", "-e", "4", "-a"]
    assert render[0].params["paths"] == [
        {"setting": "filepath", "path": "/farm/shot.blend", "access": "read"},
        {"setting": "output_path", "path": "/farm/frames/shot_####", "access": "write"}]
    assert video.command == "ffmpeg_encode"
    assert video.depends_on == (0, 1, 2)
    assert video.frames == []
    assert video.params["args"] == ["--pattern", "/farm/frames/shot_####", "--format", "PNG", "--frames=1-10",
                                    "--fps", "24", "--output", "/farm/frames/shot.mp4"]
    assert video.params["done_on_exit"] is True
    assert video.parser == "ffmpeg"
    assert [c.step for c in chunks] == ["render"] * 3 + ["video"]


def test_blender_task_without_video_has_no_encode_chunk():
    chunks = compiled("blender_render", {"filepath": "/f/a.blend", "output_path": "/o/a_##",
                                         "frames": "1,3", "chunk_size": 1})
    assert [c.command for c in chunks] == ["blender_render", "blender_render"]
    assert [c.frames for c in chunks] == [[[1, 1]], [[3, 3]]]


@pytest.mark.parametrize("settings,field", [
    ({"frame_start": 5, "frame_end": 1}, "settings.frame_end"),
    ({"frame_start": 1, "frame_end": 5, "chunk_size": 0}, "settings.chunk_size"),
    ({"frame_start": "1", "frame_end": 5}, "settings.frame_start"),
    ({"frame_end": 5}, "settings.frame_start"),
    ({"frame_start": 1, "frame_end": 2, "bogus": 1}, "settings.bogus"),
    ({"frame_start": 1, "frame_end": 2, "seconds_per_frame": -1}, "settings.seconds_per_frame"),
])
def test_invalid_sleep_settings_name_the_field(settings, field):
    with pytest.raises(ValidationError) as err:
        task_type("sleep").validate(settings)
    assert err.value.field == field


@pytest.mark.parametrize("key,value", [
    ("filepath", "--python-expr=evil"), ("output_path", "/o/x\n-P"), ("scene", "-S"),
    ("camera", "cam\x00"), ("format", "GIF"), ("engine", "CUSTOM"), ("threads", "4"),
])
def test_blender_settings_cannot_smuggle_flags_or_bad_values(key, value):
    settings = {"filepath": "/f/a.blend", "output_path": "/o/a_##", "frame_start": 1, "frame_end": 1}
    settings[key] = value
    with pytest.raises(ValidationError) as err:
        task_type("blender_render").validate(settings)
    assert err.value.field == f"settings.{key}"
