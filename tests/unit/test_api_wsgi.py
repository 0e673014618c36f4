"""The WSGI entry point gunicorn loads."""
from __future__ import annotations

import importlib
import sys

import falcon
import pytest
from falcon import testing

from common.models import database_proxy

ADMIN = "test-admin-token-0123456789"


def load_wsgi(monkeypatch, tmp_path, **env):
    monkeypatch.setenv("CORRAL_DATABASE_URL", f"sqlite:///{tmp_path}/wsgi.db")
    monkeypatch.setenv("CORRAL_BROKER_URL", "memory://")
    monkeypatch.setenv("CORRAL_NAMESPACE", "wsgitest")
    monkeypatch.setenv("CORRAL_ADMIN_TOKEN", ADMIN)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    sys.modules.pop("api_gateway.wsgi", None)
    return importlib.import_module("api_gateway.wsgi")


def test_the_wsgi_module_builds_the_app_without_touching_the_broker(monkeypatch, tmp_path):
    wsgi = load_wsgi(monkeypatch, tmp_path)
    try:
        assert isinstance(wsgi.application, falcon.App)
        assert (tmp_path / "wsgi.db").exists()
        publisher = wsgi.LazyPublisher(wsgi.load_config())
        assert publisher._publisher is None
    finally:
        sys.modules.pop("api_gateway.wsgi", None)
        database_proxy.obj.close()


def test_a_task_submitted_through_the_wsgi_app_is_published_on_first_use(monkeypatch, tmp_path):
    wsgi = load_wsgi(monkeypatch, tmp_path)
    try:
        client = testing.TestClient(wsgi.application, headers={"Authorization": f"Bearer {ADMIN}"})
        result = client.simulate_post("/tasks", json={"type": "noop", "settings": {"frames": "1-3"}})
        assert result.status_code == 202, result.text
        assert client.simulate_get("/health").json["broker"] == "ok"
    finally:
        sys.modules.pop("api_gateway.wsgi", None)
        database_proxy.obj.close()


def test_a_bad_configuration_stops_the_gateway_with_a_sentence(monkeypatch, tmp_path):
    with pytest.raises(SystemExit, match="CORRAL_NAMESPACE"):
        load_wsgi(monkeypatch, tmp_path, CORRAL_NAMESPACE="bad name!")
    sys.modules.pop("api_gateway.wsgi", None)
