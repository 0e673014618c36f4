"""deploy/rabbitmq-users.sh: a farm runs under its least-privilege users, and an agent cannot forge work.

A fresh vhost gets the three users; the gateway, the dispatcher and an agent run
under them; a task submitted through the gateway is compiled and completed.
Then, as the agent's user, publishing to the chunks or control exchange is
refused by the broker, and the gateway's user cannot read the dispatcher's queue.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from urllib.parse import urlparse

import amqp
import amqp.exceptions
import pytest

from tests.conftest import ROOT, missing
from tests.integration.farmproc import Farm, sleep_settings

pytestmark = pytest.mark.integration
SCRIPT = ROOT / "deploy" / "rabbitmq-users.sh"


def rabbitmqctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60,
                          check=check)


def vhost_or_missing(broker_url: str) -> None:
    """Vhosts of our own need rabbitmqctl managing the (local) test broker."""
    host = urlparse(broker_url).hostname
    if shutil.which("rabbitmqctl") is None or host not in ("localhost", "127.0.0.1") \
            or rabbitmqctl("status", check=False).returncode != 0:
        missing("rabbitmqctl managing the broker on localhost")


@pytest.fixture
def vhost(broker_url):
    """A vhost and users of its own, deleted afterwards; needs rabbitmqctl for the local broker."""
    vhost_or_missing(broker_url)
    suffix = uuid.uuid4().hex[:8]
    name, prefix = f"corral-sec-{suffix}", f"sec{suffix}-"
    passwords = {role: uuid.uuid4().hex for role in ("gateway", "dispatcher", "agent")}
    rabbitmqctl("add_vhost", name)
    try:
        yield name, prefix, passwords
    finally:
        for role in ("gateway", "dispatcher", "agent", "agent-n1"):
            rabbitmqctl("delete_user", f"{prefix}{role}", check=False)
        rabbitmqctl("delete_vhost", name, check=False)


def url(broker_url: str, user: str, password: str, vhost: str) -> str:
    parsed = urlparse(broker_url)
    return f"amqp://{user}:{password}@{parsed.hostname}:{parsed.port or 5672}/{vhost}"


def test_a_farm_runs_under_least_privilege_users_and_an_agent_cannot_publish_work(
        vhost, broker_url, namespace, tmp_path):
    name, prefix, passwords = vhost
    env = dict(os.environ, CORRAL_GATEWAY_PASSWORD=passwords["gateway"],
               CORRAL_DISPATCHER_PASSWORD=passwords["dispatcher"], CORRAL_AGENT_PASSWORD=passwords["agent"])
    made = subprocess.run(["bash", str(SCRIPT), "--vhost", name, "--namespace", namespace,
                           "--user-prefix", prefix, "--agent", "n1"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    as_user = {role: url(broker_url, f"{prefix}{role}", passwords[role.split("-")[0]], name)
               for role in ("gateway", "dispatcher", "agent", "agent-n1")}

    base = dict(os.environ, CORRAL_NAMESPACE=namespace, CORRAL_DATABASE_URL=f"sqlite:///{tmp_path / 'c.db'}",
                CORRAL_DATA_DIR=str(tmp_path / "var"), CORRAL_HEARTBEAT_INTERVAL="0.5",
                CORRAL_AGENT_TIMEOUT="3", CORRAL_TICK_INTERVAL="0.2", PYTHONUNBUFFERED="1")
    (tmp_path / "logs").mkdir()
    farm = Farm(dict(base, CORRAL_BROKER_URL=as_user["gateway"]), tmp_path / "logs")
    try:
        farm.gateway()
        credential = farm.enroll("n1", "default")  # closed by default: the dispatcher needs one
        farm.env = dict(farm.env, CORRAL_BROKER_URL=as_user["dispatcher"])
        farm.dispatcher()
        farm.env = dict(farm.env, CORRAL_BROKER_URL=as_user["agent-n1"])
        farm.agent("n1", credential=credential)
        task = farm.submit("sleep", sleep_settings(1, 4, 2, 0.05))
        done = farm.wait_task(task["id"], timeout=60)
        assert done["frames_done"] == 4
        assert farm.get(f"/tasks/{task['id']}")["chunks_total"] == 2
    finally:
        farm.close()

    refused_as(as_user["agent"], f"{namespace}.chunks", "default.sleep", publish=True)
    refused_as(as_user["agent"], f"{namespace}.control", "all", publish=True)
    refused_as(as_user["gateway"], f"{namespace}.dispatcher", publish=False)
    refused_as(as_user["agent-n1"], f"{namespace}.agent.someone-else", publish=False)


def refused_as(broker: str, target: str, routing_key: str = "", publish: bool = True) -> None:
    """Publishing to exchange ``target`` (or consuming queue ``target``) must be refused (403)."""
    parsed = urlparse(broker)
    conn = amqp.Connection(f"{parsed.hostname}:{parsed.port}", userid=parsed.username,
                           password=parsed.password, virtual_host=parsed.path[1:], confirm_publish=True)
    conn.connect()
    try:
        channel = conn.channel()
        with pytest.raises(amqp.exceptions.AccessRefused):
            if publish:
                channel.basic_publish(amqp.Message(b"{}"), exchange=target, routing_key=routing_key)
            else:
                channel.basic_consume(target, callback=lambda message: None)
    finally:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - the broker may already have closed it
            pass
