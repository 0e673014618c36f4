"""The agent against the real RabbitMQ: as a thread (``Agent.start``) and as ``python -m agent``.

Chunks are published by hand on the chunk queues; the events the agent
publishes are read back from the dispatcher's and the heartbeat queues.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from agent.agent import Agent
from common import jobtypes
from common.bus import Bus
from common.config import load_config
from common.frames import format_ranges
from common.messages import (
    AgentGoodbye,
    AgentHeartbeat,
    AgentHello,
    ChunkAssign,
    ChunkFinished,
    ChunkProgress,
    ChunkStarted,
    ControlAbort,
    ControlHalt,
    decode,
)
from dispatcher.compilers import compile_task
from tests.conftest import missing

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]
ROOT = Path(__file__).resolve().parents[2]


class Events:
    """Reads what agents publish from one queue; ``wait`` polls until a predicate holds."""

    def __init__(self, bus: Bus, queue_factory) -> None:
        self.conn = bus.connection()
        channel = self.conn.channel()
        bus.declare_core(channel)
        self.queue = queue_factory()(channel)
        self.seen: list = []

    def poll(self) -> None:
        while (message := self.queue.get(no_ack=True)) is not None:
            self.seen.append(decode(message.body))

    def wait(self, predicate, timeout: float = 20.0, what: str = "event"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            found = [e for e in self.seen if predicate(e)]
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; seen: {[e.kind for e in self.seen]}")

    def for_chunk(self, chunk_id: int) -> list:
        self.poll()
        return [e for e in self.seen if getattr(e, "chunk_id", None) == chunk_id]

    def close(self) -> None:
        self.conn.release()


@pytest.fixture
def agent_env(farm_env):
    """These tests play the dispatcher's part by hand, unsigned (signed mode: the test at the end)."""
    env = {k: v for k, v in farm_env.items() if k != "CORRAL_AGENT_SECRET"}
    return {**env, "CORRAL_INSECURE_AGENTS": "true"}


@pytest.fixture
def config(agent_env):
    return load_config(agent_env, progress_interval_s=0.1, kill_grace_s=2.0)


@pytest.fixture
def bus(config):
    return Bus(config)


@pytest.fixture
def events(bus):
    reader = Events(bus, bus.topology.dispatcher_queue)
    yield reader
    reader.close()


@pytest.fixture
def publisher(bus):
    pub = bus.publisher()
    yield pub
    pub.close()


@pytest.fixture
def agent(config, bus):
    instance = Agent(config, f"node-{uuid.uuid4().hex[:6]}", ["default"], bus=bus)
    instance.start(timeout=20)
    yield instance
    instance.kill(timeout=15)


def compiled(type_name: str, settings: dict, index: int = 0):
    """A chunk of a task of a built-in job type, as the dispatcher's compiler makes it."""
    jobtype = jobtypes.task_type(type_name)
    return list(compile_task(jobtype, jobtype.validate(settings).settings))[index]


def assign(chunk_id: int, command: str = "sleep", params: dict | None = None, **kw) -> ChunkAssign:
    frames = kw.pop("frames", [[1, 3]])
    seconds = kw.pop("seconds", 0.2)
    if params is None and command == "sleep":
        params = compiled("sleep", {"frames": format_ranges(frames), "chunk_size": 100_000,
                                    "seconds_per_frame": seconds}).params
    return ChunkAssign(chunk_id=chunk_id, task_id=kw.pop("task_id", 1), lease_id=f"lease-{chunk_id}",
                       attempt=1, command=command, parser=kw.pop("parser", command), params=params or {},
                       frames=frames, **kw)


def blender_params(tmp_path: Path, filepath: str, output_path: str) -> dict:
    return compiled("blender_render", {"frames": "1-3", "chunk_size": 3, "filepath": filepath,
                                       "output_path": output_path, "format": "PNG"}).params


def is_finished(chunk_id: int):
    return lambda e: isinstance(e, ChunkFinished) and e.chunk_id == chunk_id


def sleeper_pid(events: Events, chunk_id: int) -> int:
    progress = events.wait(lambda e: isinstance(e, ChunkProgress) and e.chunk_id == chunk_id
                           and "sleeper pid" in e.log_tail, what="the sleeper's pid")
    line = next(x for x in progress.log_tail.splitlines() if x.startswith("sleeper pid"))
    return int(line.split()[2])


def gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_agent_says_hello_with_its_commands_and_versions(agent, events):
    hello = events.wait(lambda e: isinstance(e, AgentHello) and e.agent == agent.name)
    assert hello.pools == ["default"] and hello.pid == os.getpid() and hello.boot_id == agent.boot_id
    assert {"noop", "sleep"} <= set(hello.commands)
    assert hello.system.split()[0] == "Linux" and hello.hostname
    if shutil.which("blender"):
        assert "blender_render" in hello.commands and hello.versions["blender"].startswith("3.")


def test_agent_sends_heartbeats_with_real_machine_readings(agent, bus):
    beats = Events(bus, bus.topology.heartbeat_queue)
    try:
        first = beats.wait(lambda e: isinstance(e, AgentHeartbeat) and e.agent == agent.name)
        time.sleep(1.2)  # CORRAL_HEARTBEAT_INTERVAL is 0.5 s
        beats.poll()
    finally:
        beats.close()
    assert len([b for b in beats.seen if b.agent == agent.name]) >= 3
    assert set(first.update_frequent) == {"load_average", "worker_cpu_percent"}
    assert set(first.update_frequent["load_average"]) == {"1min", "5min", "15min"}
    assert first.update_less_frequent["worker_num_cpus"] == psutil.cpu_count()
    assert 0 < first.update_less_frequent["worker_mem_percent"] < 100
    assert first.lease_id is None and first.boot_id == agent.boot_id


def test_sleep_chunk_of_three_frames_is_started_then_progresses_then_completes(agent, events, publisher):
    publisher.chunk(assign(1), "default", 50)
    done = events.wait(is_finished(1))
    assert (done.outcome, done.frames_done, done.exit_code) == ("completed", [1, 2, 3], 0)
    assert "Frame 3 done" in done.log_tail
    chunk_events = events.for_chunk(1)
    assert isinstance(chunk_events[0], ChunkStarted) and chunk_events[-1] is done
    progress = [e for e in chunk_events if isinstance(e, ChunkProgress)]
    assert progress and all(e.lease_id == "lease-1" for e in progress)
    frames_seen = [e.frames_done for e in progress]
    assert frames_seen == sorted(frames_seen, key=len)  # cumulative


def test_heartbeats_carry_the_lease_of_the_running_chunk(agent, bus, events, publisher):
    beats = Events(bus, bus.topology.heartbeat_queue)
    try:
        publisher.chunk(assign(2, seconds=0.6), "default", 50)
        beats.wait(lambda e: isinstance(e, AgentHeartbeat) and e.lease_id == "lease-2", what="leased beat")
    finally:
        beats.close()
    events.wait(is_finished(2))


def test_blender_render_of_a_missing_file_fails_with_the_reason(agent, events, publisher, tmp_path):
    if "blender_render" not in agent.registry.commands:
        missing("Blender")
    nowhere = str(tmp_path / "nope.blend")
    params = blender_params(tmp_path, nowhere, str(tmp_path / "out" / "f_###"))
    publisher.chunk(assign(3, "blender_render", params), "default", 50)
    done = events.wait(is_finished(3))
    assert (done.outcome, done.reason) == ("failed", f"input filepath not found: {nowhere}")
    assert isinstance(events.for_chunk(3)[0], ChunkStarted)


def test_control_abort_kills_the_child_process_group(agent, events, publisher):
    publisher.chunk(assign(4, seconds=20), "default", 50)
    pid = sleeper_pid(events, 4)
    publisher.control(ControlAbort(chunk_id=4, lease_id="lease-4", reason="reassigned"), agent=agent.name)
    done = events.wait(is_finished(4), timeout=10)
    assert (done.outcome, done.reason) == ("canceled", "reassigned")
    assert gone(pid)


def test_control_abort_of_another_lease_is_ignored(agent, events, publisher):
    publisher.chunk(assign(5, seconds=0.3, frames=[[1, 2]]), "default", 50)
    sleeper_pid(events, 5)
    publisher.control(ControlAbort(chunk_id=5, lease_id="an-older-lease"), agent=agent.name)
    assert events.wait(is_finished(5)).outcome == "completed"


def test_halt_with_cancel_kills_the_running_chunk_and_declines_the_task_afterwards(agent, events, publisher):
    publisher.chunk(assign(6, seconds=20, task_id=42), "default", 50)
    pid = sleeper_pid(events, 6)
    publisher.control(ControlHalt(task_id=42, action="cancel"))
    done = events.wait(is_finished(6), timeout=10)
    assert (done.outcome, done.reason) == ("canceled", "task 42 canceled")
    assert gone(pid)
    publisher.chunk(assign(7, task_id=42), "default", 50)
    assert events.wait(is_finished(7)).reason == "task 42 is halted"


