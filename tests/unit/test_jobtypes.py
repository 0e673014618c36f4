"""Job-type files: loading, refusing each kind of mistake with its own message and line, validating."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from common import jobtypes
from common.errors import ValidationError
from common.jobtypes import JobTypeError, load_file, load_text

DOCS = Path(__file__).resolve().parents[2] / "docs" / "jobtypes"

GOOD = textwrap.dedent("""\
    name: sim_render
    label: Sim then render
    version: 2
    settings:
      frames: {type: frames}
      chunk_size: {type: integer, default: 5, min: 1, max: 100}
      cache: {type: path, access: write, required: true}
      quality: {type: choice, choices: [draft, final], default: draft}
      seed: {type: integer, min: 0, max: 1000}
      env: {type: environment}
    steps:
      - name: sim
        command: sim
        chunks: single
        args: ["--cache", "{cache}", "--frames={task_frames}"]
        env_allow: [SIM_*]
      - name: render
        command: renderer
        after: [sim]
        chunk_size: chunk_size
        parser:
          regex: {progress: 'ALF_PROGRESS (\\d+)%', progress_unit: percent, error: '^ERROR'}
        args:
          - "{cache}"
          - "--quality={quality}"
          - {when: seed, args: ["--seed", "{seed}"]}
          - "{frame_first}"
          - "{frame_last}"
    """)


def test_the_built_in_types_load_from_their_files():
    types = jobtypes.registry()
    assert set(types) == {"blender_render", "sleep", "noop"}
    assert [s.name for s in types["blender_render"].steps] == ["render", "video"]
    assert all(jt.source.endswith(f"builtin/{jt.name}.yaml") for jt in types.values())


def test_a_studio_file_declares_settings_and_steps():
    jt = load_text(GOOD, "sim_render.yaml")
    assert (jt.name, jt.label, jt.version) == ("sim_render", "Sim then render", 2)
    assert [s.name for s in jt.steps] == ["sim", "render"]
    assert jt.steps[1].after == ("sim",)
    assert jt.steps[1].regex.progress_unit == "percent"
    assert jt.steps[0].done_on_exit and not jt.steps[1].done_on_exit
    assert jt.setting("quality").choices == ("draft", "final")


@pytest.mark.parametrize("name", ["husk.yaml", "nuke.yaml"])
def test_the_houdini_and_nuke_examples_in_the_docs_load(name):
    jt = load_file(DOCS / name)
    assert jt.steps


def mutate(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


MISTAKES = [
    (mutate("version: 2", "version: two"), 3, "version: must be an integer"),
    (mutate("name: sim_render", "name: Sim Render"), 1, "name: must match"),
    (mutate("  seed: {type: integer", "  seed: {type: int"), 9, "settings.seed.type: must be one of"),
    (mutate("chunk_size: {type: integer, default: 5,", "chunk_size: {type: integer, defualt: 5,"), 6,
     "settings.chunk_size.defualt: is not a known field"),
    (mutate("cache: {type: path, access: write,", "cache: {type: path,"), 7,
     "settings.cache.access: a path must say access: read or access: write"),
    (mutate("quality: {type: choice, choices: [draft, final], default: draft}", "quality: {type: choice}"), 8,
     "settings.quality.choices: a choice setting needs choices"),
    (mutate("  frames: {type: frames}\n", ""), 5,
     "settings: must declare exactly one setting of type frames"),
    (mutate("after: [sim]", "after: [comp]"), 19, "steps[1].after[0]: 'comp' is not a step declared before"),
    (mutate('"{cache}"\n', '"{cahce}"\n'), 24, "steps[1].args[0]: {cahce} is neither a setting"),
    (mutate('"--quality={quality}"', '"--quality={quality|upper}"'), 25, "filter |upper is not one of"),
    (mutate('{when: seed, args: ["--seed", "{seed}"]}', '"{seed}"'), 24,
     "{seed} (argument 2) is optional without a default: put it in a group with when: seed"),
    (mutate("progress: 'ALF_PROGRESS (\\d+)%'", "progress: 'ALF_PROGRESS (\\d+'"), 22,
     "steps[1].parser.regex.progress: is not a valid regular expression"),
    (mutate("progress: 'ALF_PROGRESS (\\d+)%'", "progress: 'ALF_PROGRESS \\d+%'"), 22,
     "must have exactly 1 group(s), has 0"),
    (mutate("chunk_size: chunk_size\n", "chunk_size: quality\n"), 20,
     "steps[1].chunk_size: 'quality' is not a numeric setting"),
    (mutate("chunks: single", "chunks: one"), 14, "steps[0].chunks: must be frames"),
    (mutate('"--frames={task_frames}"', '"--frames={frames}"'), 15,
     "{frames}: a single-chunk step has no chunk frames"),
    (mutate("command: renderer", "command: /usr/bin/renderer"), 18, "steps[1].command: must match"),
    (mutate("env_allow: [SIM_*]", "env_allow: [sim]"), 16,
     "steps[0].env_allow[0]: must be an UPPER_CASE name"),
    (mutate('"{frame_first}"', '"{frame_first"'), 27, "unmatched '{'"),
    (mutate("- name: render", "- name: sim"), 17, "steps[1].name: step 'sim' is declared twice"),
    (mutate("chunk_size: chunk_size\n", "chunk_size: chunk_size\n    chunk_target_s: 30\n"), 21,
     "give chunk_size or chunk_target_s, not both"),
    ("name: x\nversion: 1\nsettings: [\n", 4, "is not valid YAML"),
]


@pytest.mark.parametrize(("text", "line", "message"), MISTAKES)
def test_each_mistake_is_refused_naming_the_file_the_line_and_the_field(text, line, message):
    with pytest.raises(JobTypeError) as err:
        load_text(text, "studio/sim_render.yaml")
    assert message in str(err.value)
    assert str(err.value).startswith(f"studio/sim_render.yaml:{line}: "), str(err.value)


def test_every_mistake_has_a_message_of_its_own():
    messages = []
    for text, _, _ in MISTAKES:
        with pytest.raises(JobTypeError) as err:
            load_text(text, "f.yaml")
        messages.append(f"{err.value.field}: {err.value.reason}")
    assert len(set(messages)) == len(messages)


def test_a_directory_loads_the_good_files_and_reports_the_bad_ones(tmp_path):
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "bad.yaml").write_text(mutate("version: 2", "version: 0"))
    (tmp_path / "notes.txt").write_text("not a job type")
    types, errors = jobtypes.load_dir(tmp_path)
    assert list(types) == ["sim_render"]
    assert [e.source for e in errors] == [str(tmp_path / "bad.yaml")]


def test_a_studio_directory_adds_types_to_the_built_ins(tmp_path):
    (tmp_path / "sim_render.yaml").write_text(GOOD)
    types = jobtypes.registry(str(tmp_path))
    assert set(types) == {"blender_render", "sleep", "noop", "sim_render"}
    assert jobtypes.task_type("sim_render", str(tmp_path)).steps[0].command == "sim"


@pytest.mark.parametrize(("settings", "field", "reason"), [
    ({"frames": "1-3"}, "settings.cache", "is required"),
    ({"frames": "1-3", "cache": "/c", "quality": "best"}, "settings.quality", "must be one of draft, final"),
    ({"frames": "1-3", "cache": "/c", "seed": 1001}, "settings.seed", "must be at most 1000"),
    ({"frames": "1-3", "cache": "/c", "seed": "7"}, "settings.seed", "must be an integer"),
    ({"frames": "1-3", "cache": "-c"}, "settings.cache", "must not start with '-'"),
    ({"frames": "1-3", "cache": "/c", "env": {"OCIO": "x"}}, "settings.env.OCIO", "no step of this"),
    ({"frames": "1-3", "cache": "/c", "env": {"LD_PRELOAD": "x"}}, "settings.env.LD_PRELOAD", "may not be"),
    ({"frames": "1-3", "cache": "/c", "colour": 1}, "settings.colour", "is not a setting of this task type"),
    ({"frame_start": 3, "frame_end": 1, "cache": "/c"}, "settings.frame_end", "must not be less than"),
])
def test_settings_are_checked_against_the_declaration_naming_the_field(settings, field, reason):
    with pytest.raises(ValidationError) as err:
        load_text(GOOD, "f.yaml").validate(settings)
    assert (err.value.field, reason in err.value.reason) == (field, True), err.value


def test_settings_get_their_defaults_and_the_frames_are_normalised():
    v = load_text(GOOD, "f.yaml").validate({"frames": "1-3,7", "cache": "/c", "env": {"SIM_SEED": "1"}})
    assert v.settings == {"frames": [[1, 3], [7, 7]], "chunk_size": 5, "cache": "/c", "quality": "draft",
                          "env": {"SIM_SEED": "1"}}
    assert (v.frame_start, v.frame_end, v.frames_total) == (1, 7, 4)


def test_a_value_that_would_open_an_argument_with_a_dash_is_refused_unless_the_setting_allows_it():
    text = mutate("  seed: {type: integer, min: 0,", "  seed: {type: integer, min: -5,")
    text = text.replace('args: ["--seed", "{seed}"]', 'args: ["{seed}"]')
    with pytest.raises(ValidationError) as err:
        load_text(text, "f.yaml").validate({"frames": "1", "cache": "/c", "seed": -3})
    assert err.value.field == "settings.seed"
    allowed = text.replace("min: -5,", "min: -5, allow_dash: true,")
    assert load_text(allowed, "f.yaml").validate({"frames": "1", "cache": "/c", "seed": -3})


def test_negative_frames_are_refused_where_a_frame_token_opens_an_argument():
    with pytest.raises(ValidationError) as err:
        load_text(GOOD, "f.yaml").validate({"frames": "-3--1", "cache": "/c"})
    assert err.value.field == "settings.frames"


def test_every_job_type_in_the_docs_loads_and_the_built_in_ones_are_the_shipped_files():
    import re

    text = (DOCS.parent / "jobtypes.md").read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S)
              if b.startswith(("name:", "#")) and "\nsteps:" in b and "[...]" not in b]  # not the sketch
    loaded = {load_text(b, "docs/jobtypes.md").name: b for b in blocks}
    assert {"blender_render", "sleep", "noop", "husk_render", "nuke_comp", "sim_render_encode"} <= set(loaded)
    for jt in jobtypes.registry().values():
        assert loaded[jt.name] == Path(jt.source).read_text(), jt.name
    for name in ("husk", "nuke"):
        jt = load_file(DOCS / f"{name}.yaml")
        assert loaded[jt.name] == (DOCS / f"{name}.yaml").read_text()


def test_a_yaml_boolean_as_a_setting_name_is_explained():
    with pytest.raises(JobTypeError, match="YAML reads on/off/yes/no/true/false as booleans"):
        load_text(GOOD.replace("  seed: {", "  on: {"), "f.yaml")
