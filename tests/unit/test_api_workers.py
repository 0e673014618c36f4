"""The gateway's worker and health endpoints, on the real app with a real SQLite database."""
from __future__ import annotations

import urllib.parse

import pytest
from falcon import testing

from api_gateway.app import create_app
from common.db import open_and_migrate
from common.messages import WorkerUpdate
from common.models import Worker, database_proxy
from tests.unit.gateway_support import AUTH, CONFIG, NOW

DOCUMENT_FIELDS = {"activity", "connection", "current_task", "hostname", "id", "ip_address", "log",
                   "port", "status", "system", "time_cost"}


def add_worker(**fields) -> Worker:
    with database_proxy.connection_context():
        return Worker.create(**fields)


def worker_count() -> int:
    with database_proxy.connection_context():
        return Worker.select().count()


# ---------------------------------------------------------------- GET /workers


def test_workers_are_listed_by_name_with_the_document_fields(client):
    add_worker(name="fsiddi-macpro.local", hostname="fsiddi-macpro.local", system="Darwin 14.1.0",
               ip_address="127.0.0.1", port=5000, connection="online", pools=["default", "gpu"],
               commands=["blender_render"], versions={"blender": "4.1"}, last_heartbeat=NOW,
               current_task=3, activity="rendering")
    add_worker(name="b", hostname="b")

    workers = client.simulate_get("/workers").json

    assert set(workers) == {"fsiddi-macpro.local", "b"}
    mac = workers["fsiddi-macpro.local"]
    assert DOCUMENT_FIELDS <= set(mac)
    assert (mac["log"], mac["time_cost"]) == (None, None)
    assert (mac["system"], mac["port"], mac["status"], mac["connection"]) == (
        "Darwin 14.1.0", 5000, "enabled", "online")
    assert (mac["current_task"], mac["activity"]) == (3, "rendering")
    assert mac["pools"] == ["default", "gpu"] and mac["versions"] == {"blender": "4.1"}
    assert mac["last_heartbeat"] == NOW


def test_no_workers_is_an_empty_object(client):
    assert client.simulate_get("/workers").json == {}


# ---------------------------------------------------------------- POST /workers


def test_registering_a_new_worker_creates_it_online_once(client, publisher):
    body = {"hostname": "render-01", "system": "Linux 6.1", "ip_address": "10.0.0.7", "port": 5000}

    first = client.simulate_post("/workers", json=body)
    again = client.simulate_post("/workers", json={**body, "system": "Linux 6.2"})

    assert first.status_code == again.status_code == 201
    worker = first.json["render-01"]
    assert (worker["connection"], worker["last_heartbeat"], worker["ip_address"]) == (
        "online", NOW, "10.0.0.7")
    assert again.json["render-01"]["id"] == worker["id"]
    assert again.json["render-01"]["system"] == "Linux 6.1"
    assert worker_count() == 1
    assert publisher.sent == []


