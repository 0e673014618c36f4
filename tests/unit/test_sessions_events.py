"""Web UI sessions and CSRF on the real app, and the fan-out of change events to /events streams."""
from __future__ import annotations

import json

import pytest
from falcon import testing

from api_gateway.app import create_app
from api_gateway.changefeed import RESET, EventFilter, Fanout
from api_gateway.stream import format_event
from common import auth, sessions
from common.db import open_and_migrate
from common.models import Task, database_proxy
from tests.unit.gateway_support import ADMIN, CONFIG, RecordingPublisher, StubFeed, open_stream


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def web(tmp_path):
    """The app without default headers: a browser, holding cookies only."""
    db = open_and_migrate(f"sqlite:///{tmp_path}/w.db")
    clock, feed, publisher = Clock(), StubFeed(), RecordingPublisher()
    with database_proxy.connection_context():
        task = Task.create(type="noop", parser="noop", settings={}, frame_start=1, frame_end=1)
    app = create_app(CONFIG, publisher, clock=clock, feed=feed)
    yield testing.TestClient(app), clock, feed, publisher, task.id
    db.close()


def login(client, **fields):
    result = client.simulate_post("/session", json=fields)
    cookie = result.cookies.get(sessions.COOKIE)
    return result, ({sessions.COOKIE: cookie.value} if cookie else {})


def test_a_valid_token_starts_an_httponly_strict_session_and_a_wrong_one_is_refused(web):
    client, *_ = web
    wrong, _ = login(client, token="corral_wrong")
    assert wrong.status_code == 401 and "not valid" in wrong.json["error"]["message"]
    assert sessions.COOKIE not in wrong.cookies
    right, cookies = login(client, token=ADMIN)
    assert right.status_code == 201
    cookie = right.cookies[sessions.COOKIE]
    assert cookie.http_only and cookie.same_site == "Strict" and cookie.path == "/"
    assert not cookie.secure  # plain HTTP here; Secure over HTTPS
    assert ADMIN not in cookie.value
    me = client.simulate_get("/session", cookies=cookies)
    assert me.status_code == 200 and me.json["csrf_token"] == right.json["csrf_token"]
    assert "admin" in me.json["scopes"]


def test_a_change_with_the_cookie_needs_the_csrf_header(web):
    client, _, _, publisher, task_id = web
    created, cookies = login(client, token=ADMIN)
    without = client.simulate_patch(f"/tasks/{task_id}", json={"priority": 10}, cookies=cookies)
    assert without.status_code == 403 and "X-CSRF-Token" in without.json["error"]["message"]
    forged = client.simulate_patch(f"/tasks/{task_id}", json={"priority": 10}, cookies=cookies,
                                   headers={"X-CSRF-Token": "guessed"})
    assert forged.status_code == 403
    assert publisher.sent == []
    ok = client.simulate_patch(f"/tasks/{task_id}", json={"priority": 10}, cookies=cookies,
                               headers={"X-CSRF-Token": created.json["csrf_token"]})
    assert ok.status_code == 204 and publisher.sent[0].priority == 10
    # Reads need no CSRF token; bearer requests never do.
    assert client.simulate_get(f"/tasks/{task_id}", cookies=cookies).status_code == 200
    bearer = client.simulate_patch(f"/tasks/{task_id}", json={"priority": 20},
                                   headers={"Authorization": f"Bearer {ADMIN}"})
    assert bearer.status_code == 204


def test_a_read_session_is_refused_actions_and_a_revoked_token_ends_its_sessions(web):
    client, clock, _, _, task_id = web
    with database_proxy.connection_context():
        row, secret = auth.create_token("viewer", ["read"], now=clock.now)
    created, cookies = login(client, token=secret)
    csrf = {"X-CSRF-Token": created.json["csrf_token"]}
    assert created.json["scopes"] == ["read"]
    refused = client.simulate_delete(f"/tasks/{task_id}", cookies=cookies, headers=csrf)
    assert refused.status_code == 403 and "operate" in refused.json["error"]["message"]
    with database_proxy.connection_context():
        auth.revoke_token(row.id, clock.now)
    assert client.simulate_get("/tasks", cookies=cookies).status_code == 401


def test_logout_deletes_the_session_and_an_expired_session_is_refused(web):
    client, clock, *_ = web
    created, cookies = login(client, token=ADMIN)
    csrf = {"X-CSRF-Token": created.json["csrf_token"]}
    out = client.simulate_delete("/session", cookies=cookies, headers=csrf)
    assert out.status_code == 204
    assert client.simulate_get("/session", cookies=cookies).status_code == 401
    _, cookies = login(client, token=ADMIN)
    clock.now += sessions.SESSION_TTL_S + 1
    assert client.simulate_get("/session", cookies=cookies).status_code == 401