def test_an_excluded_agent_declines_the_chunk(agent, events, publisher):
    publisher.chunk(assign(8, exclude_agents=[agent.name]), "default", 50)
    done = events.wait(is_finished(8))
    assert (done.outcome, done.reason) == ("declined", f"agent {agent.name} is excluded")
    assert not [e for e in events.for_chunk(8) if isinstance(e, ChunkStarted)]


def start_agent_process(agent_env, name: str) -> subprocess.Popen:
    env = {**agent_env, "CORRAL_KILL_GRACE": "2"}
    return subprocess.Popen([sys.executable, "-m", "agent", "--name", name, "--pool", "default"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture
def agent_process(agent_env, events):
    name = f"proc-{uuid.uuid4().hex[:6]}"
    proc = start_agent_process(agent_env, name)
    events.wait(lambda e: isinstance(e, AgentHello) and e.agent == name, what="the process's hello")
    yield name, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def test_sigterm_lets_the_agent_process_finish_its_chunk_then_say_goodbye(agent_process, events, publisher):
    name, proc = agent_process
    publisher.chunk(assign(10, seconds=0.5), "default", 50)
    events.wait(lambda e: isinstance(e, ChunkStarted) and e.chunk_id == 10)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    done = events.wait(is_finished(10))
    assert (done.outcome, done.frames_done) == ("completed", [1, 2, 3])
    goodbye = events.wait(lambda e: isinstance(e, AgentGoodbye) and e.agent == name)
    assert events.seen.index(goodbye) > events.seen.index(done)


def test_a_second_sigterm_kills_the_child_and_hands_the_chunk_back(agent_process, events, publisher):
    name, proc = agent_process
    publisher.chunk(assign(11, seconds=20), "default", 50)
    pid = sleeper_pid(events, 11)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert proc.poll() is None  # still finishing the chunk
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    done = events.wait(is_finished(11))
    assert (done.outcome, done.reason) == ("declined", "agent stopping")
    assert gone(pid)
    events.wait(lambda e: isinstance(e, AgentGoodbye) and e.agent == name)


MAKE_SCENE = """
import bpy, sys
scene = bpy.context.scene
scene.render.engine = 'CYCLES'
scene.cycles.device = 'CPU'
scene.cycles.samples = 1
scene.cycles.use_denoising = False
scene.render.resolution_x, scene.render.resolution_y = 64, 48
scene.render.resolution_percentage = 100
bpy.ops.wm.save_as_mainfile(filepath=sys.argv[-1])
"""


@pytest.mark.blender
def test_a_real_blender_render_of_two_frames_writes_the_pngs(agent, events, publisher, tmp_path):
    if "blender_render" not in agent.registry.commands:
        missing("Blender")
    blend = tmp_path / "tiny.blend"
    subprocess.run([agent.config.blender, "-b", "--factory-startup", "--python-expr", MAKE_SCENE,
                    "--", str(blend)], check=True, capture_output=True, timeout=60)
    params = compiled("blender_render", {"frames": "1-2", "chunk_size": 2, "filepath": str(blend),
                                         "output_path": str(tmp_path / "out" / "frame_####")}).params
    publisher.chunk(assign(12, "blender_render", params, frames=[[1, 2]]), "default", 50)
    done = events.wait(is_finished(12), timeout=60)
    expected = [str(tmp_path / "out" / f"frame_000{n}.png") for n in (1, 2)]
    assert (done.outcome, done.frames_done, done.files) == ("completed", [1, 2], expected)
    assert all(Path(f).read_bytes().startswith(b"\x89PNG") for f in expected)
    assert "Saved: '" in done.log_tail


def test_ffmpeg_encode_turns_rendered_frames_into_a_video(agent, events, publisher, tmp_path):
    if "ffmpeg_encode" not in agent.registry.commands:
        missing("ffmpeg")
    # three odd-sized frames named like Blender's f_### output
    subprocess.run([agent.config.ffmpeg, "-v", "error", "-f", "lavfi", "-i", "color=c=red:s=63x47:d=1",
                    "-frames:v", "3", "-start_number", "1", str(tmp_path / "f_%03d.png")],
                   check=True, timeout=30)
    video = tmp_path / "video" / "out.mp4"
    params = compiled("blender_render", {
        "frames": "1-3", "filepath": str(tmp_path / "a.blend"), "output_path": str(tmp_path / "f_###"),
        "video": True, "video_path": str(video)}, index=-1).params
    publisher.chunk(assign(13, "ffmpeg_encode", params, parser="ffmpeg"), "default", 50)
    done = events.wait(is_finished(13), timeout=30)
    assert (done.outcome, done.frames_done) == ("completed", [1, 2, 3])
    assert video.stat().st_size > 0


def test_ffmpeg_encode_with_a_missing_frame_fails_with_the_reason(agent, events, publisher, tmp_path):
    if "ffmpeg_encode" not in agent.registry.commands:
        missing("ffmpeg")
    params = compiled("blender_render", {
        "frames": "1-2", "filepath": str(tmp_path / "a.blend"), "output_path": str(tmp_path / "f_###"),
        "video": True, "video_path": str(tmp_path / "out.mp4")}, index=-1).params
    publisher.chunk(assign(14, "ffmpeg_encode", params, parser="ffmpeg", frames=[[1, 2]]), "default", 50)
    done = events.wait(is_finished(14))
    assert (done.outcome, done.reason) == (
        "failed", f"exit code 1: Error: missing input frame 1: {tmp_path}/f_001.png")


def raw(message) -> bytes:
    return message.body if isinstance(message.body, bytes) else message.body.encode()


def test_with_a_farm_secret_the_agent_waits_for_its_welcome_and_then_signs_everything(farm_env):
    from kombu import Consumer

    from common import signing
    from common.messages import ControlWelcome, decode

    config = load_config(farm_env)
    bus = Bus(config)
    received = []
    with bus.connection() as conn:
        channel = conn.channel()
        bus.declare_core(channel)
        queue = bus.topology.dispatcher_queue()
        beats = bus.topology.heartbeat_queue()
        with Consumer(channel, [queue, beats], on_message=received.append):
            node = Agent(config, f"signed-{uuid.uuid4().hex[:6]}", ["default"])
            node.start(timeout=20)
            try:
                deadline = time.monotonic() + 10
                while not received and time.monotonic() < deadline:
                    try:
                        conn.drain_events(timeout=0.2)
                    except TimeoutError:
                        pass
                hello_raw = received[0]
                hello = decode(hello_raw.body)
                assert hello.kind == "agent.hello"
                assert signing.verify(signing.hello_key(config.agent_secret), raw(hello_raw),
                                      hello_raw.headers[signing.SIG_HEADER])
                time.sleep(1.5)  # unwelcomed: no heartbeat may go out
                for _ in range(5):
                    try:
                        conn.drain_events(timeout=0.2)
                    except TimeoutError:
                        pass
                assert [decode(m.body).kind for m in received] in (["agent.hello"], ["agent.hello"] * 2)
                key = signing.new_key()
                welcome = ControlWelcome(agent=node.name, boot_id=hello.boot_id, nonce="n1",
                                         wrapped_key=signing.wrap(config.agent_secret, node.name,
                                                                  hello.boot_id, "n1", key))
                publisher = bus.publisher()
                # As the dispatcher does on a hello: the agent's queues first (it may declare none).
                for command in node.registry.commands:
                    publisher.declare(bus.topology.chunk_queue("default", command))
                publisher.declare(bus.topology.agent_queue(node.name))
                publisher.control(welcome, node.name)
                publisher.close()
                deadline = time.monotonic() + 10
                beat = None
                while beat is None and time.monotonic() < deadline:
                    try:
                        conn.drain_events(timeout=0.2)
                    except TimeoutError:
                        pass
                    beat = next((m for m in received if decode(m.body).kind == "agent.heartbeat"), None)
                assert beat is not None, "no heartbeat after the welcome"
                assert beat.headers[signing.AGENT_HEADER] == node.name
                assert signing.verify(key, raw(beat), beat.headers[signing.SIG_HEADER])
            finally:
                node.kill(timeout=15)


def test_the_agent_refuses_a_chunk_whose_paths_leave_the_storage_roots(agent, publisher, events, tmp_path):
    outside = "/etc/corral-never.blend"
    params = blender_params(tmp_path, outside, str(tmp_path / "o_#"))
    publisher.chunk(assign(77, "blender_render", params, parser="blender_render"), "default", 50)
    finished = events.wait(is_finished(77))
    assert finished.outcome == "failed" and "refused" in finished.reason and "storage root" in finished.reason
