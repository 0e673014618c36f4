"""GET /jobtypes, submitting a studio's own type, and each chunk's step in the task views."""
from __future__ import annotations

import pytest
from falcon import testing

from api_gateway.app import create_app
from common.config import load_config
from common.db import open_and_migrate
from common.models import Chunk, database_proxy
from tests.unit.gateway_support import ADMIN, AUTH, NOW, RecordingPublisher
from tests.unit.test_jobtypes import GOOD


@pytest.fixture
def studio(tmp_path):
    types = tmp_path / "types"
    types.mkdir()
    (types / "sim_render.yaml").write_text(GOOD)
    (types / "broken.yaml").write_text("name: broken\nversion: 1\nsettings: {}\nsteps: []\n")
    db = open_and_migrate(f"sqlite:///{tmp_path}/c.db")
    config = load_config({}, admin_token=ADMIN, storage_roots=(str(tmp_path),), job_types_dir=str(types))
    app = create_app(config, RecordingPublisher(), clock=lambda: NOW)
    yield testing.TestClient(app, headers=AUTH), tmp_path
    db.close()


def test_the_list_names_the_built_in_and_the_studio_types_with_their_settings_schema(studio):
    client, _ = studio
    result = client.simulate_get("/jobtypes")
    assert result.status_code == 200
    listed = {t["name"]: t for t in result.json["jobtypes"]}
    assert set(listed) == {"blender_render", "noop", "sleep", "sim_render"}  # broken.yaml is refused
    sim = listed["sim_render"]
    assert sim["settings"]["quality"] == {"type": "choice", "required": False, "default": "draft",
                                          "choices": ["draft", "final"]}
    assert sim["settings"]["frames"]["also_as"] == ["frame_start", "frame_end"]
    assert [(s["name"], s["command"], s["after"], s["chunks"]) for s in sim["steps"]] == [
        ("sim", "sim", [], "single"), ("render", "renderer", ["sim"], "frames")]
    assert "args" not in sim["steps"][0]


def test_one_type_shows_its_argument_templates(studio):
    client, _ = studio
    blender = client.simulate_get("/jobtypes/blender_render").json
    assert blender["steps"][1]["when"] == ["video"]
    assert blender["steps"][0]["args"][0] == "{filepath}"
    assert blender["settings"]["filepath"] == {"type": "path", "required": True, "label": "Blend file",
                                               "access": "read", "min_length": 1, "max_length": 4096,
                                               "allow_dash": False}
    missing = client.simulate_get("/jobtypes/nope")
    assert missing.status_code == 404 and missing.json["error"]["code"] == "not_found"


def test_a_studio_type_is_validated_from_its_file_naming_the_field(studio):
    client, root = studio
    bad = client.simulate_post("/tasks", json={"type": "sim_render", "settings": {
        "frames": "1-4", "cache": f"{root}/cache", "quality": "ultra"}})
    assert bad.status_code == 400 and bad.json["error"]["field"] == "settings.quality"
    outside = client.simulate_post("/tasks", json={"type": "sim_render", "settings": {
        "frames": "1-4", "cache": "/etc/cache"}})
    assert outside.status_code == 400 and outside.json["error"]["field"] == "settings.cache"
    unknown = client.simulate_post("/tasks", json={"type": "broken", "settings": {}})
    assert unknown.status_code == 400 and unknown.json["error"]["field"] == "type"
    ok = client.simulate_post("/tasks", json={"type": "sim_render", "settings": {
        "frames": "1-4", "cache": f"{root}/cache"}})
    assert ok.status_code == 202, ok.text
    assert ok.json["parser"] == "noop" and ok.json["settings"]["chunk_size"] == 5


def test_a_task_and_its_chunks_show_each_chunks_step(studio):
    client, root = studio
    task_id = client.simulate_post("/tasks", json={"type": "sim_render", "settings": {
        "frames": "1-4", "cache": f"{root}/cache"}}).json["id"]
    with database_proxy.connection_context():
        Chunk.create(task=task_id, index=0, command="sim", frames=[], frame_count=0, status="completed",
                     step="sim")
        for i in (1, 2):
            Chunk.create(task=task_id, index=i, command="renderer", frames=[[i, i]], frame_count=1,
                         status="pending" if i == 1 else "running", step="render", depends_on=[0])
    task = client.simulate_get(f"/tasks/{task_id}").json
    assert task["steps"] == [
        {"name": "sim", "command": "sim", "chunks_total": 1, "chunks_by_status": {"completed": 1}},
        {"name": "render", "command": "renderer", "chunks_total": 2,
         "chunks_by_status": {"pending": 1, "running": 1}}]
    chunks = client.simulate_get(f"/tasks/{task_id}/chunks").json["chunks"]
    assert [(c["index"], c["step"]) for c in chunks] == [(0, "sim"), (1, "render"), (2, "render")]