def test_a_login_code_works_once_and_not_after_it_expires(web):
    client, clock, *_ = web
    admin = auth.Principal(auth.ENV_ADMIN_NAME, frozenset({auth.ADMIN}))
    with database_proxy.connection_context():
        code = sessions.issue_login_code(admin, now=clock.now)
        late = sessions.issue_login_code(admin, now=clock.now - sessions.LOGIN_CODE_TTL_S - 1)
    first, cookies = login(client, code=code)
    assert first.status_code == 201 and cookies
    again, _ = login(client, code=code)
    assert again.status_code == 401 and "not valid any more" in again.json["error"]["message"]
    expired, _ = login(client, code=late)
    assert expired.status_code == 401


@pytest.mark.parametrize("body", [{}, {"token": "a", "code": "b"}, {"token": 5}, {"user": "x"}])
def test_a_malformed_login_is_a_400_naming_the_field(web, body):
    client, *_ = web
    result = client.simulate_post("/session", json=body)
    assert result.status_code == 400 and result.json["error"]["field"]


def test_fanout_sends_each_stream_only_what_its_filter_asks_for():
    fanout = Fanout()
    of_task = fanout.subscribe(EventFilter(task=3))
    workers = fanout.subscribe(EventFilter(types=frozenset({"worker"})))
    everything = fanout.subscribe(EventFilter())
    fanout.publish({"type": "chunk", "id": 8, "task": 3})
    fanout.publish({"type": "task", "id": 4, "task": 4})
    fanout.publish({"type": "worker", "id": 1, "name": "n1"})
    assert [c for _, c in _drain(of_task)] == [{"type": "chunk", "id": 8, "task": 3}]
    assert [c["type"] for _, c in _drain(workers)] == ["worker"]
    assert [c["type"] for _, c in _drain(everything)] == ["chunk", "task", "worker"]


def test_a_reconnecting_stream_gets_what_it_missed_or_a_reset():
    fanout = Fanout(ring_size=3)
    first = fanout.subscribe(EventFilter())
    ids = [fanout.publish({"type": "task", "id": n, "task": n}) for n in range(1, 5)]
    fanout.unsubscribe(first)
    caught_up = fanout.subscribe(EventFilter(), last_event_id=ids[1])
    assert [c["id"] for _, c in _drain(caught_up)] == [3, 4]
    too_old = fanout.subscribe(EventFilter(), last_event_id=ids[0].replace(".1", ".0"))
    assert _drain(too_old) == [(None, RESET)]
    other_process = fanout.subscribe(EventFilter(), last_event_id="abcdef01.2")
    assert _drain(other_process) == [(None, RESET)]


def test_a_slow_stream_gets_one_reset_instead_of_an_endless_backlog():
    fanout = Fanout()
    slow = fanout.subscribe(EventFilter())
    slow.queue.maxsize = 2
    for n in range(5):
        fanout.publish({"type": "task", "id": n, "task": n})
    got = _drain(slow)
    assert got[0] == (None, RESET) and len(got) <= 2


def test_a_lost_feed_tells_every_stream_to_refetch():
    fanout = Fanout()
    sub = fanout.subscribe(EventFilter(task=9))
    fanout.reset_all()
    assert _drain(sub) == [(None, RESET)]


def test_the_events_stream_speaks_server_sent_events(web):
    client, _, feed, _, _ = web
    headers = {"Authorization": f"Bearer {ADMIN}"}
    feed.fanout.publish({"type": "task", "id": 1, "task": 1})  # before the stream: not sent
    status, response_headers, pieces = open_stream(client.app, "/events", headers, "task=2", chunks=1)
    assert status.startswith("200") and response_headers["content-type"].startswith("text/event-stream")
    assert pieces[0].startswith(b"retry: ")
    assert format_event("f.7", {"type": "chunk", "id": 5, "task": 2}) == \
        b'id: f.7\ndata: {"type":"chunk","id":5,"task":2}\n\n'
    assert format_event(None, RESET).startswith(b"event: reset\n")
    assert len(feed.fanout) == 0  # the closed stream let go of its subscription


def test_events_need_a_token_and_check_their_filter(web):
    client, *_ = web
    status, _, body = open_stream(client.app, "/events", {})
    assert status.startswith("401")
    status, _, body = open_stream(client.app, "/events", {"Authorization": f"Bearer {ADMIN}"}, "type=bogus")
    assert status.startswith("400") and json.loads(b"".join(body))["error"]["field"] == "type"


def _drain(sub):
    out = []
    while (item := sub.get(timeout=0)) is not None:
        out.append(item)
    return out


def test_a_change_published_while_a_stream_is_open_reaches_it(web):
    import threading

    client, _, feed, _, _ = web
    def publish():
        for n in (1, 2):
            feed.fanout.publish({"type": "task", "id": n, "task": n})
    timer = threading.Timer(0.2, publish)
    timer.start()
    bearer = {"Authorization": f"Bearer {ADMIN}"}
    _, _, pieces = open_stream(client.app, "/events", bearer, "task=2", chunks=2)
    timer.join()
    assert b'"id":2' in pieces[1] and b'"id":1,' not in pieces[1]
