"""deploy/compose and the Containerfile: docker-compose resolves the file, and it runs what Corral needs.

No container engine runs here, so nothing is started: ``docker-compose config``
(docker-compose 1.29 from PyPI, which needs no engine) validates the file against
its schema and resolves the variables, and the resolved services are checked
against Corral itself: each command parses with ``corral``'s own argument parser
and each environment loads with ``common.config.load_config``.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tomllib

import pytest
import yaml

from common.config import _ENV, load_config
from corral.cli import build_parser
from tests.conftest import ROOT, missing
from tests.unit.deploy_support import DEPLOY

COMPOSE = DEPLOY / "compose"
CONTAINERFILE = ROOT / "Containerfile"
NEEDS = {  # role -> the variables it cannot do without
    "migrate": {"CORRAL_DATABASE_URL"},
    "gateway": {"CORRAL_BROKER_URL", "CORRAL_DATABASE_URL", "CORRAL_NAMESPACE", "CORRAL_STORAGE_ROOTS"},
    "dispatcher": {"CORRAL_BROKER_URL", "CORRAL_DATABASE_URL", "CORRAL_NAMESPACE", "CORRAL_AGENT_SECRET"},
    "agent": {"CORRAL_BROKER_URL", "CORRAL_NAMESPACE", "CORRAL_AGENT_SECRET", "CORRAL_STORAGE_ROOTS"},
}


def docker_compose() -> str:
    """docker-compose on PATH, or the one .ci/run installs into .venv-compose."""
    found = shutil.which("docker-compose") or next(
        (str(p) for p in [ROOT / ".venv-compose" / "bin" / "docker-compose"] if p.exists()), None)
    if found is None:
        missing("docker-compose (.ci/run installs 1.29.2 into .venv-compose)")
    return found


@pytest.fixture(scope="module")
def resolved() -> dict:
    result = subprocess.run([docker_compose(), "-f", "docker-compose.yml", "--env-file", ".env.example",
                             "config"], cwd=COMPOSE, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "is not set" not in result.stderr, result.stderr  # every ${VAR} has a value in .env.example
    return yaml.safe_load(result.stdout)["services"]


def corral_services(services: dict) -> dict[str, dict]:
    return {name: spec for name, spec in services.items() if spec["image"].startswith("corral")}


def test_the_farm_has_every_role_and_the_services_it_needs(resolved):
    assert set(resolved) == {"rabbitmq", "postgres", "migrate", "gateway", "dispatcher", "agent"}
    assert "management" in resolved["rabbitmq"]["image"]
    for name in ("rabbitmq", "postgres", "gateway"):
        assert resolved[name]["healthcheck"]["test"], name
    for name in ("gateway", "dispatcher"):
        assert resolved[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert resolved["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert resolved["migrate"]["restart"] == "no"


def test_every_command_is_a_corral_verb_its_parser_accepts(resolved):
    parser = build_parser()
    for name, spec in corral_services(resolved).items():
        args = parser.parse_args(spec["command"])
        assert args.verb == name, f"service {name} runs `corral {args.verb}`"


def test_every_environment_loads_and_sets_what_its_role_needs(resolved):
    for name, spec in corral_services(resolved).items():
        env = {key: str(value) for key, value in spec["environment"].items()}
        assert not set(env) - set(_ENV), f"{name} sets variables Corral does not read"
        assert NEEDS[name] <= set(env), f"{name} lacks {sorted(NEEDS[name] - set(env))}"
        load_config(env)  # raises ConfigError on a bad value
    assert "CORRAL_DATABASE_URL" not in resolved["agent"]["environment"]  # agents never open it


def test_the_broker_and_database_urls_point_at_the_compose_services(resolved):
    rabbit = resolved["rabbitmq"]["environment"]
    broker = resolved["agent"]["environment"]["CORRAL_BROKER_URL"]
    assert broker == f"amqp://{rabbit['RABBITMQ_DEFAULT_USER']}:{rabbit['RABBITMQ_DEFAULT_PASS']}@rabbitmq:5672/"
    pg = resolved["postgres"]["environment"]
    assert resolved["dispatcher"]["environment"]["CORRAL_DATABASE_URL"] == (
        f"postgresql://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/{pg['POSTGRES_DB']}")


def test_agents_get_as_long_to_stop_as_a_chunk_may_run(resolved):
    from common.farmstats import DURATION_BUCKETS_S

    grace = resolved["agent"]["stop_grace_period"]
    assert grace.endswith("h") and int(grace[:-1]) * 3600 > DURATION_BUCKETS_S[-1]


def stages() -> list[str]:
    return re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", CONTAINERFILE.read_text(), flags=re.MULTILINE)


def test_the_compose_build_targets_are_containerfile_stages(resolved):
    targets = {spec["build"]["target"] for spec in resolved.values() if "build" in spec}
    assert targets == {"corral", "agent"} and targets <= set(stages())


def test_the_containerfile_copies_every_package_and_installs_blender_and_ffmpeg_for_agents():
    text = CONTAINERFILE.read_text()
    copied = {line.split()[1] for line in text.splitlines() if line.startswith("COPY ")}
    found = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = {name.rstrip("*") for name in found["include"]}
    assert packages <= copied
    for source in copied:
        assert (ROOT / source).exists(), source
    agent_stage = text.split("AS agent", 1)[1]
    assert "blender" in agent_stage and "ffmpeg" in agent_stage
    assert 'ENTRYPOINT ["corral"]' in text
