"""Agent identity: signatures, wrapped keys and the dispatcher's verifier."""
from __future__ import annotations

import pytest

from common import messages, signing
from common.db import open_and_migrate
from common.models import Worker
from dispatcher.identity import Verifier

SECRET = "farm-secret-for-tests"
NOW = 10_000.0


@pytest.fixture
def verifier(tmp_path):
    db = open_and_migrate(f"sqlite:///{tmp_path}/s.db")
    db.connect(reuse_if_open=True)
    yield Verifier(SECRET)
    db.close()


def signed(signer, message):
    body = messages.encode(message)
    return body, signer.headers(message.kind, body)


def welcomed(agent, boot="boot-1"):
    signer = signing.Signer(agent, SECRET)
    key = signing.new_key()
    signer.accept(boot, "n1", signing.wrap(SECRET, agent, boot, "n1", key))
    return signer, key


def test_a_wrapped_key_unwraps_only_with_the_same_secret_name_boot_and_nonce():
    key = signing.new_key()
    wrapped = signing.wrap(SECRET, "a1", "b", "n", key)
    assert signing.unwrap(SECRET, "a1", "b", "n", wrapped) == key
    assert signing.unwrap("other", "a1", "b", "n", wrapped) != key
    assert signing.unwrap(SECRET, "a2", "b", "n", wrapped) != key
    assert wrapped != key.hex()


def test_a_fresh_hello_signed_with_the_farm_secret_is_accepted(verifier):
    hello = messages.AgentHello(agent="a1", hostname="h", system="Linux", pools=["default"],
                                commands=["sleep"], boot_id="b", sent_at=NOW)
    body, headers = signed(signing.Signer("a1", SECRET), hello)
    assert verifier.refusal(hello, body, headers, NOW) is None


def test_a_replayed_hello_and_one_signed_with_another_secret_are_refused(verifier):
    hello = messages.AgentHello(agent="a1", hostname="h", system="Linux", pools=[], commands=[],
                                boot_id="b", sent_at=NOW - 3600)
    body, headers = signed(signing.Signer("a1", SECRET), hello)
    assert "not fresh" in verifier.refusal(hello, body, headers, NOW)
    fresh = messages.AgentHello(agent="a1", hostname="h", system="Linux", pools=[], commands=[],
                                boot_id="b", sent_at=NOW)
    body, headers = signed(signing.Signer("a1", "guessed-secret"), fresh)
    assert "signature check failed" in verifier.refusal(fresh, body, headers, NOW)


def test_an_agent_cannot_report_on_another_agents_chunk(verifier):
    alice, alice_key = welcomed("alice")
    mallory, mallory_key = welcomed("mallory")
    verifier.remember("alice", alice_key)
    verifier.remember("mallory", mallory_key)
    report = messages.ChunkFinished(agent="alice", chunk_id=1, lease_id="L", outcome="completed",
                                    finished_at=NOW)
    body, headers = signed(alice, report)
    assert verifier.refusal(report, body, headers, NOW) is None
    # Mallory signs a report naming Alice, with her own key and either sender header.
    body, headers = signed(mallory, report)
    assert "does not name" in verifier.refusal(report, body, headers, NOW)
    headers[signing.AGENT_HEADER] = "alice"
    assert "signature check failed" in verifier.refusal(report, body, headers, NOW)


def test_a_tampered_body_and_an_unregistered_agent_are_refused(verifier):
    alice, key = welcomed("alice")
    verifier.remember("alice", key)
    beat = messages.AgentHeartbeat(agent="alice", sent_at=NOW)
    body, headers = signed(alice, beat)
    assert "signature check failed" in verifier.refusal(beat, body.replace(b"alice", b"alicf"), headers, NOW)
    stranger, _ = welcomed("stranger")
    beat = messages.AgentHeartbeat(agent="stranger", sent_at=NOW)
    body, headers = signed(stranger, beat)
    assert "has no key" in verifier.refusal(beat, body, headers, NOW)


def test_the_verifier_reads_keys_issued_before_a_restart_from_the_database(verifier):
    alice, key = welcomed("alice")
    Worker.create(name="alice", signing_key=key.hex())
    beat = messages.AgentHeartbeat(agent="alice", sent_at=NOW)
    body, headers = signed(alice, beat)
    assert verifier.refusal(beat, body, headers, NOW) is None


def test_without_a_secret_nothing_is_checked(tmp_path):
    beat = messages.AgentHeartbeat(agent="anyone", sent_at=NOW)
    assert Verifier("").refusal(beat, messages.encode(beat), {}, NOW) is None


def test_gateway_commands_are_not_agent_messages(verifier):
    cancel = messages.TaskCancel(task_id=1)
    assert verifier.refusal(cancel, messages.encode(cancel), {}, NOW) is None
