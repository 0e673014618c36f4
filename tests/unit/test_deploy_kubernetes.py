"""deploy/kubernetes: every manifest parses, and names, ports, variables and the scaler line up with the code.

No cluster runs here; what can be checked without one is checked against Corral
itself: the arguments parse with ``corral``'s parser, each container's
environment (resolved from its ConfigMap and Secrets) loads with
``load_config``, and the metric the KEDA scaler queries is one /metrics serves.
"""
from __future__ import annotations

import re

import pytest
import yaml

from common.config import _ENV, load_config
from common.farmstats import DURATION_BUCKETS_S
from corral.cli import build_parser
from tests.unit.deploy_support import DEPLOY, METRIC_NAME, served_metric_names
from tests.unit.test_deploy_compose import NEEDS

KUBERNETES = DEPLOY / "kubernetes"


def manifests() -> list[dict]:
    docs = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def of_kind(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in manifests() if doc["kind"] == kind}


def workloads() -> dict[str, dict]:
    """Deployments and Jobs by name, with their pod templates."""
    return {**of_kind("Deployment"), **of_kind("Job")}


def container(workload: dict) -> dict:
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    return only


def environment(spec: dict) -> dict[str, str]:
    """The container's variables as the pod would see them, resolved from ConfigMaps and Secrets."""
    config_maps, secrets = of_kind("ConfigMap"), of_kind("Secret")
    env: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        name = source["configMapRef"]["name"]
        assert name in config_maps, f"ConfigMap {name} is not defined"
        env.update(config_maps[name]["data"])
    for var in spec.get("env", []):
        ref = var["valueFrom"]["secretKeyRef"]
        assert ref["name"] in secrets, f"Secret {ref['name']} is not defined"
        assert ref["key"] in secrets[ref["name"]]["stringData"], f"Secret {ref['name']} has no {ref['key']}"
        env[var["name"]] = secrets[ref["name"]]["stringData"][ref["key"]]
    return env


def test_every_manifest_parses_and_lives_in_the_corral_namespace():
    docs = manifests()
    assert {doc["kind"] for doc in docs} >= {"Namespace", "ConfigMap", "Secret", "Job", "Deployment",
                                             "Service", "PodDisruptionBudget", "ScaledObject"}
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "corral", doc["metadata"]["name"]


@pytest.mark.parametrize("name", sorted(workloads()))
def test_each_container_runs_a_corral_verb_with_the_variables_its_role_needs(name):
    spec = container(workloads()[name])
    args = build_parser().parse_args(spec["args"])
    env = environment(spec)
    assert not set(env) - set(_ENV), f"{name} sets variables Corral does not read"
    assert NEEDS[args.verb] <= set(env), f"{name} lacks {sorted(NEEDS[args.verb] - set(env))}"
    load_config(env)
    if args.verb == "agent":
        assert "CORRAL_DATABASE_URL" not in env and "CORRAL_ADMIN_TOKEN" not in env


@pytest.mark.parametrize("name", sorted(of_kind("Deployment")))
def test_each_deployment_has_a_readiness_probe_on_a_port_it_opens(name):
    deployment = of_kind("Deployment")[name]
    spec = container(deployment)
    probe = spec["readinessProbe"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= \
        deployment["spec"]["template"]["metadata"]["labels"].items()
    if "httpGet" in probe:
        ports = {port["name"]: port["containerPort"] for port in spec["ports"]}
        assert probe["httpGet"]["port"] in ports
        port = str(ports[probe["httpGet"]["port"]])
        assert port in spec["args"], f"{name} probes port {port} but does not serve it"
    else:
        assert "exec" in probe


def selects(selector: dict, deployment: dict) -> bool:
    return selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_every_service_and_disruption_budget_selects_a_deployment_and_its_port():
    deployments = of_kind("Deployment").values()
    for name, service in of_kind("Service").items():
        targets = [d for d in deployments if selects(service["spec"]["selector"], d)]
        assert len(targets) == 1, f"Service {name} selects {len(targets)} deployments"
        ports = {port["name"] for port in container(targets[0]).get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, f"Service {name} targets a port its pods do not open"
    for name, budget in of_kind("PodDisruptionBudget").items():
        assert any(selects(budget["spec"]["selector"]["matchLabels"], d) for d in deployments), name
    agents = [name for name, d in of_kind("Deployment").items() if container(d)["args"][0] == "agent"]
    for agent in agents:
        assert any(selects(b["spec"]["selector"]["matchLabels"], of_kind("Deployment")[agent])
                   for b in of_kind("PodDisruptionBudget").values()), f"{agent} has no PodDisruptionBudget"


def test_agents_get_longer_to_stop_than_a_chunk_may_run():
    for deployment in of_kind("Deployment").values():
        if container(deployment)["args"][0] == "agent":
            grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            assert grace > DURATION_BUCKETS_S[-1]


def test_the_scaler_wakes_its_pools_agents_from_zero_on_a_metric_the_gateway_serves(tmp_path):
    served = served_metric_names(tmp_path)
    scaled = of_kind("ScaledObject")
    assert scaled
    for name, scaler in scaled.items():
        target = of_kind("Deployment")[scaler["spec"]["scaleTargetRef"]["name"]]
        args = container(target)["args"]
        assert args[0] == "agent"
        assert scaler["spec"]["minReplicaCount"] == 0
        (trigger,) = scaler["spec"]["triggers"]
        assert trigger["type"] == "prometheus"
        query = trigger["metadata"]["query"]
        assert METRIC_NAME.findall(query) == ["corral_chunks_pending"]
        assert set(METRIC_NAME.findall(query)) <= served
        pools = re.findall(r'pool="([^"]+)"', query)
        assert pools == [args[args.index("--pool") + 1]], f"{name} scales on another pool than it runs"
        assert float(trigger["metadata"]["threshold"]) > 0
        assert float(trigger["metadata"]["activationThreshold"]) == 0
