"""Substitution: every token into exactly one argument, and no value ever opening an argument with '-'."""
from __future__ import annotations

import pytest

from common.jobtypes import load_text
from common.jobtypes.render import Scope, render, render_args, resolve_paths
from common.jobtypes.tokens import TemplateError, parse, printf_pattern, sequence_name

TYPE = load_text("""\
name: t
version: 1
settings:
  frames: {type: frames}
  out: {type: path, access: write, required: true, relative_to: scene}
  scene: {type: path, access: read, required: true}
  mode: {type: choice, choices: {fast: "--fast-mode", best: best}, default: best}
  offset: {type: integer, min: -10, max: 10, default: 0, allow_dash: true}
  label: {type: string, allow_dash: false}
  flag: {type: boolean, default: false}
steps:
  - name: s
    command: c
    args: ["{frames}"]
""", "t.yaml")


def scope(frames, **settings):
    values = {"frames": [[1, 3], [7, 9]], "out": "/o/shot_####.exr", "scene": "/s/a.usd", "mode": "best",
              "offset": 0, "flag": False, **settings}
    return Scope(TYPE, resolve_paths(TYPE, values), frames)


@pytest.mark.parametrize(("template", "expected"), [
    ("{frame_first}", "7"),
    ("{frame_last}", "9"),
    ("{frame_count}", "3"),
    ("{frame_first:4}", "0007"),
    ("--frames={frames}", "--frames=7-9"),
    ("{frames:..}", "7..9"),
    ("{task_frames}", "1-3,7-9"),
    ("{task_frames:..}", "1..3,7..9"),
    ("{task_frame_first}-{task_frame_last}", "1-9"),
    ("{out}", "/o/shot_####.exr"),
    ("{out|dirname}", "/o"),
    ("{out|basename}", "shot_####.exr"),
    ("{out|sequence_name}", "shot"),
    ("{out|printf}", "/o/shot_%04d.exr"),
    ("{mode}", "best"),
    ("--x={flag}", "--x=false"),
    ("{{literal}} {frame_first}", "{literal} 7"),
    ("a b;c $(d) `e`", "a b;c $(d) `e`"),
])
def test_each_token_becomes_part_of_one_argument(template, expected):
    assert render(template, scope([[7, 9]])) == expected


def test_a_choice_gives_its_argument_and_value_gives_what_was_submitted():
    assert render("--m={mode}", scope([[1, 1]], mode="fast")) == "--m=--fast-mode"
    assert render("{mode|value}", scope([[1, 1]], mode="fast")) == "fast"


def test_a_choice_argument_that_starts_with_a_dash_may_not_open_an_argument_on_its_own():
    with pytest.raises(TemplateError, match="would start the argument"):
        render("{mode}", scope([[1, 1]], mode="fast"))


def test_a_value_with_spaces_or_shell_characters_stays_one_argument():
    args = render_args(("{label}", "x"), scope([[1, 1]], label="a b; rm -rf / && $(id)"))
    assert args == ["a b; rm -rf / && $(id)", "x"]


def test_a_negative_frame_opening_an_argument_is_refused_but_inside_one_it_is_a_value():
    with pytest.raises(TemplateError, match="would start the argument"):
        render("{frame_first}", scope([[-3, -1]]))
    assert render("--first={frame_first}", scope([[-3, -1]])) == "--first=-3"


def test_allow_dash_lets_a_setting_open_an_argument_with_a_minus():
    assert render("{offset}", scope([[1, 1]], offset=-4)) == "-4"


def test_relative_paths_resolve_against_their_base_setting():
    assert render("{out}", scope([[1, 1]], out="//renders/f_##")) == "/s/renders/f_##"


def test_conditions_pick_groups_and_frames_contiguous_follows_the_chunk():
    args = TYPE.steps[0].args
    assert render_args(args, scope([[1, 3]])) == ["1-3"]
    from common.jobtypes.schema import Group

    group = (Group(("frames_contiguous",), ("-s", "{frame_first}")),
             Group(("not frames_contiguous",), ("-f",)), Group(("flag", "label"), ("both",)),
             Group(("flag", "label"), ("any",), any=True))
    assert render_args(group, scope([[1, 3]], flag=True)) == ["-s", "1", "any"]
    assert render_args(group, scope([[1, 1], [3, 3]], label="x")) == ["-f", "any"]


def test_helpers_for_frame_patterns():
    assert sequence_name("/o/x_##.png") == "x" and sequence_name("/o/plain") == "plain"
    assert printf_pattern("/o/a#b/x_###.png") == "/o/a#b/x_%03d.png"
    assert printf_pattern("/o/none.png") == "/o/none.png"


@pytest.mark.parametrize("bad", ["{", "}", "x{y", "{frames"])
def test_malformed_templates_are_refused(bad):
    with pytest.raises(TemplateError):
        parse(bad)