def test_a_worker_may_register_under_a_name_other_than_its_hostname_from_a_form(client):
    form = urllib.parse.urlencode({"hostname": "h.local", "system": "Linux", "name": "gpu-1", "port": "80"})
    result = client.simulate_post("/workers", body=form,
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert result.status_code == 201
    assert result.json["gpu-1"]["hostname"] == "h.local"
    assert result.json["gpu-1"]["port"] == 80


@pytest.mark.parametrize("body, field", [
    ({"system": "Linux"}, "hostname"),
    ({"hostname": "h"}, "system"),
    ({"hostname": 5, "system": "Linux"}, "hostname"),
    ({"hostname": "h", "system": "Linux", "port": 70000}, "port"),
    ({"hostname": "h", "system": "Linux", "port": "80"}, "port"),
    ({"hostname": "h", "system": "Linux", "ip_address": "localhost"}, "ip_address"),
    ({"hostname": "two words", "system": "Linux"}, "name"),
    ({"hostname": "h", "system": "Linux", "name": "-bad"}, "name"),
    ({"hostname": "h\nX-Injected: 1", "system": "Linux"}, "hostname"),
    ({"hostname": "h", "system": "Linux", "cpu": 16}, "cpu"),
])
def test_a_bad_registration_is_refused_naming_the_field(client, body, field):
    result = client.simulate_post("/workers", json=body)
    assert result.status_code == 400
    assert result.json["error"]["field"] == field
    assert worker_count() == 0


# ---------------------------------------------------------------- GET /workers/{id}


def test_a_worker_shows_its_machine_readings(client):
    worker = add_worker(name="w", hostname="w.local", mac_address="00:11:22:33:44:55", system="Linux",
                        update_frequent={"worker_cpu_percent": 7.0},
                        update_less_frequent={"worker_num_cpus": 16})

    result = client.simulate_get(f"/workers/{worker.id}")

    assert result.status_code == 200
    assert result.json["name"] == "w" and result.json["mac_address"] == "00:11:22:33:44:55"
    assert result.json["update_frequent"] == {"worker_cpu_percent": 7.0}
    assert result.json["update_less_frequent"] == {"worker_num_cpus": 16}


@pytest.mark.parametrize("path", ["/workers/5", "/workers/name", "/workers/0"])
def test_an_unknown_worker_answers_404_json(client, path):
    result = client.simulate_get(path)
    assert result.status_code == 404
    assert result.json["error"]["code"] == "not_found"


# ---------------------------------------------------------------- PATCH /workers/{id}


@pytest.mark.parametrize("status, expected", [
    ("disabled", WorkerUpdate(worker_id=0, status="disabled")),
    ("enabled", WorkerUpdate(worker_id=0, status="enabled")),
    ("rendering", WorkerUpdate(worker_id=0, activity="rendering")),
    ("available", WorkerUpdate(worker_id=0, activity="available")),
])
def test_patching_a_worker_publishes_an_update_and_returns_its_task(client, publisher, status, expected):
    worker = add_worker(name="w", current_task=12)

    result = client.simulate_patch(f"/workers/{worker.id}", json={"status": status})

    assert result.status_code == 200
    assert result.json == {"task_id": 12}
    sent = publisher.sent[-1]
    assert (sent.worker_id, sent.status, sent.activity) == (worker.id, expected.status, expected.activity)


def test_a_worker_patch_with_an_unknown_status_is_refused(client, publisher):
    worker = add_worker(name="w")
    for body in ({"status": 1}, {"status": "busy"}, {}, {"status": "enabled", "x": 1}):
        assert client.simulate_patch(f"/workers/{worker.id}", json=body).status_code == 400
    assert publisher.sent == []


def test_patching_an_unknown_worker_answers_404(client):
    assert client.simulate_patch("/workers/9", json={"status": "disabled"}).status_code == 404


# ---------------------------------------------------------------- GET /health


def test_health_reports_the_database_and_the_last_publish(client, publisher):
    assert client.simulate_get("/health").json == {
        "status": "ok", "database": "ok", "broker": "unknown",
        "dispatcher": {"active": None, "epoch": 0, "lease_expires_in_s": None}}
    worker = add_worker(name="w")
    client.simulate_patch(f"/workers/{worker.id}", json={"status": "disabled"})
    assert client.simulate_get("/health").json["broker"] == "ok"
    publisher.down = True
    client.simulate_patch(f"/workers/{worker.id}", json={"status": "enabled"})
    result = client.simulate_get("/health")
    assert result.status_code == 200
    assert result.json["broker"] == "error"


def test_health_answers_503_when_the_database_cannot_be_opened(tmp_path, publisher):
    open_and_migrate(f"sqlite:///{tmp_path}/c.db")
    client = testing.TestClient(create_app(CONFIG, publisher), headers=AUTH)
    database_proxy.initialize(type(database_proxy.obj)(str(tmp_path / "missing" / "dir" / "c.db")))
    try:
        result = client.simulate_get("/health")
        assert result.status_code == 503
        assert result.json["database"] == "error"
        tasks = client.simulate_get("/tasks")
        assert tasks.status_code == 503 and "retry-after" in tasks.headers
    finally:
        open_and_migrate(f"sqlite:///{tmp_path}/c.db")


def test_health_says_which_dispatcher_is_active_from_the_leader_row(client):
    from common.models import DispatcherLeader
    from tests.unit.gateway_support import CONFIG, NOW

    DispatcherLeader.create(namespace=CONFIG.namespace, epoch=3, holder="host:42:ab", expires_at=NOW + 2.5)
    assert client.simulate_get("/health").json["dispatcher"] == {
        "active": "host:42:ab", "epoch": 3, "lease_expires_in_s": 2.5}
    DispatcherLeader.update(expires_at=NOW - 1).execute()  # it died; no standby took over yet
    assert client.simulate_get("/health").json["dispatcher"] == {
        "active": None, "epoch": 3, "lease_expires_in_s": None, "last_active": "host:42:ab"}
