"""The gateway is closed by default: tokens, scopes, rate limits, body limits, paths, no leaks."""
from __future__ import annotations

import json

import pytest
from falcon import testing
from peewee import OperationalError

from api_gateway import queries
from api_gateway.app import create_app
from api_gateway.openapi import load_document, operations
from api_gateway.ratelimit import FailureLimiter
from common import auth
from common.config import load_config
from common.db import open_and_migrate
from common.models import Task, Worker, database_proxy
from tests.unit.gateway_support import StubFeed, open_stream

ADMIN = "test-admin-token-0123456789"
NOW = 1_700_000_000.0
# For each scope, a token that has some scope but not that one.
TOO_SMALL = {"read": "agent", "submit": "read", "operate": "submit", "admin": "operate", "agent": "read"}
PUBLIC = {("/health", "GET"), ("/openapi.json", "GET"), ("/docs", "GET")}


class NullPublisher:
    def event(self, message) -> None:
        pass


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def roots(tmp_path):
    root = tmp_path / "storage"
    (root / "shots").mkdir(parents=True)
    (root / "shots" / "a.blend").write_bytes(b"BLENDER")
    return root


@pytest.fixture
def farm(tmp_path, roots):
    """The app, a token per scope, a task and a worker; returns (make_client, tokens, clock)."""
    db = open_and_migrate(f"sqlite:///{tmp_path}/s.db")
    clock = Clock(NOW)
    with database_proxy.connection_context():
        tokens = {scope: auth.create_token(f"{scope}-bot", [scope], now=NOW)[1] for scope in auth.SCOPES}
        Task.create(type="noop", parser="noop", settings={}, frame_start=1, frame_end=1)
        Worker.create(name="w1")
    config = load_config({}, admin_token=ADMIN, storage_roots=(str(roots),), max_body_bytes=4096)

    def make_client(limiter=None):
        limiter = FailureLimiter(1000.0, 100_000) if limiter is None else limiter
        return testing.TestClient(create_app(config, NullPublisher(), clock=clock, limiter=limiter,
                                             feed=StubFeed()))
    yield make_client, tokens, clock
    db.close()


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def secured_operations():
    return [(path, method, op["security"][0]["bearerAuth"][0])
            for path, method, op in operations(load_document()) if op.get("security")]


def concrete(path):
    return (path.replace("{task_id}", "1").replace("{worker_id}", "1").replace("{token_id}", "1")
            .replace("{chunk_id}", "1"))


def assert_error(result, status, code):
    assert result.status_code == status, result.text
    assert result.headers["content-type"].startswith("application/json")
    assert result.json["error"]["code"] == code and result.json["error"]["message"]


# ---------------------------------------------------------------- every endpoint


@pytest.mark.parametrize(("path", "method", "scope"), secured_operations())
def test_every_endpoint_refuses_a_request_without_a_token_or_with_a_wrong_one(farm, path, method, scope):
    make_client, tokens, _ = farm
    client = make_client()
    missing = client.simulate_request(method, concrete(path))
    assert_error(missing, 401, "unauthorized")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    for header in (bearer("corral_wrong"), bearer(tokens[scope] + "x"), {"Authorization": tokens[scope]},
                   {"Authorization": f"Basic {tokens[scope]}"}):
        assert_error(client.simulate_request(method, concrete(path), headers=header), 401, "unauthorized")


@pytest.mark.parametrize(("path", "method", "scope"), secured_operations())
def test_every_endpoint_refuses_a_token_without_its_scope(farm, path, method, scope):
    make_client, tokens, _ = farm
    result = make_client().simulate_request(method, concrete(path), headers=bearer(tokens[TOO_SMALL[scope]]))
    assert_error(result, 403, "forbidden")
    assert scope in result.json["error"]["message"]


