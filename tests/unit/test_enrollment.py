"""Enrollment over REST, the credential's storage, TLS settings and which messages get which signature."""
from __future__ import annotations

import ssl

import pytest

from common import enrollment, messages, signing
from common.bus import Bus, Publisher, tls_options
from common.config import load_config
from common.errors import ConfigError
from common.models import Enrollment
from tests.unit.gateway_support import NOW


def test_enrolling_shows_the_credential_once_and_stores_only_its_derived_key(client):
    answer = client.simulate_post("/agents", json={"name": "node-17", "pools": ["gpu", "default"]})
    assert answer.status_code == 201
    body = answer.json
    assert body["credential"].startswith("corralnode_") and len(body["credential"]) > 50
    assert (body["name"], body["pools"], body["state"], body["enrolled_at"]) == (
        "node-17", ["default", "gpu"], "active", NOW)
    row = Enrollment.get(Enrollment.name == "node-17")
    assert row.node_key == enrollment.node_key(body["credential"]).hex()
    assert body["credential"] not in str(list(Enrollment.select().dicts()))
    listed = client.simulate_get("/agents").json["agents"]
    assert listed == [{k: v for k, v in body.items() if k != "credential"}]


def test_enrolling_again_rotates_and_revoking_is_idempotent(client):
    first = client.simulate_post("/agents", json={"name": "n1"}).json["credential"]
    assert client.simulate_delete("/agents/n1").json["state"] == "revoked"
    revoked_at = Enrollment.get(Enrollment.name == "n1").revoked_at
    assert client.simulate_delete("/agents/n1").json["revoked_at"] == revoked_at
    second = client.simulate_post("/agents", json={"name": "n1"}).json
    assert second["state"] == "active" and second["credential"] != first


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "-flag"}, "name"), ({"name": "a b"}, "name"), ({}, "name"),
    ({"name": "n1", "pools": "gpu"}, "pools"), ({"name": "n1", "pools": ["GPU!"]}, "pools"),
    ({"name": "n1", "pools": ["p"] * 33}, "pools"), ({"name": "n1", "colour": "red"}, "colour"),
])
def test_a_bad_enrollment_is_a_400_naming_the_field(client, body, field):
    answer = client.simulate_post("/agents", json=body)
    assert answer.status_code == 400
    assert answer.json["error"]["field"] == field


def test_revoking_an_unknown_agent_is_a_404_and_enrollment_needs_admin(client):
    assert client.simulate_delete("/agents/nobody").status_code == 404
    reader = client.simulate_post("/tokens", json={"name": "r", "scopes": ["operate"]}).json["token"]
    headers = {"Authorization": f"Bearer {reader}"}
    assert client.simulate_post("/agents", json={"name": "x"}, headers=headers).status_code == 403
    assert client.simulate_get("/agents", headers=headers).status_code == 403
    assert client.simulate_get("/agents", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_amqps_verifies_the_certificate_and_the_host_name_of_the_url(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    options = tls_options(load_config({}, broker_url="amqps://u:p@rabbit.example:5671//",
                                      broker_ca_file=str(ca)))
    assert options == {"cert_reqs": ssl.CERT_REQUIRED, "server_hostname": "rabbit.example",
                       "ca_certs": str(ca)}
    assert tls_options(load_config({}, broker_url="amqp://localhost//")) is False
    failover = tls_options(load_config({}, broker_url="amqps://a:5671//;amqps://b:5671//"))
    assert failover["server_hostname"] is None  # kombu then takes the host of the URL in use


def test_tls_settings_that_cannot_work_fail_with_a_sentence(tmp_path):
    with pytest.raises(ConfigError, match="CORRAL_BROKER_CA_FILE"):
        load_config({"CORRAL_BROKER_CA_FILE": str(tmp_path / "missing.pem")})
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError, match="needs CORRAL_BROKER_CERT_FILE"):
        load_config({"CORRAL_BROKER_KEY_FILE": str(cert)})


class Capture(Publisher):
    def __init__(self, bus):
        super().__init__(bus)
        self.headers: list[dict] = []

    def publish_raw(self, body, exchange, routing_key, priority=0, persistent=True, declare=None,
                    headers=None, expiration_s=None):
        self.headers.append(headers or {})


def test_the_gateway_signs_every_command_family_and_never_an_agent_message():
    bus = Bus(load_config({}, broker_url="memory://"))
    key = signing.new_key()
    bus.command_key = key
    capture = Capture(bus)
    for message in (messages.TaskCancel(task_id=1), messages.WorkerUpdate(worker_id=2, status="enabled")):
        capture.event(message)
        assert signing.verify(key, messages.encode(message), capture.headers[-1][signing.COMMAND_SIG_HEADER])
    capture.event(messages.AgentGoodbye(agent="a1"))
    assert signing.COMMAND_SIG_HEADER not in capture.headers[-1]
