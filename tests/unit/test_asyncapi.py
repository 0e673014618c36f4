"""docs/asyncapi.yaml says what common/messages.py and common/topology.py do, field for field."""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from common import messages, topology

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"


@pytest.fixture(scope="module")
def document():
    return yaml.safe_load(DOCUMENT.read_text())


def schema_of(hint: Any) -> dict[str, Any]:
    """The JSON schema a field of this Python type must have in the document."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        schema = schema_of(inner)
        return {**schema, "type": [schema["type"], "null"]}
    if hint is Any:
        return {}
    if origin is list:
        return {"type": "array", "items": schema_of(typing.get_args(hint)[0])}
    if origin is dict:
        value = typing.get_args(hint)[1]
        return {"type": "object", **({} if value is Any else {"additionalProperties": schema_of(value)})}
    return {"type": {int: "integer", float: "number", str: "string", bool: "boolean"}[hint]}


def without_docs(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k not in ("default", "description", "examples")}


def test_every_message_kind_is_in_the_document_and_nothing_else(document):
    documented = {m["name"] for m in document["components"]["messages"].values()}
    assert documented == set(messages.message_kinds())


@pytest.mark.parametrize("kind", sorted(messages.message_kinds()))
def test_each_messages_fields_types_and_required_fields_match_the_code(document, kind):
    cls = messages.message_kinds()[kind]
    message = document["components"]["messages"][cls.__name__]
    assert message["name"] == kind
    envelope = message["payload"]
    assert envelope["properties"]["kind"] == {"const": kind}
    data = envelope["properties"]["data"]
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    assert list(data["properties"]) == [f.name for f in fields]
    assert data["required"] == [f.name for f in fields if f.default is dataclasses.MISSING
                                and f.default_factory is dataclasses.MISSING]
    for field in fields:
        assert without_docs(data["properties"][field.name]) == schema_of(hints[field.name]), field.name
        default = (field.default if field.default is not dataclasses.MISSING
                   else field.default_factory() if field.default_factory is not dataclasses.MISSING else None)
        assert data["properties"][field.name].get("default") == default, field.name


def test_every_documented_message_is_sent_or_received_on_a_channel(document):
    text = yaml.safe_dump(document["channels"])
    for name in document["components"]["messages"]:
        assert f"#/components/messages/{name}" in text, name


def test_channel_and_queue_names_are_the_ones_the_topology_makes(document):
    ns = "{ns}"
    expected = {topology.events_exchange_name(ns), topology.dispatcher_queue_name(ns),
                topology.heartbeat_queue_name(ns), topology.chunk_queue_name(ns, "{pool}", "{command}"),
                topology.agent_queue_name(ns, "{agent}"), topology.dead_queue_name(ns)}
    assert set(document["channels"]) == expected
    agent_queue = topology.Topology("ns").agent_queue("a")
    flags = document["channels"][topology.agent_queue_name(ns, "{agent}")]["bindings"]["amqp"]["queue"]
    assert (flags["durable"], flags["autoDelete"], flags["exclusive"]) == (
        agent_queue.durable, agent_queue.auto_delete, bool(agent_queue.exclusive))
