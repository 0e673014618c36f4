"""Every broker message round-trips through the one codec; bad ones raise MessageError."""
from __future__ import annotations

import json

import pytest

from common import messages
from common.errors import MessageError

SAMPLES = [
    messages.TaskSubmitted(task_id=1),
    messages.TaskUpdate(task_id=1, priority=90, status="paused"),
    messages.TaskCancel(task_id=2),
    messages.TaskBlocklistClear(task_id=2, worker_id=5),
    messages.TaskRetry(task_id=4),
    messages.FarmChanged(changes=[{"type": "chunk", "id": 7, "task": 2}], committed_at=1.5),
    messages.WorkerUpdate(worker_id=3, status="disabled"),
    messages.WorkerUpdate(worker_id=3, pools=["gpu"], action="stop", sleep_schedule_clear=True),
    messages.AgentHello(agent="a1", hostname="h", system="Linux 6.1", pools=["default"],
                        commands=["sleep"], versions={"blender": "3.4.1"}, boot_id="b"),
    messages.AgentHeartbeat(agent="a1", sent_at=1.5, update_frequent={"worker_cpu_percent": 3.0}),
    messages.AgentGoodbye(agent="a1", reason="SIGTERM"),
    messages.ChunkStarted(agent="a1", chunk_id=4, lease_id="L", started_at=2.0),
    messages.ChunkProgress(agent="a1", chunk_id=4, lease_id="L", frames_done=[1, 2], frame_current=2),
    messages.ChunkFinished(agent="a1", chunk_id=4, lease_id="L", outcome="completed", finished_at=3.0,
                           frames_done=[1, 2, 3], exit_code=0),
    messages.ChunkAssign(chunk_id=4, task_id=1, lease_id="L", attempt=1, command="sleep",
                         parser="sleep", params={"seconds_per_frame": 0.1}, frames=[[1, 3]]),
    messages.ControlHalt(task_id=1, action="cancel"),
    messages.ControlResume(task_id=1),
    messages.ControlWelcome(agent="a1", boot_id="b", nonce="n", wrapped_key="00ff"),
    messages.ControlAbort(chunk_id=4, lease_id="L"),
    messages.ControlPools(agent="a1", pools=["gpu", "default"]),
    messages.ControlStop(agent="a1", mode="restart"),
    messages.ControlSleep(agent="a1", asleep=True, reason="mon 09:00-19:00 UTC"),
    messages.ControlRevoke(agent="a1", reason="enrollment revoked"),
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: m.kind)
def test_every_message_kind_round_trips(message):
    assert messages.decode(messages.encode(message)) == message


def test_every_registered_kind_has_a_sample():
    assert {m.kind for m in SAMPLES} == set(messages.message_kinds())


def test_unknown_fields_are_ignored_so_schemas_can_grow():
    wire = json.loads(messages.encode(messages.TaskCancel(task_id=9)))
    wire["data"]["added_later"] = True
    assert messages.decode(json.dumps(wire).encode()) == messages.TaskCancel(task_id=9)


@pytest.mark.parametrize("body,reason", [
    (b"\xff\xfe", "not JSON"),
    (b"[]", "not a JSON object"),
    (b'{"kind": "nope", "version": 1, "data": {}}', "unknown message kind"),
    (b'{"kind": "task.cancel", "version": 0, "data": {"task_id": 1}}', "version"),
    (b'{"kind": "task.cancel", "version": 1, "data": {}}', "missing"),
    (b'{"kind": "task.cancel", "version": 1, "data": {"task_id": "1"}}', "wrong type"),
    (b'{"kind": "task.cancel", "version": 1, "data": {"task_id": true}}', "wrong type"),
    (b'{"kind": "chunk.progress", "version": 1, "data": {"agent": "a", "chunk_id": 1,'
     b' "lease_id": "L", "frames_done": [1, "2"]}}', "wrong type"),
])
def test_malformed_messages_raise_one_typed_error_saying_why(body, reason):
    with pytest.raises(MessageError, match=reason):
        messages.decode(body)
