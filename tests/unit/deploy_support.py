"""What the deploy-recipe tests share: the repository's deploy/ folder and the metric names Corral serves."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from falcon import testing
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, missing

DEPLOY = ROOT / "deploy"
METRIC_NAME = re.compile(r"\bcorral_[a-z_]+\b")


def tool(name: str) -> str:
    """The path of a command-line tool, or skip (fail under CI=true) when it is not installed."""
    path = shutil.which(name)
    if path is None:
        missing(f"the {name} command")
    return str(path)


def served_metric_names(tmp_path: Path) -> set[str]:
    """Every sample name the gateway's /metrics and the dispatcher's registry expose (with suffixes)."""
    import dispatcher.metrics as dispatcher_metrics
    from api_gateway.app import create_app
    from common import farmstats
    from common.db import open_and_migrate
    from tests.unit.gateway_support import AUTH, CONFIG, RecordingPublisher

    db = open_and_migrate(f"sqlite:///{tmp_path / 'names.db'}")
    try:
        # One of each durable count, so that their families have samples.
        farmstats.add(farmstats.counter(farmstats.FINISHED, "sleep", "completed")
                      + farmstats.observation(farmstats.DURATION, "sleep", "", 3)
                      + farmstats.observation(farmstats.WAIT, "default", "pending", 3))
        client = testing.TestClient(create_app(CONFIG, RecordingPublisher()), headers=AUTH)
        client.simulate_get("/health")
        text = client.simulate_get("/metrics").text
    finally:
        db.close()
    with dispatcher_metrics.timed("chunk.finished"):  # labelled children exist once used
        pass
    dispatcher_metrics.RELEASE_BATCH.observe(1)
    collector = dispatcher_metrics._StateCollector(object())
    text += "\n".join(f"{m.name} 1" for m in collector.collect()) + "\n"
    text += generate_latest(REGISTRY).decode()
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return {name for name in names if name.startswith("corral_")}