@pytest.mark.parametrize(("path", "method", "scope"), secured_operations())
def test_every_endpoint_lets_a_token_with_its_scope_through(farm, path, method, scope):
    make_client, tokens, _ = farm
    if path == "/events":  # a stream does not end by itself: read its first piece
        status, _, _ = open_stream(make_client().app, path, bearer(tokens[scope]))
        assert status.startswith("200"), status
        return
    result = make_client().simulate_request(method, concrete(path), headers=bearer(tokens[scope]))
    assert result.status_code not in (401, 403, 429), result.text


def test_health_openapi_and_docs_need_no_token(farm):
    make_client, _, _ = farm
    client = make_client()
    for path, method in PUBLIC:
        assert client.simulate_request(method, path).status_code == 200


def test_an_agent_token_can_register_a_worker_and_do_nothing_else(farm):
    make_client, tokens, _ = farm
    client = make_client()
    agent = bearer(tokens["agent"])
    made = client.simulate_post("/workers", json={"hostname": "n7", "system": "Linux"}, headers=agent)
    assert made.status_code == 201
    assert client.simulate_post("/workers", json={"hostname": "n8", "system": "Linux"},
                                headers=bearer(tokens["operate"])).status_code == 403
    assert client.simulate_get("/workers", headers=agent).status_code == 403
    assert client.simulate_post("/tasks", json={"type": "noop", "settings": {"frames": "1"}},
                                headers=agent).status_code == 403


def test_a_submit_token_submits_and_reads_but_cannot_operate(farm):
    make_client, tokens, _ = farm
    client = make_client()
    submit = bearer(tokens["submit"])
    noop = {"type": "noop", "settings": {"frames": "1-2"}}
    made = client.simulate_post("/tasks", json=noop, headers=submit)
    assert made.status_code == 202
    assert client.simulate_get(f"/tasks/{made.json['id']}", headers=submit).status_code == 200
    assert client.simulate_delete(f"/tasks/{made.json['id']}", headers=submit).status_code == 403
    operate = bearer(tokens["operate"])
    assert client.simulate_delete(f"/tasks/{made.json['id']}", headers=operate).status_code == 202


# ---------------------------------------------------------------- tokens over REST


def test_an_admin_creates_lists_and_revokes_tokens_over_rest(farm):
    make_client, _, clock = farm
    client = make_client()
    admin = bearer(ADMIN)
    made = client.simulate_post("/tokens", json={"name": "alice", "scopes": ["submit"], "expires_in_s": 3600},
                                headers=admin)
    assert made.status_code == 201
    secret = made.json["token"]
    assert made.json["expires_at"] == NOW + 3600 and made.json["state"] == "active"
    assert client.simulate_get("/tasks", headers=bearer(secret)).status_code == 200
    listing = client.simulate_get("/tokens", headers=admin)
    assert "alice" in listing.text and secret not in listing.text and "token_hash" not in listing.text
    revoked = client.simulate_delete(f"/tokens/{made.json['id']}", headers=admin)
    assert revoked.status_code == 200 and revoked.json["state"] == "revoked"
    assert_error(client.simulate_get("/tasks", headers=bearer(secret)), 401, "unauthorized")
    assert_error(client.simulate_delete("/tokens/999", headers=admin), 404, "not_found")


def test_a_token_past_its_expiry_gets_401(farm):
    make_client, _, clock = farm
    client = make_client()
    made = client.simulate_post("/tokens", json={"name": "brief", "scopes": ["read"], "expires_in_s": 60},
                                headers=bearer(ADMIN)).json
    assert client.simulate_get("/tasks", headers=bearer(made["token"])).status_code == 200
    clock.now = NOW + 61
    assert_error(client.simulate_get("/tasks", headers=bearer(made["token"])), 401, "unauthorized")


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "x", "scopes": ["root"]}, "scopes"),
    ({"name": "-x", "scopes": ["read"]}, "name"),
    ({"scopes": ["read"]}, "name"),
    ({"name": "x", "scopes": ["read"], "expires_in_s": "soon"}, "expires_in_s"),
    ({"name": "x", "scopes": ["read"], "expires_in_s": 0}, "expires_in_s"),
    ({"name": "x", "scopes": ["read"], "admin": True}, "admin"),
])
def test_bad_token_requests_name_the_field(farm, body, field):
    make_client, _, _ = farm
    result = make_client().simulate_post("/tokens", json=body, headers=bearer(ADMIN))
    assert_error(result, 400, "invalid")
    assert result.json["error"]["field"] == field


