"""Schemathesis against the live gateway (gunicorn, RabbitMQ, a dispatcher): no 5xx, nothing off the document.

Every operation of the OpenAPI document gets valid and invalid requests
generated from the document served at /openapi.json, with a fixed seed
(``derandomize``) and a small number of examples, so the run is repeatable
and stays well under two minutes.
"""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api_gateway.openapi import load_document, operations
from tests.integration.farmproc import Farm

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 30
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def live(broker_url, tmp_path_factory):
    """A gateway and a dispatcher on the real broker, with a task and a worker to find."""
    import os
    import uuid

    from tests.conftest import delete_namespace_queues

    root = tmp_path_factory.mktemp("schemathesis")
    namespace = f"s{uuid.uuid4().hex[:10]}"
    env = dict(os.environ, CORRAL_BROKER_URL=broker_url, CORRAL_NAMESPACE=namespace,
               CORRAL_DATABASE_URL=f"sqlite:///{root / 'corral.db'}", CORRAL_DATA_DIR=str(root / "var"),
               CORRAL_AUTH_FAILURE_BURST="100000", PYTHONUNBUFFERED="1")
    (root / "logs").mkdir()
    farm = Farm(env, root / "logs")
    farm.gateway()
    farm.dispatcher()
    farm.submit("noop", {"frames": "1-4", "chunk_size": 2})
    schema = schemathesis.openapi.from_url(f"{farm.api}/openapi.json")
    yield farm, schema
    farm.close()
    delete_namespace_queues(broker_url, namespace)


def cases() -> list[tuple[str, str, str]]:
    """Each operation with valid inputs, and with invalid ones where it takes any input."""
    doc = load_document()
    out = []
    for path, method, operation in operations(doc):
        if operation.get("x-corral-stream"):  # never ends by itself; tests/unit/test_sessions_events.py
            continue
        takes_input = doc["paths"][path].get("parameters") or operation.get("parameters") \
            or operation.get("requestBody")
        out += [(path, method, mode) for mode in (("positive", "negative") if takes_input else ("positive",))]
    return out


@pytest.mark.parametrize(("path", "method", "mode"), cases())
def test_every_operation_answers_within_the_document_and_never_5xx(live, path, method, mode):
    farm, schema = live
    operation = schema[path][method]
    strategy = operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode))

    @settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    @given(case=strategy)
    def check(case):
        case.call_and_validate(base_url=farm.api, headers=farm.headers, checks=CHECKS, timeout=15)

    try:
        check()
    except Exception as exc:
        raise AssertionError(f"{method} {path} ({mode}): {exc}\n{farm.logs()}") from None
