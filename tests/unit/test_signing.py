"""Agent identity: signatures, wrapped keys and the dispatcher's verifier."""
from __future__ import annotations

import pytest

from common import enrollment, messages, signing
from common.config import load_config
from common.db import open_and_migrate
from common.models import Worker
from dispatcher.identity import Verifier, startup_refusal

SECRET = "farm-secret-for-tests"
NOW = 10_000.0
COMMAND_KEY = signing.command_key("command-key-for-tests")


@pytest.fixture
def db(tmp_path):
    database = open_and_migrate(f"sqlite:///{tmp_path}/s.db")
    database.connect(reuse_if_open=True)
    yield database
    database.close()


@pytest.fixture
def verifier(db):
    return Verifier(load_config({}, agent_secret=SECRET), COMMAND_KEY)


def hello(agent="a1", sent_at=NOW, pools=("default",)):
    return messages.AgentHello(agent=agent, hostname="h", system="Linux", pools=list(pools),
                               commands=["sleep"], boot_id="b", sent_at=sent_at)


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


def test_with_insecure_agents_agent_messages_are_not_checked_but_commands_still_are(db):
    insecure = Verifier(load_config({}, insecure_agents=True), COMMAND_KEY)
    beat = messages.AgentHeartbeat(agent="anyone", sent_at=NOW)
    assert insecure.refusal(beat, messages.encode(beat), {}, NOW) is None
    cancel = messages.TaskCancel(task_id=1)
    assert "command signature check failed" in insecure.refusal(cancel, messages.encode(cancel), {}, NOW)


def test_a_command_needs_the_command_keys_signature_whatever_its_family(verifier):
    for command in (messages.TaskCancel(task_id=1), messages.WorkerUpdate(worker_id=1, status="disabled"),
                    messages.TaskUpdate(task_id=1, priority=99)):
        body = messages.encode(command)
        assert "command signature" in verifier.refusal(command, body, {}, NOW)
        forged = {signing.COMMAND_SIG_HEADER: signing.sign(signing.new_key(), body)}
        assert "command signature" in verifier.refusal(command, body, forged, NOW)
        good = {signing.COMMAND_SIG_HEADER: signing.sign(COMMAND_KEY, body)}
        assert verifier.refusal(command, body, good, NOW, routing_key=command.kind) is None


def test_a_message_whose_routing_key_is_not_its_kind_is_refused(verifier):
    cancel = messages.TaskCancel(task_id=1)
    body = messages.encode(cancel)
    headers = {signing.COMMAND_SIG_HEADER: signing.sign(COMMAND_KEY, body)}
    assert "does not match" in verifier.refusal(cancel, body, headers, NOW, routing_key="chunk.finished")


def test_an_enrolled_node_proves_its_own_name_and_no_other(verifier):
    _, alice_cred = enrollment.enroll("alice", ["default"])
    _, bob_cred = enrollment.enroll("bob")
    body, headers = signed(signing.Signer("alice", credential=alice_cred), hello("alice"))
    assert verifier.refusal(hello("alice"), body, headers, NOW) is None
    # Bob's credential cannot speak for Alice, nor can the farm secret once Alice is enrolled.
    for signer in (signing.Signer("alice", credential=bob_cred), signing.Signer("alice", SECRET)):
        body, headers = signed(signer, hello("alice"))
        assert "signature check failed" in verifier.refusal(hello("alice"), body, headers, NOW)


def test_an_enrolled_node_may_not_announce_pools_outside_its_enrollment(verifier):
    _, cred = enrollment.enroll("alice", ["default"])
    message = hello("alice", pools=("default", "gpu"))
    body, headers = signed(signing.Signer("alice", credential=cred), message)
    assert "enrolled for pools ['default'] only" in verifier.refusal(message, body, headers, NOW)


def test_a_revoked_node_and_an_unknown_one_are_refused_without_a_farm_secret(db):
    verifier = Verifier(load_config({}), COMMAND_KEY)
    _, cred = enrollment.enroll("alice")
    enrollment.revoke("alice")
    body, headers = signed(signing.Signer("alice", credential=cred), hello("alice"))
    assert "is revoked" in verifier.refusal(hello("alice"), body, headers, NOW)
    body, headers = signed(signing.Signer("zed", SECRET), hello("zed"))
    assert "not enrolled" in verifier.refusal(hello("zed"), body, headers, NOW)


def test_re_enrolling_rotates_the_credential(verifier):
    _, old = enrollment.enroll("alice")
    _, new = enrollment.enroll("alice")
    body, headers = signed(signing.Signer("alice", credential=old), hello("alice"))
    assert "signature check failed" in verifier.refusal(hello("alice"), body, headers, NOW)
    body, headers = signed(signing.Signer("alice", credential=new), hello("alice"))
    assert verifier.refusal(hello("alice"), body, headers, NOW) is None


def test_a_hello_not_newer_than_the_last_accepted_one_is_a_replay(verifier):
    _, cred = enrollment.enroll("alice")
    Worker.create(name="alice", hello_sent_at=NOW - 5)
    for sent_at in (NOW - 5, NOW - 10):
        body, headers = signed(signing.Signer("alice", credential=cred), hello("alice", sent_at))
        assert "not newer" in verifier.refusal(hello("alice", sent_at), body, headers, NOW)
    body, headers = signed(signing.Signer("alice", credential=cred), hello("alice", NOW - 4))
    assert verifier.refusal(hello("alice", NOW - 4), body, headers, NOW) is None


def test_a_dispatcher_on_a_real_broker_refuses_to_start_when_no_agent_can_authenticate(db):
    config = load_config({})
    assert "refusing to start" in startup_refusal(config)
    assert startup_refusal(load_config({}, insecure_agents=True)) is None
    assert startup_refusal(load_config({}, agent_secret=SECRET)) is None
    assert startup_refusal(load_config({}, broker_url="memory://")) is None
    enrollment.enroll("alice")
    assert startup_refusal(config) is None
