"""Closed by default on a real broker: no way to authenticate agents, no dispatcher; agents wait politely."""
from __future__ import annotations

import signal

import pytest

from common import enrollment
from common.db import open_and_migrate
from common.models import database_proxy
from tests.conftest import wait_for
from tests.integration.farmproc import sleep_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def open_farm(farm):
    """The farm without the bootstrap farm secret: only enrollment (or --insecure-agents) lets agents in."""
    farm.env.pop("CORRAL_AGENT_SECRET")
    return farm


def test_a_dispatcher_with_no_way_to_authenticate_agents_refuses_to_start_in_one_sentence(open_farm):
    open_farm.gateway()
    proc = open_farm.dispatcher()
    assert proc.wait(30) == 2
    out = (open_farm.logdir / "dispatcher.log").read_text()
    assert ("corral dispatcher: refusing to start: no agent can authenticate (none is enrolled and "
            "CORRAL_AGENT_SECRET is not set)") in out


def test_with_insecure_agents_the_dispatcher_starts_and_takes_unauthenticated_agents(open_farm):
    farm = open_farm
    farm.gateway()
    farm.dispatcher(args=("--insecure-agents",))
    refused = farm.agent("plain")  # an agent with nothing to prove refuses to start, in a sentence
    assert refused.wait(30) == 78  # EX_CONFIG
    assert "this agent has no credential" in (farm.logdir / "agent-plain.log").read_text()
    farm.agent("plain2", env={"CORRAL_INSECURE_AGENTS": "true"})
    farm.wait_online(["plain2"])
    task = farm.submit("sleep", sleep_settings(1, 2, 2, 0.05))
    assert farm.wait_task(task["id"], timeout=60)["frames_done"] == 2
    assert "agent messages are NOT authenticated" in (farm.logdir / "dispatcher.log").read_text()


def test_an_agent_started_before_the_farm_ever_ran_waits_and_then_joins(open_farm):
    farm = open_farm
    open_and_migrate(farm.env["CORRAL_DATABASE_URL"])
    with database_proxy.connection_context():
        _, credential = enrollment.enroll("early", ["default"])
    path = farm.logdir.parent / "early.credential"
    path.write_text(credential + "\n")
    agent = farm.agent("early", credential=path)  # no exchange, no queue exists yet
    log = farm.logdir / "agent-early.log"
    wait_for(lambda: "do not exist yet" in log.read_text(), timeout=30, what="the agent to say it waits")
    assert agent.poll() is None  # waiting, not crashed
    farm.gateway()
    farm.dispatcher()
    farm.wait_online(["early"], timeout=60)
    task = farm.submit("sleep", sleep_settings(1, 2, 1, 0.05))
    assert farm.wait_task(task["id"], timeout=60)["frames_done"] == 2
    assert farm.stop("agent-early", signal.SIGTERM) == 0
