"""deploy/systemd: systemd-analyze accepts the units, and they say what the agent's shutdown needs.

The agent's side of the contract (first SIGTERM: finish the chunk; second: kill the
child and hand the chunk back) is tested on a real agent process in
tests/integration/test_agent.py.
"""
from __future__ import annotations

import configparser
import re
import subprocess
import sys
from pathlib import Path

import pytest

from common.config import _ENV
from common.farmstats import DURATION_BUCKETS_S
from tests.unit.deploy_support import DEPLOY, tool

SYSTEMD = DEPLOY / "systemd"
UNITS = ("corral-agent.service", "corral-dispatcher.service", "corral-gateway.service")
BINARY = "/opt/corral/bin/corral"
RESTART_EXIT_CODE = 75  # the fixed contract: an agent asked to restart exits 75 (EX_TEMPFAIL)
UNIT_ONLY_VARIABLES = {"CORRAL_AGENT_ARGS"}  # expanded by systemd into ExecStart, not read by Corral


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string((SYSTEMD / name).read_text())
    return parser


def seconds(value: str) -> float:
    units = {"h": 3600, "min": 60, "m": 60, "s": 1}
    total = 0.0
    for number, suffix in re.findall(r"(\d+)\s*(min|h|m|s)?", value):
        total += int(number) * units[suffix or "s"]
    return total


def test_systemd_analyze_verifies_every_unit_without_a_warning(tmp_path):
    # verify insists that ExecStart's binary exists: point it at the corral this test runs.
    corral = Path(sys.executable).with_name("corral")
    if not corral.exists():
        pytest.fail(f"{corral} is missing: run `make install`")
    for name in UNITS:
        text = (SYSTEMD / name).read_text()
        assert BINARY in text
        (tmp_path / name).write_text(text.replace(BINARY, str(corral)))
    result = subprocess.run([tool("systemd-analyze"), "verify", "--man=no", *UNITS], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stderr


def test_the_agent_unit_lets_the_running_chunk_finish_and_restarts_on_the_restart_code():
    service = unit("corral-agent.service")["Service"]
    assert service["KillMode"] == "mixed"  # SIGTERM to the agent only, SIGKILL to all only at the timeout
    assert seconds(service["TimeoutStopSec"]) > DURATION_BUCKETS_S[-1]  # longer than the longest chunk
    assert service["Restart"] == "on-failure"
    assert str(RESTART_EXIT_CODE) in service["RestartForceExitStatus"].split()
    assert service["EnvironmentFile"].startswith("/etc/corral/")
    assert "$CORRAL_AGENT_ARGS" in service["ExecStart"]


@pytest.mark.parametrize("name", UNITS)
def test_every_unit_reads_an_environment_file_and_starts_its_role(name):
    service = unit(name)["Service"]
    role = name.removeprefix("corral-").removesuffix(".service")
    assert service["ExecStart"].split()[:2] == [BINARY, role]
    assert service["EnvironmentFile"]
    assert service["Restart"] == "on-failure"


def test_the_dispatcher_unit_serves_its_metrics_where_the_scrape_config_looks():
    exec_start = unit("corral-dispatcher.service")["Service"]["ExecStart"].split()
    port = exec_start[exec_start.index("--metrics-port") + 1]
    assert f":{port}" in (DEPLOY / "prometheus" / "prometheus.yml").read_text()


@pytest.mark.parametrize("example", ["agent.env.example", "server.env.example"])
def test_the_environment_file_examples_set_only_variables_corral_reads(example):
    names = [line.split("=", 1)[0] for line in (SYSTEMD / example).read_text().splitlines()
             if line and not line.startswith("#")]
    assert names
    unknown = set(names) - set(_ENV) - UNIT_ONLY_VARIABLES
    assert not unknown, f"{example} sets variables no Corral code reads: {sorted(unknown)}"


def test_the_gateway_unit_gives_gunicorn_a_metrics_directory_of_its_own():
    lines = (SYSTEMD / "corral-gateway.service").read_text().splitlines()
    assert "Environment=PROMETHEUS_MULTIPROC_DIR=/run/corral-gateway/metrics" in lines
    assert unit("corral-gateway.service")["Service"]["RuntimeDirectory"] == "corral-gateway"
