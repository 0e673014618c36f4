"""No input, however hostile, makes the gateway answer with a 5xx."""
from __future__ import annotations

import json
import random

import pytest
from falcon import testing

from api_gateway.app import create_app
from common.config import load_config
from common.db import open_and_migrate
from common.models import Task, Worker, database_proxy

# The gateway is closed by default: these tests act as the admin (docs/security.md).
ADMIN = "test-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
CONFIG = load_config({}, admin_token=ADMIN, storage_roots=("/",))


JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class NullPublisher:
    def event(self, message) -> None:
        pass


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile")
    db = open_and_migrate(f"sqlite:///{path}/c.db")
    with database_proxy.connection_context():
        Worker.create(name="w1", hostname="w1", current_task=1)
        Task.create(type="noop", parser="noop", settings={}, frame_start=1, frame_end=1)
    yield testing.TestClient(create_app(CONFIG, NullPublisher()), headers=AUTH)
    db.close()


def _junk(rng: random.Random, depth: int = 0):
    choices = [None, True, 0, -1, 10**300, -(10**300), 1e308, "", "x" * 5000, "\u0000", "\ud800",
               "-rf", "1-2", "émoji 🎬", 3.5]
    if depth < 3:
        choices += [[_junk(rng, depth + 1) for _ in range(3)], {"a": _junk(rng, depth + 1)}]
    return rng.choice(choices)


FIELDS = ("type", "settings", "parser", "priority", "task_id", "pool", "max_retries", "status",
          "hostname", "system", "name", "ip_address", "port")


def _json_bodies() -> list[bytes]:
    rng = random.Random(1234)
    bodies = [json.dumps({f: None for f in FIELDS}).encode()]
    for _ in range(60):
        body = {f: _junk(rng) for f in rng.sample(FIELDS, rng.randint(1, len(FIELDS)))}
        bodies.append(json.dumps(body).encode())
    bodies += [json.dumps(v).encode() for v in ([], [1, 2], "text", 7, None, True, {"": ""})]
    bodies += [
        b"\xff\xfe\xfa not utf-8", b"\xef\xbb\xbf{}", b'{"type": NaN}', b'{"priority": Infinity}',
        b'{"a": ' * 5000 + b"1" + b"}" * 5000, b"[" * 100_000, b'{"priority": ' + b"9" * 5000 + b"}",
        b'{"type": "\\ud800"}', b'{"type": "noop", "settings": "\\ud83c"}', b'{"\\ud800": 1}',
        b'{"type":"noop","settings":{"frames":"' + b"1" * 5000 + b'"}}',
        b'{"type":"noop","settings":{"frames":"1-' + b"9" * 30 + b'"}}',
        b'{"type":"noop","settings":{"frame_start":1,"frame_end":' + b"9" * 4000 + b"}}",
        b'{"type":"blender_render","settings":{"frames":"1","filepath":"a","output_path":"b",'
        b'"env":{"A":1,"":2,"\\u00e9":"x"}}}',
        b'{"type":"sleep","settings":{"frames":"1","seconds_per_frame":1e999}}',
        b'{"type":"noop","settings":"{\\"frames\\": \\"1\\", \\"chunk_size\\": 1e999}"}',
        b'{"type":"noop","settings":{"frames":"1"},"task_id":' + b"9" * 4000 + b"}",
        b'{"type":"noop","settings":{"frames":"1"},"task_id":"\\u0000"}',
        b'{"type":"noop","settings":{"frames":[[1,2]]}}',
        b'{"hostname":"h","system":"s","port":-0.0}',
        b'{"hostname":"h","system":"s","ip_address":"::ffff:1.2.3.4%eth0"}',
        b"", b"   ", b"null",
    ]
    return bodies


FORM_BODIES = [
    b"type=noop&settings=%7B%7D&priority=%FF", b"type=noop&type=sleep", b"%ZZ=1&&&=&",
    b"settings=" + b"%5B" * 1000, b"priority=99999999999999999999999999", b"a=1&" * 500,
    b"type=noop&settings=%7B%22frames%22%3A%221%22%7D&task_id=%00", b"\xff\xfe", b"status=paused",
    b"hostname=h&system=s&port=1e3", b"status=disabled",
]

ROUTES = [("POST", "/tasks"), ("PATCH", "/tasks/1"), ("DELETE", "/tasks/1"), ("GET", "/tasks/1"),
          ("GET", "/tasks/1/chunks"), ("POST", "/workers"), ("PATCH", "/workers/1"),
          ("GET", "/workers"), ("GET", "/workers/1"), ("GET", "/health"), ("GET", "/tasks"),
          ("PUT", "/tasks/1"), ("POST", "/tasks/1/chunks")]


@pytest.mark.parametrize("method, path", ROUTES)
def test_no_hostile_body_makes_any_route_answer_5xx(client, method, path):
    cases = [(body, JSON) for body in _json_bodies()] + [(body, FORM) for body in FORM_BODIES]
    cases += [(b"{}", {"Content-Type": "application/xml"}), (b"{}", {}), (b"x" * (1024 * 1024 + 1), JSON),
              (b"{}", {"Content-Type": "application/json; charset=latin-1"})]
    for body, headers in cases:
        result = client.simulate_request(method, path, body=body, headers=headers)
        assert result.status_code < 500, (body[:200], headers, result.text)
        assert result.status_code == 204 or result.json is not None


@pytest.mark.parametrize("query", [
    "status=%FF", "limit=%00", "offset=1e3", "status=queued&status=failed", "type=&status=",
    "limit=" + "9" * 5000, "status=" + ",".join(["queued"] * 2000), "type=noop%00", "x=" * 1000,
])
def test_no_hostile_query_string_makes_the_listing_answer_5xx(client, query):
    result = client.simulate_get("/tasks", query_string=query)
    assert result.status_code < 500, result.text


@pytest.mark.parametrize("path", [
    "/tasks/" + "9" * 5000, "/tasks/%00", "/tasks/%FF", "/workers/1%2F2", "/tasks/+1", "/tasks/ 1",
    "/" + "a/" * 1000, "/tasks/1/chunks/../../workers", "/tasks/１",
])
def test_no_hostile_path_makes_the_gateway_answer_5xx(client, path):
    for method in ("GET", "PATCH", "DELETE", "POST"):
        result = client.simulate_request(method, path, json={})
        assert result.status_code < 500, (method, path, result.text)


def test_a_bad_content_length_header_is_a_400_not_a_500(client):
    # The test client's WSGI validator refuses such a header, so call the app directly.
    environ = testing.create_environ(path="/tasks", method="POST", body=b"{}", headers=JSON)
    environ["CONTENT_LENGTH"] = "lots"
    statuses = []
    body = b"".join(client.app(environ, lambda status, headers: statuses.append(status)))
    assert statuses[0].startswith("400")
    assert json.loads(body)["error"]["code"] == "invalid"