# ---------------------------------------------------------------- rate limiting


def test_failed_authentications_are_rate_limited_per_address_with_retry_after(farm):
    make_client, tokens, _ = farm
    now = [0.0]
    client = make_client(FailureLimiter(1.0, 3, clock=lambda: now[0]))
    for _ in range(3):
        assert client.simulate_get("/tasks", headers=bearer("corral_guess")).status_code == 401
    limited = client.simulate_get("/tasks", headers=bearer("corral_guess"))
    assert_error(limited, 429, "rate_limited")
    assert int(limited.headers["retry-after"]) >= 1
    # While limited, even the right token is not checked: guessing gains nothing.
    assert client.simulate_get("/tasks", headers=bearer(tokens["read"])).status_code == 429
    other = client.simulate_get("/tasks", headers=bearer(tokens["read"]), remote_addr="10.0.0.9")
    assert other.status_code == 200
    assert client.simulate_get("/health").status_code == 200
    now[0] += 1.0
    assert client.simulate_get("/tasks", headers=bearer(tokens["read"])).status_code == 200


def test_the_limiter_remembers_a_bounded_number_of_addresses():
    limiter = FailureLimiter(1.0, 2, max_clients=100, clock=lambda: 0.0)
    for i in range(10_000):
        limiter.failed(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
    assert len(limiter) == 100


def test_missing_tokens_and_scope_refusals_do_not_count_as_guesses(farm):
    make_client, tokens, _ = farm
    client = make_client(FailureLimiter(0.001, 1, clock=lambda: 0.0))
    for _ in range(5):
        assert client.simulate_get("/tasks").status_code == 401
        assert client.simulate_get("/tokens", headers=bearer(tokens["read"])).status_code == 403
    assert client.simulate_get("/tasks", headers=bearer(tokens["read"])).status_code == 200


# ---------------------------------------------------------------- bodies and errors


def test_a_body_over_the_configured_size_gets_413_before_it_is_read(farm):
    make_client, _, _ = farm
    client = make_client()
    big = json.dumps({"type": "noop", "settings": {"frames": "1"}, "task_id": "x" * 5000})
    for path, method in (("/tasks", "POST"), ("/tasks/1", "PATCH"), ("/workers", "POST"),
                         ("/tokens", "POST")):
        result = client.simulate_request(method, path, body=big, headers={
            **bearer(ADMIN), "Content-Type": "application/json"})
        assert_error(result, 413, "too_large")
    small = client.simulate_post("/tasks", json={"type": "noop", "settings": {"frames": "1"}},
                                 headers=bearer(ADMIN))
    assert small.status_code == 202


@pytest.mark.parametrize(("raw", "content_type", "field"), [
    (b'{"type": "noop", "settings": ', "application/json", "body"),
    (b'{"type": "nope", "settings": {"frames": "1"}}', "application/json", "type"),
    (b'{"type": "noop", "parser": "ffmpeg", "settings": {"frames": "1"}}', "application/json", "parser"),
    (b'{"type": "noop", "settings": {"frames": "1"}, "priority": "9"}', "application/json", "priority"),
    (b'type=noop&settings=%7B%22frames%22%3A%221%22%7D&priority=high', "application/x-www-form-urlencoded",
     "priority"),
    (b'type=noop&type=sleep&settings=%7B%7D', "application/x-www-form-urlencoded", "type"),
    (b'type=noop&settings=%7Bnot+json', "application/x-www-form-urlencoded", "settings"),
])
def test_bad_json_unknown_types_and_bad_form_fields_are_400_naming_the_field(farm, raw, content_type, field):
    make_client, _, _ = farm
    result = make_client().simulate_post("/tasks", body=raw, headers={
        **bearer(ADMIN), "Content-Type": content_type})
    assert_error(result, 400, "invalid")
    assert result.json["error"]["field"] == field


def test_a_bug_answers_500_without_traceback_or_paths(farm, monkeypatch):
    make_client, _, _ = farm

    def explode(query):
        raise RuntimeError("boom in /srv/corral/secret/module.py")
    monkeypatch.setattr(queries, "list_tasks", explode)
    result = make_client().simulate_get("/tasks", headers=bearer(ADMIN))
    assert_error(result, 500, "internal")
    assert "/srv" not in result.text and "Traceback" not in result.text and "boom" not in result.text


def test_a_database_failure_answers_503_without_the_drivers_message(farm, monkeypatch):
    make_client, _, _ = farm

    def unavailable(query):
        raise OperationalError("unable to open database file /var/lib/corral/corral.db")
    monkeypatch.setattr(queries, "list_tasks", unavailable)
    result = make_client().simulate_get("/tasks", headers=bearer(ADMIN))
    assert_error(result, 503, "database_unavailable")
    assert "/var/lib" not in result.text and "unable to open" not in result.text


# ---------------------------------------------------------------- paths at submit time


def blender(**settings):
    return {"type": "blender_render", "settings": {"frames": "1-2", **settings}}


@pytest.mark.parametrize(("make_settings", "field"), [
    (lambda r: {"filepath": "/etc/passwd", "output_path": f"{r}/o/f_##"}, "settings.filepath"),
    (lambda r: {"filepath": f"{r}/shots/../../x.blend", "output_path": f"{r}/o/f_##"}, "settings.filepath"),
    (lambda r: {"filepath": "shots/a.blend", "output_path": f"{r}/o/f_##"}, "settings.filepath"),
    (lambda r: {"filepath": f"{r}/shots/a.blend", "output_path": "/tmp/evil/f_##"}, "settings.output_path"),
    (lambda r: {"filepath": f"{r}/shots/a.blend", "output_path": "//../../../f_##"}, "settings.output_path"),
    (lambda r: {"filepath": f"{r}/link/a.blend", "output_path": f"{r}/o/f_##"}, "settings.filepath"),
    (lambda r: {"filepath": f"{r}/shots/a.blend", "output_path": f"{r}/link/f_####"}, "settings.output_path"),
])
def test_paths_outside_the_storage_roots_are_refused_at_submit(farm, roots, tmp_path, make_settings, field):
    make_client, _, _ = farm
    outside = tmp_path / "outside"
    outside.mkdir()
    (roots / "link").symlink_to(outside, target_is_directory=True)
    body = blender(**make_settings(roots))
    result = make_client().simulate_post("/tasks", json=body, headers=bearer(ADMIN))
    assert_error(result, 400, "invalid")
    assert result.json["error"]["field"] == field
    assert str(outside) not in result.text
    with database_proxy.connection_context():
        assert Task.select().where(Task.type == "blender_render").count() == 0


def test_paths_inside_the_storage_roots_are_accepted_including_blend_relative_output(farm, roots):
    make_client, _, _ = farm
    client = make_client()
    for output in (f"{roots}/renders/f_####", "//renders/f_####"):
        body = blender(filepath=f"{roots}/shots/a.blend", output_path=output)
        result = client.simulate_post("/tasks", json=body, headers=bearer(ADMIN))
        assert result.status_code == 202, result.text


def test_the_preview_never_serves_a_reported_file_outside_the_roots(farm, tmp_path):
    from common.models import Chunk

    make_client, _, _ = farm
    stolen = tmp_path / "secret.png"
    stolen.write_bytes(b"\x89PNG private")
    with database_proxy.connection_context():
        Chunk.create(task=1, index=0, command="noop", frames=[[1, 1]], frame_count=1, files=[str(stolen)])
    result = make_client().simulate_get("/tasks/1/preview", headers=bearer(ADMIN))
    assert_error(result, 409, "conflict")
    assert b"private" not in result.content
