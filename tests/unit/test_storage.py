"""Storage roots: paths must resolve inside them after '..' and symbolic links."""
from __future__ import annotations

import os

import pytest

from common import jobtypes
from common.config import load_config
from common.errors import ConfigError, ValidationError
from common.storage import check_params, inside_roots


@pytest.fixture
def farm(tmp_path):
    """A storage root with a shot in it, and a secret directory beside it."""
    root = tmp_path / "storage"
    (root / "shots").mkdir(parents=True)
    (root / "shots" / "010.blend").write_bytes(b"BLENDER")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "passwd").write_text("root:x")
    return root, secret


def refused(path, roots, **kw):
    with pytest.raises(ValidationError) as caught:
        inside_roots(path, roots, "settings.filepath", **kw)
    assert caught.value.field == "settings.filepath"
    return caught.value.reason


def test_a_path_inside_a_root_is_returned_resolved(farm):
    root, _ = farm
    expected = os.path.realpath(root / "shots/010.blend")
    assert inside_roots(f"{root}/shots/./010.blend", [str(root)]) == expected
    assert inside_roots(str(root), [str(root)]) == os.path.realpath(root)


def test_dot_dot_that_climbs_out_of_the_root_is_refused(farm):
    root, secret = farm
    reason = refused(f"{root}/shots/../../secret/passwd", [str(root)])
    assert "storage roots" in reason and str(secret) not in reason


def test_a_sibling_directory_sharing_the_roots_prefix_is_outside(farm, tmp_path):
    root, _ = farm
    (tmp_path / "storage-evil").mkdir()
    refused(str(tmp_path / "storage-evil" / "x.blend"), [str(root)])


def test_an_absolute_path_elsewhere_is_refused(farm):
    root, _ = farm
    refused("/etc/passwd", [str(root)])


def test_a_symlink_under_the_root_that_points_out_is_refused(farm):
    root, secret = farm
    (root / "shots" / "link.blend").symlink_to(secret / "passwd")
    (root / "escape").symlink_to(secret, target_is_directory=True)
    refused(str(root / "shots" / "link.blend"), [str(root)])
    refused(str(root / "escape" / "passwd"), [str(root)])
    refused(str(root / "escape" / "new" / "frame_####"), [str(root)])


def test_a_symlink_that_stays_inside_and_a_symlinked_root_are_fine(farm, tmp_path):
    root, _ = farm
    (root / "latest.blend").symlink_to(root / "shots" / "010.blend")
    assert inside_roots(str(root / "latest.blend"), [str(root)]).endswith("shots/010.blend")
    alias = tmp_path / "alias"
    alias.symlink_to(root, target_is_directory=True)
    assert inside_roots(str(alias / "shots" / "010.blend"), [str(root)])
    assert inside_roots(str(root / "shots" / "010.blend"), [str(alias)])


def test_relative_paths_and_nul_are_refused(farm):
    root, _ = farm
    assert "absolute" in refused("shots/010.blend", [str(root)])
    assert "absolute" in refused("//renders/f_##", [str(root)])  # '//' needs a .blend
    assert "NUL" in refused(f"{root}/a\x00b", [str(root)])
    assert refused("", [str(root)]) and refused(None, [str(root)])


def test_a_blender_relative_output_path_resolves_from_the_blend_files_folder(farm):
    root, _ = farm
    blend = str(root / "shots" / "010.blend")
    out = inside_roots("//renders/f_####", [str(root)], "settings.output_path", blend_file=blend)
    assert out == os.path.join(os.path.realpath(root / "shots"), "renders", "f_####")
    with pytest.raises(ValidationError) as caught:
        inside_roots("//../../secret/f_##", [str(root)], "settings.output_path", blend_file=blend)
    assert caught.value.field == "settings.output_path"


def test_hash_padding_is_kept_and_only_the_directory_is_resolved(farm):
    root, _ = farm
    (root / "out").mkdir()
    assert inside_roots(f"{root}/out/../out/frame_####.png", [str(root)]) == \
        os.path.join(os.path.realpath(root / "out"), "frame_####.png")


def test_any_of_several_roots_will_do(farm, tmp_path):
    root, _ = farm
    other = tmp_path / "other"
    other.mkdir()
    assert inside_roots(str(other / "x.blend"), [str(root), str(other)])


def paths(**named: str) -> dict:
    return {"paths": [{"setting": k, "path": v, "access": "read" if k == "filepath" else "write"}
                      for k, v in named.items()]}


def test_chunk_params_are_checked_with_output_and_video_paths(farm):
    root, _ = farm
    blend = str(root / "shots" / "010.blend")
    resolved = check_params(paths(filepath=blend, output_path=f"{root}/shots/r/f_##",
                                  video_path=f"{root}/r/f.mp4"), [str(root)])
    assert set(resolved) == {"filepath", "output_path", "video_path"}
    with pytest.raises(ValidationError) as caught:
        check_params(paths(filepath=blend, output_path="/tmp/f_##"), [str(root)])
    assert caught.value.field == "params.paths.output_path"
    with pytest.raises(ValidationError) as caught:  # the compiler resolved '//' already: never here
        check_params(paths(output_path="//r/f_##"), [str(root)])
    assert caught.value.field == "params.paths.output_path"


def test_blender_settings_are_checked_against_the_roots_but_sleep_has_no_paths(farm):
    root, _ = farm
    blender = jobtypes.task_type("blender_render")
    blend = str(root / "shots/010.blend")
    ok = blender.validate({"frames": "1", "filepath": blend, "output_path": "//o/f_#"})
    jobtypes.check_paths(blender, ok.settings, (str(root),))
    bad = blender.validate({"frames": "1", "filepath": "/etc/passwd", "output_path": "//o/f_#"})
    with pytest.raises(ValidationError, match="settings.filepath"):
        jobtypes.check_paths(blender, bad.settings, (str(root),))
    jobtypes.check_paths(jobtypes.task_type("sleep"), {"frames": [[1, 1]]}, (str(root),))


def test_storage_roots_come_from_the_environment_or_default_to_the_data_directory(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    config = load_config({"CORRAL_STORAGE_ROOTS": f"{a}{os.pathsep}{b}"})
    assert config.resolved_storage_roots == (str(a), str(b))
    default = load_config({"CORRAL_DATA_DIR": str(tmp_path / "var")})
    assert default.resolved_storage_roots == (str(tmp_path / "var" / "storage"),)
    with pytest.raises(ConfigError, match="absolute"):
        load_config({"CORRAL_STORAGE_ROOTS": "relative/dir"})
