"""deploy/prometheus: promtool accepts the scrape config and the rules, and every alert is unit-tested."""
from __future__ import annotations

import shutil
import subprocess

import yaml

from tests.unit.deploy_support import DEPLOY, METRIC_NAME, served_metric_names, tool

PROMETHEUS = DEPLOY / "prometheus"


def run(*argv: str, cwd=PROMETHEUS) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)


def alerts() -> dict[str, str]:
    rules = yaml.safe_load((PROMETHEUS / "corral-alerts.yml").read_text())
    return {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}


def test_promtool_accepts_the_scrape_config_with_its_token_file(tmp_path):
    for path in PROMETHEUS.glob("*.yml"):
        shutil.copy(path, tmp_path)
    (tmp_path / "corral-read-token").write_text("corral_example\n")
    result = run(tool("promtool"), "check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {job["job_name"] for job in yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
            ["scrape_configs"]}
    assert jobs == {"corral-gateway", "corral-dispatcher"}  # the job names the alerts select


def test_promtool_accepts_the_alert_rules():
    result = run(tool("promtool"), "check", "rules", "corral-alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_in_a_promtool_unit_test():
    result = run(tool("promtool"), "test", "rules", "corral-alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    tests = yaml.safe_load((PROMETHEUS / "corral-alerts.test.yml").read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    fired = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert fired == set(alerts()), "every alert must be shown firing"
    assert quiet == set(alerts()), "every alert must be shown quiet when it should be"


def test_the_alerts_ask_only_for_metrics_corral_serves(tmp_path):
    served = served_metric_names(tmp_path)
    for name, expr in alerts().items():
        for metric in METRIC_NAME.findall(expr):
            assert metric in served, f"alert {name} reads {metric}, which Corral does not serve"


def test_the_issues_metric_names_are_served(tmp_path):
    served = served_metric_names(tmp_path)
    for name in ("corral_tasks", "corral_chunks_pending", "corral_workers", "corral_chunks_finished_total",
                 "corral_chunk_duration_seconds_bucket", "corral_chunk_wait_seconds_bucket",
                 "corral_api_requests_total", "corral_api_request_duration_seconds_bucket",
                 "corral_build_info", "corral_dispatcher_events_total",
                 "corral_dispatcher_event_seconds_bucket",
                 "corral_dispatcher_release_batch_chunks_bucket", "corral_dispatcher_heartbeats_total",
                 "corral_dispatcher_lost_agents_total", "corral_dispatcher_dead_letters_total",
                 "corral_dispatcher_active"):
        assert name in served, name
