"""TLS everywhere: every component over ``amqps://`` with verified certificates, and the gateway on HTTPS.

A RabbitMQ node of our own (tests/integration/tls_broker.py) listens with TLS and
requires client certificates; the certificates are made at test time. The farm
runs a task through it; clients that trust another CA, name a host the
certificate does not cover, or bring no client certificate are refused.
"""
from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time

import pytest
import requests

from common.bus import Bus
from common.config import load_config
from tests.conftest import missing
from tests.integration import tls_broker
from tests.integration.farmproc import CORRAL, Farm, sleep_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
AMQPS = f"amqps://guest:guest@localhost:{tls_broker.AMQPS_PORT}//"


def _handshakes(certs: tls_broker.Certificates) -> bool:
    context = ssl.create_default_context(cafile=str(certs.ca))
    context.load_cert_chain(str(certs.client_cert), str(certs.client_key))
    try:
        with socket.create_connection(("localhost", tls_broker.AMQPS_PORT), timeout=2) as sock, \
                context.wrap_socket(sock, server_hostname="localhost"):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """Certificates and the corral-tls node, stopped and deleted afterwards."""
    if shutil.which("openssl") is None:
        missing("openssl")
    script = tls_broker.server_script()
    if script is None:
        missing("rabbitmq-server")
    if not tls_broker.ports_free():
        missing(f"free ports {tls_broker.AMQP_PORT}, {tls_broker.AMQPS_PORT}, {tls_broker.DIST_PORT}")
    folder = tmp_path_factory.mktemp("tls")
    certs = tls_broker.make_certificates(folder / "certs")
    node = tls_broker.TLSBroker(folder / "node", certs)
    (folder / "node").mkdir()
    node.start(script)
    try:
        deadline = time.monotonic() + 120
        while not _handshakes(certs):
            assert node.alive() and time.monotonic() < deadline, \
                f"the TLS node did not start\n{node.log_tail()}"
            time.sleep(0.5)
        yield certs
    finally:
        node.stop()


def tls_env(certs: tls_broker.Certificates) -> dict[str, str]:
    return {"CORRAL_BROKER_URL": AMQPS, "CORRAL_BROKER_CA_FILE": str(certs.ca),
            "CORRAL_BROKER_CERT_FILE": str(certs.client_cert),
            "CORRAL_BROKER_KEY_FILE": str(certs.client_key)}


def test_every_component_runs_a_task_over_amqps_and_the_gateway_over_https(tls, farm_env, tmp_path):
    env = {**farm_env, **tls_env(tls), "SSL_CERT_FILE": str(tls.ca)}  # SSL_CERT_FILE: for the CLI
    env.pop("CORRAL_AGENT_SECRET")  # the real-farm way: enrollment
    (tmp_path / "logs").mkdir()
    farm = Farm(env, tmp_path / "logs")
    farm.api, farm.verify = f"https://localhost:{farm.port}", str(tls.ca)
    try:
        farm.gateway("--certfile", str(tls.server_cert), "--keyfile", str(tls.server_key))
        credential = farm.enroll("tls-node", "default")
        farm.dispatcher()
        farm.agent("tls-node", credential=credential)
        task = farm.submit("sleep", sleep_settings(1, 4, 2, 0.05))
        assert farm.wait_task(task["id"], timeout=60)["frames_done"] == 4
        # Nothing of it went over the shared broker: the namespace's queues live on our node.
        with Bus(load_config(tls_env(tls))).connection() as conn:
            conn.default_channel.queue_declare(f"{env['CORRAL_NAMESPACE']}.dispatcher", passive=True)
    finally:
        farm.close()


def _connects(env: dict[str, str]) -> str:
    """Open and close one connection the way every Corral component does (common.bus.Bus)."""
    bus = Bus(load_config(env))
    try:
        with bus.connection() as conn:
            conn.ensure_connection(max_retries=1, timeout=10)
        return "connected"
    except Exception as exc:  # noqa: BLE001 - what failed is the point
        return repr(exc)


def test_a_component_that_trusts_another_ca_names_another_host_or_has_no_client_certificate_is_refused(tls):
    good = tls_env(tls)
    assert _connects(good) == "connected"
    assert "CERTIFICATE_VERIFY_FAILED" in _connects({**good, "CORRAL_BROKER_CA_FILE": str(tls.rogue_ca)})
    # The certificate names localhost only: 127.0.0.1 does not match it.
    wrong_host = {**good, "CORRAL_BROKER_URL": AMQPS.replace("localhost", "127.0.0.1")}
    assert "CERTIFICATE_VERIFY_FAILED" in _connects(wrong_host)
    no_client_cert = {k: v for k, v in good.items() if k not in ("CORRAL_BROKER_CERT_FILE",
                                                               "CORRAL_BROKER_KEY_FILE")}
    assert _connects(no_client_cert) != "connected"


def test_the_gateway_speaks_https_to_a_verifying_client_and_nothing_else(tls, farm_env, tmp_path):
    (tmp_path / "logs").mkdir()
    farm = Farm({**farm_env, **tls_env(tls)}, tmp_path / "logs")
    farm.api, farm.verify = f"https://localhost:{farm.port}", str(tls.ca)
    try:
        farm.gateway("--certfile", str(tls.server_cert), "--keyfile", str(tls.server_key))
        assert requests.get(f"{farm.api}/health", verify=str(tls.ca), timeout=10).status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{farm.api}/health", verify=str(tls.rogue_ca), timeout=10)
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://localhost:{farm.port}/health", timeout=10)
    finally:
        farm.close()


def test_the_gateway_refuses_half_a_tls_setting_with_a_sentence(farm_env, tmp_path):
    done = subprocess.run([*CORRAL, "gateway", "--certfile", str(tmp_path / "cert.pem")],
                          env={**os.environ, **farm_env}, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "--certfile and --keyfile go together" in done.stderr
