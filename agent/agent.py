"""The render-node agent: takes chunks from the broker, runs them, reports events.

Threads, each with its own broker connection (kombu connections are not
thread-safe): the consumer thread (chunk and control queues, reconnects), the
heartbeat thread, and one runner thread per held chunk that reports through
the shared, thread-safe ``Publisher``.

Taking a chunk, in the order the dispatcher relies on: cancel the chunk
consumers, publish ``ChunkStarted`` (confirmed), ack the delivery (the lease,
kept alive by heartbeats, holds the chunk from then on), run it, publish
``ChunkFinished``, consume again. A command that finishes at once (``noop``)
runs in the consumer thread with the consumers left on: run, publish one
``ChunkFinished`` carrying the start (confirmed), ack; the next delivery is
already on its way.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from kombu import Connection, Consumer
from kombu.exceptions import ChannelError

from agent import executors, machine
from agent.errors import AgentStartError, ChunkRefused, PreflightFailed, UnsupportedParams
from agent.halts import HaltSet
from agent.heartbeat import Heartbeat
from agent.parsers import Parser, Progress
from agent.parsers.base import RefusedParser
from agent.registry import Registry, default_registry
from agent.runner import ChunkRun, Result
from common import storage
from common.bus import CONNECTION_ERRORS, CONTENT_TYPE, Bus, decode_or_dead_letter, is_not_found
from common.config import Config
from common.errors import BrokerUnavailable, ConfigError, ValidationError
from common.frames import expand
from common.messages import (
    WORKER_ACTIONS,
    AgentGoodbye,
    AgentHello,
    ChunkAssign,
    ChunkFinished,
    ChunkProgress,
    ChunkStarted,
    ControlAbort,
    ControlHalt,
    ControlPools,
    ControlResume,
    ControlRevoke,
    ControlSleep,
    ControlStop,
    ControlWelcome,
    Message,
)
from common.signing import Signer

log = logging.getLogger(__name__)

BUSY_DRAIN_S = 0.01
IDLE_DRAIN_S = 0.5
MAX_RECONNECT_DELAY_S = 30.0
HELLO_RETRY_S = 5.0
TOPOLOGY_RETRY_S = 1.0
EXIT_REVOKED = 77  # EX_NOPERM: the operator revoked this node; restarting it will not help
# Commands that run inside the agent and finish at once (no child process).
INLINE_COMMANDS = frozenset({"noop"})
# Exit codes of the agent process: 0 after a stop (signal, `control.stop` stop or stop_now);
# EXIT_RESTART (EX_TEMPFAIL) after `control.stop` restart, which supervisors restart on.
EXIT_OK, EXIT_RESTART = 0, 75


class ChunkLog(logging.LoggerAdapter):
    """Prefixes every line with the chunk's ids, bound once."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['ids']}] {msg}", kwargs


@dataclasses.dataclass
class Held:
    """The chunk this agent holds: its assignment, its attempt and the runner thread."""

    assign: ChunkAssign
    run: ChunkRun
    thread: threading.Thread | None = None
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    log: Any = log


class Agent:
    """One render node. ``start``/``stop``/``kill`` like every Corral service."""

    def __init__(self, config: Config, name: str, pools: list[str],
                 registry: Registry | None = None, bus: Bus | None = None) -> None:
        self.config = config
        self.name = name
        self.pools = list(pools) or ["default"]
        self.registry = registry if registry is not None else default_registry(config)
        self.bus = bus or Bus(config)
        self.topology = self.bus.topology
        self.publisher = self.bus.publisher()  # shared by the consumer and runner threads
        self.boot_id = uuid.uuid4().hex
        # With a credential (or the farm's bootstrap secret), every event is signed, the agent
        # declares nothing (its broker user may not), and no chunk is taken before the
        # dispatcher's welcome brings this process its key.
        self.signer = _signer(config, name)
        self.bus.signer = self.signer
        self.bus.passive = self.signer is not None
        self.exit_code = 0
        self._attached = False
        self._hello_sent_at = 0.0
        self.halted = HaltSet()
        self.held: Held | None = None
        self._stop_requested = threading.Event()
        self._kill_requested = threading.Event()
        self._ready = threading.Event()
        self._finished = threading.Event()
        self._chunk_consumers: list[Consumer] = []
        self._chunk_channel: Any = None
        # Operator control (control.stop / control.sleep): the exit code and the goodbye's reason.
        self.exit_code = EXIT_OK
        self._stop_reason = ""
        self.asleep = False
        self._consuming = False
        self._connected_once = False
        self._reconnect_delay_s = 1.0
        self._thread = threading.Thread(target=self._serve, name=f"agent-{name}", daemon=True)
        self._heartbeat = Heartbeat(self.bus, name, self.boot_id, config.heartbeat_interval_s,
                                    self._held_lease, disk_path=config.data_dir, ready=self._welcomed)

    # -- lifecycle ------------------------------------------------------------------

    def start(self, timeout: float | None = 30.0) -> None:
        """Connect and say hello; returns once registered (or raises AgentStartError)."""
        log.info("agent %s starting: pools %s, commands %s", self.name, self.pools, self.registry.commands)
        self._thread.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ready.wait(0.1):
            if self._finished.is_set():
                return  # stopped before it ever connected
            if deadline is not None and time.monotonic() > deadline:
                self.kill(timeout=5)
                raise AgentStartError(f"agent {self.name} could not reach the broker in {timeout:g}s")
        self._heartbeat.start()

    def run(self) -> None:
        """Start and block until stopped (the CLI's main loop)."""
        self.start(timeout=None)
        while not self.wait(0.5):
            pass

    def wait(self, timeout: float | None = None) -> bool:
        """True once the agent has said goodbye and closed."""
        return self._finished.wait(timeout)

    def request_stop(self) -> None:
        """Stop taking chunks; finish the held one, then say goodbye. Does not block."""
        self._stop_requested.set()

    def request_kill(self) -> None:
        """Kill the held chunk's child and hand the chunk back at once. Does not block."""
        self._stop_requested.set()
        self._kill_requested.set()
        held = self.held
        if held is not None:
            held.run.cancel("declined", "agent stopping")

    def stop(self, timeout: float | None = None) -> bool:
        self.request_stop()
        return self.wait(timeout)

    def kill(self, timeout: float | None = None) -> bool:
        self.request_kill()
        return self.wait(timeout)

    # -- the consumer thread ------------------------------------------------------

    def _serve(self) -> None:
        """Run sessions until stopped; a lost broker (or a bug) restarts the session with backoff."""
        try:
            while True:
                try:
                    self._session()
                    return
                except (*CONNECTION_ERRORS, BrokerUnavailable) as exc:
                    if self._closing():
                        return
                    log.warning("broker connection lost (%s); reconnecting in %.1fs",
                                exc, self._reconnect_delay_s)
                except Exception:
                    if self._closing():
                        return
                    log.exception("agent %s consumer failed; restarting it in %.1fs",
                                  self.name, self._reconnect_delay_s)
                self._chunk_consumers, self._consuming = [], False
                self._kill_requested.wait(self._reconnect_delay_s)
                self._reconnect_delay_s = min(self._reconnect_delay_s * 2, MAX_RECONNECT_DELAY_S)
        finally:
            self._shut_down()

    def _closing(self) -> bool:
        return self._kill_requested.is_set() or (self._stop_requested.is_set() and self.held is None)

    def _session(self) -> None:
        """One broker connection: consume until stopped; connection errors propagate."""
        with self.bus.connect(heartbeat=self.config.amqp_heartbeat_s) as conn:
            if not self._wait_for_topology(conn):
                return
            self._attached = False
            if not self.bus.passive:
                self._declare_consumers(conn)
            self._say_hello()
            if self._connected_once:
                log.info("agent %s reconnected to %s", self.name, conn.as_uri(include_password=False))
            self._connected_once = True
            self._reconnect_delay_s = 1.0
            self._ready.set()
            while self._step(conn):
                pass

    def _wait_for_topology(self, conn: Connection) -> bool:
        """Check (or, unauthenticated, declare) the core topology; wait while the dispatcher has not
        made it yet. False when asked to stop meanwhile."""
        waited = False
        while not self._closing():
            try:
                self.bus.declare_core(conn.channel())
                if waited:
                    log.info("agent %s: the farm's exchanges and queues are there now", self.name)
                return True
            except ChannelError as exc:
                if not is_not_found(exc):
                    raise
                if not waited:
                    log.warning("agent %s: the farm's exchanges and queues do not exist yet (has the "
                                "dispatcher ever run on namespace %s?); waiting", self.name,
                                self.topology.namespace)
                waited = True
                self._kill_requested.wait(TOPOLOGY_RETRY_S)
        return False

    def _attach(self, conn: Connection) -> None:
        """Consume once the dispatcher has made this agent's queues (it does on our hello)."""
        channel = conn.channel()
        try:
            self.topology.agent_queue(self.name)(channel).queue_declare(passive=True)
        except ChannelError as exc:
            if not is_not_found(exc):
                raise
            return
        finally:
            channel.close()
        self._declare_consumers(conn)

    def _declare_consumers(self, conn: Connection) -> None:
        declare = not self.bus.passive
        control_channel = conn.channel()
        agent_queue = self.topology.agent_queue(self.name)
        control = Consumer(control_channel, [agent_queue], accept=[CONTENT_TYPE], auto_declare=declare,
                           on_message=functools.partial(self._on_control, agent_queue.name))
        control.consume()
        self._chunk_channel = conn.channel()
        # One unacked chunk at a time across every chunk queue of this agent. Quorum queues
        # refuse a channel-wide (global) prefetch: there each consumer gets one, and a
        # delivery that arrives while a chunk is held goes back to its queue (_on_chunk).
        self._chunk_channel.basic_qos(0, 1, self.topology.queue_type == "classic")
        self._chunk_consumers = self._new_chunk_consumers()
        self._consuming = False
        self._attached = True

    def _new_chunk_consumers(self) -> list[Consumer]:
        declare = not self.bus.passive
        return [Consumer(self._chunk_channel, [queue], accept=[CONTENT_TYPE], auto_declare=declare,
                         on_message=functools.partial(self._on_chunk, queue.name))
                for queue in self._chunk_queues()]

    def resubscribe(self, pools: list[str]) -> None:
        """Take chunks from ``pools`` from now on: swap the chunk consumers, keep the connection.

        Runs on the consumer thread (from a control message). A chunk being run is
        not touched; the new consumers start when the agent next wants work.
        """
        if sorted(pools) == sorted(self.pools):
            return
        log.info("agent %s: pools %s -> %s", self.name, ",".join(self.pools), ",".join(pools))
        self._set_consuming(False)
        self.pools = list(pools)
        self._chunk_consumers = self._new_chunk_consumers()  # declares the new queues

    def _chunk_queues(self) -> list[Any]:
        return [self.topology.chunk_queue(pool, command)
                for pool in self.pools for command in self.registry.commands]

    def _step(self, conn: Connection) -> bool:
        """One turn of the consumer loop; False once the agent should close."""
        held = self.held
        if held is not None and held.done.is_set():
            if held.thread is not None:
                held.thread.join()
            self.held = held = None
        if self._kill_requested.is_set() or (self._stop_requested.is_set() and held is None):
            self._set_consuming(False)
            return False
        if not self._welcomed() and time.monotonic() - self._hello_sent_at > HELLO_RETRY_S:
            log.warning("agent %s: no welcome from the dispatcher yet (is it running? is this node "
                        "enrolled, with this credential?); saying hello again", self.name)
            self._say_hello()
        if not self._attached:
            self._attach(conn)
        self._set_consuming(self._attached and held is None and not self._stop_requested.is_set()
                            and self._welcomed() and not self.asleep)
        busy = held is not None or self._stop_requested.is_set()
        try:
            conn.drain_events(timeout=BUSY_DRAIN_S if busy else IDLE_DRAIN_S)
        except TimeoutError:  # socket.timeout: nothing arrived
            pass
        conn.heartbeat_check()
        return True

    def _set_consuming(self, wanted: bool) -> None:
        if wanted == self._consuming:
            return
        # Set first: cancelling waits for the broker, and a delivery handled meanwhile
        # must see that this agent is no longer taking chunks.
        self._consuming = wanted
        for consumer in self._chunk_consumers:
            if wanted:
                consumer.consume()
            else:
                consumer.cancel()

    def _shut_down(self) -> None:
        held = self.held
        if held is not None:
            if self._kill_requested.is_set():
                held.run.cancel("declined", "agent stopping")
            if held.thread is not None:
                held.thread.join(self.config.kill_grace_s + 5)
        self._heartbeat.stop()
        reason = self._stop_reason or ("killed" if self._kill_requested.is_set() else "stopped")
        try:
            self.publisher.event(AgentGoodbye(agent=self.name, reason=reason, boot_id=self.boot_id))
        except BrokerUnavailable as exc:
            log.warning("goodbye not sent: %s", exc)
        self.publisher.close()
        log.info("agent %s %s", self.name, reason)
        self._finished.set()

    def _welcomed(self) -> bool:
        return self.signer is None or self.signer.welcomed.is_set()

    def _say_hello(self) -> None:
        self._hello_sent_at = time.monotonic()
        ip_address, mac_address = machine.network_identity()
        self.publisher.event(AgentHello(
            agent=self.name, hostname=socket.gethostname(), system=machine.system_name(),
            pools=self.pools, commands=self.registry.commands, ip_address=ip_address,
            mac_address=mac_address, versions=dict(self.registry.versions), pid=os.getpid(),
            boot_id=self.boot_id, sent_at=time.time(), update_frequent=machine.frequent_readings(),
            update_less_frequent=machine.less_frequent_readings(self.config.data_dir)))

    def _held_lease(self) -> str | None:
        held = self.held
        return held.assign.lease_id if held is not None else None

    # -- messages -------------------------------------------------------------------

    def _on_control(self, queue: str, message: Any) -> None:
        msg = decode_or_dead_letter(self.publisher, message, queue)
        if msg is None:
            return
        message.ack()
        held = self.held
        if isinstance(msg, ControlAbort):
            if held is not None and held.assign.lease_id == msg.lease_id:
                log.info("aborting chunk %s (lease %s): %s", msg.chunk_id, msg.lease_id, msg.reason)
                held.run.cancel("canceled", msg.reason or "aborted by the dispatcher")
        elif isinstance(msg, ControlHalt):
            self.halted.add(msg.task_id)
            if msg.action == "cancel" and held is not None and held.assign.task_id == msg.task_id:
                log.info("task %s canceled: killing its chunk %s", msg.task_id, held.assign.chunk_id)
                held.run.cancel("canceled", f"task {msg.task_id} canceled")
        elif isinstance(msg, (ControlPools, ControlStop, ControlSleep, ControlRevoke)):
            self._on_operator_control(msg)
        elif isinstance(msg, ControlResume):
            self.halted.discard(msg.task_id)
        elif isinstance(msg, ControlWelcome):
            if self.signer is not None and msg.agent == self.name and msg.boot_id == self.boot_id:
                first = not self.signer.welcomed.is_set()
                self.signer.accept(msg.boot_id, msg.nonce, msg.wrapped_key)
                if first:
                    log.info("agent %s: welcomed by the dispatcher; taking chunks", self.name)
        else:
            log.warning("ignoring unexpected %s on the control queue", msg.kind)

    def _on_operator_control(self, msg: ControlPools | ControlStop | ControlSleep | ControlRevoke) -> None:
        """Pools, stop actions, sleep windows and revocations the operator set through the dispatcher."""
        if msg.agent != self.name:
            return
        if isinstance(msg, ControlRevoke):
            log.error("agent %s: the operator revoked this node (%s); stopping", self.name, msg.reason)
            self.exit_code = EXIT_REVOKED
            self.request_kill()
        elif isinstance(msg, ControlPools):
            self.resubscribe(msg.pools)
        elif isinstance(msg, ControlSleep):
            if msg.asleep != self.asleep:
                log.info("agent %s: %s (%s)", self.name, "asleep: taking no chunks" if msg.asleep
                         else "awake: taking chunks again", msg.reason or "sleep schedule")
            self.asleep = msg.asleep
        elif msg.mode not in WORKER_ACTIONS:
            log.warning("agent %s: ignoring control.stop with unknown mode %r", self.name, msg.mode)
        else:
            # Repeats are harmless (the dispatcher re-sends after each hello); stop_now may escalate
            # a stop under way, and restart turns one into a restart.
            log.info("agent %s: %s requested by the operator", self.name, msg.mode)
            self._stop_reason = self._stop_reason or f"{msg.mode} requested by the operator"
            if msg.mode == "restart":
                self.exit_code = EXIT_RESTART
            if msg.mode == "stop_now":
                self.request_kill()
            else:
                self.request_stop()

    def _on_chunk(self, queue: str, message: Any) -> None:
        if not self._welcomed():  # taken in the instant of a revocation: hand it back
            message.requeue()
            return
        msg = decode_or_dead_letter(self.publisher, message, queue)
        if msg is None:
            return
        if not isinstance(msg, ChunkAssign):
            reason = f"{msg.kind} is not a chunk.assign"
            log.warning("dead-lettering a message from %s: %s", queue, reason)
            self.publisher.dead_letter_delivery(message, reason, queue)
            message.ack()
            return
        if self.held is not None or not self._consuming:
            # Delivered while this agent takes or holds another chunk (on quorum queues each
            # chunk consumer has its own prefetch of one, and a delivery can arrive while the
            # consumers are being cancelled): still the dispatcher's release, so it goes back
            # to its queue for the next idle agent.
            message.requeue()
            return
        reason = self._decline_reason(msg)
        if reason:
            log.info("declining chunk %s of task %s: %s", msg.chunk_id, msg.task_id, reason)
            # Not acked unless the decline is confirmed: otherwise the chunk comes back.
            self.publisher.event(self._finished_message(msg, Result("declined", Progress(), reason=reason)))
            message.ack()
            return
        started = ChunkStarted(agent=self.name, chunk_id=msg.chunk_id, lease_id=msg.lease_id,
                               started_at=time.time())
        if msg.command in INLINE_COMMANDS:
            self._run_inline(msg, started, message)
            return
        # Hold no second delivery while this one runs (it may run for hours).
        self._set_consuming(False)
        self.publisher.event(started)
        message.ack()
        self._launch(msg)

    def _run_inline(self, assign: ChunkAssign, started: ChunkStarted, message: Any) -> None:
        """A command that finishes at once: run it, report it finished, then ack.

        The attempt ended before a ``chunk.started`` could go out, so the one
        report carries its start (``started_at``): a report naming the lease is
        still confirmed before the ack (a crash before it redelivers the chunk;
        running a no-op twice is harmless). The chunk consumers stay on, so the
        broker sends the next chunk as soon as this delivery is acked.
        """
        held = self._hold(assign)
        result = self._outcome(held)
        finished = dataclasses.replace(self._finished_message(assign, result), started_at=started.started_at)
        self.publisher.event(finished)
        message.ack()
        held.done.set()
        self.held = None

    def _decline_reason(self, assign: ChunkAssign) -> str:
        if self._stop_requested.is_set():
            return "agent stopping"
        if self.asleep:
            return f"agent {self.name} is asleep (sleep schedule)"
        if self.name in assign.exclude_agents:
            return f"agent {self.name} is excluded"
        if self.registry.spec(assign.command) is None:
            return f"command {assign.command} is not supported by agent {self.name}"
        if assign.parser not in self.registry.parsers:
            return f"parser {assign.parser} is not supported by agent {self.name}"
        if assign.task_id in self.halted:
            return f"task {assign.task_id} is halted"
        if self.held is not None:
            return f"agent {self.name} is busy with chunk {self.held.assign.chunk_id}"
        return ""

    # -- running a chunk ------------------------------------------------------------

    def _hold(self, assign: ChunkAssign) -> Held:
        chunk_log = ChunkLog(log, {"ids": f"task {assign.task_id} chunk {assign.chunk_id} "
                                          f"attempt {assign.attempt} agent {self.name}"})
        parser = self._parser(assign, chunk_log)
        stall = assign.params.get("stall_timeout_s", assign.stall_timeout_s)  # the step's, else the task's
        held = Held(assign, ChunkRun(parser, self.config, functools.partial(self._progress, assign),
                                     chunk_log, stall_timeout_s=stall), log=chunk_log)
        self.held = held
        chunk_log.info("chunk released -> running (%s, frames %s)", assign.command, assign.frames)
        return held

    def _launch(self, assign: ChunkAssign) -> None:
        held = self._hold(assign)
        held.thread = threading.Thread(target=self._execute, args=(held,),
                                       name=f"chunk-{assign.chunk_id}", daemon=True)
        held.thread.start()

    def _parser(self, assign: ChunkAssign, chunk_log: ChunkLog) -> Parser:
        spec = assign.params.get("parser_spec", {})
        try:
            return self.registry.parsers[assign.parser](expand(assign.frames), spec)
        except ChunkRefused as exc:  # a bad pattern: _execute fails the chunk with the reason
            chunk_log.warning("parser refused: %s", exc)
            return RefusedParser(expand(assign.frames), str(exc))

    def _check_paths(self, assign: ChunkAssign) -> None:
        """Every path a chunk names must resolve inside this farm's storage roots, here too."""
        try:
            storage.check_params(assign.params, self.config.resolved_storage_roots)
        except ValidationError as exc:
            raise PreflightFailed(f"refused: {exc}") from None

    def _execute(self, held: Held) -> None:
        try:
            self._publish(self._finished_message(held.assign, self._outcome(held)), keep_trying=True)
        finally:
            held.done.set()

    def _outcome(self, held: Held) -> Result:
        """Run the chunk's command to its end; how the attempt ended (never raises)."""
        assign, chunk_log = held.assign, held.log
        try:
            if isinstance(held.run.parser, RefusedParser):
                raise UnsupportedParams(held.run.parser.reason)
            self._check_paths(assign)
            spec = self.registry.spec(assign.command)
            assert spec is not None  # checked before the chunk was taken
            command = executors.prepare(assign, spec)
            result = held.run.run(command)
        except ChunkRefused as exc:
            # Nothing ran, so the reason is the whole log of this attempt.
            result = Result("failed", held.run.parser.progress, reason=str(exc),
                            log_tail=f"corral-agent: {exc}")
        except Exception as exc:  # noqa: BLE001 - a bug must fail the chunk, not the agent
            chunk_log.exception("chunk crashed the runner")
            result = Result("failed", held.run.parser.progress, reason=f"agent error: {exc}",
                            log_tail=f"corral-agent: agent error: {exc}")
        level = logging.INFO if result.outcome == "completed" else logging.WARNING
        chunk_log.log(level, "running -> %s %s", result.outcome, result.reason)
        return result

    def _progress(self, assign: ChunkAssign, progress: Progress, log_tail: str) -> None:
        self._publish(ChunkProgress(
            agent=self.name, chunk_id=assign.chunk_id, lease_id=assign.lease_id,
            frames_done=list(progress.frames_done), frame_current=progress.frame_current,
            files=list(progress.files), log_tail=log_tail))

    def _finished_message(self, assign: ChunkAssign, result: Result) -> ChunkFinished:
        tail_lines = result.log_tail.splitlines()[-self.config.log_tail_lines:]
        return ChunkFinished(
            agent=self.name, chunk_id=assign.chunk_id, lease_id=assign.lease_id,
            outcome=result.outcome, finished_at=time.time(),
            frames_done=list(result.progress.frames_done), files=list(result.progress.files),
            exit_code=result.exit_code, reason=result.reason, log_tail="\n".join(tail_lines))

    def _publish(self, message: Message, keep_trying: bool = False) -> None:
        """Publish an event; a finished chunk is worth retrying until the agent is killed."""
        while True:
            try:
                self.publisher.event(message)
                return
            except BrokerUnavailable as exc:
                if not keep_trying or self._kill_requested.is_set():
                    log.warning("%s not sent: %s", message.kind, exc)
                    return
                log.warning("%s not sent yet (%s); retrying", message.kind, exc)
                self._kill_requested.wait(1.0)



def _signer(config: Config, name: str) -> Signer | None:
    """How this agent proves who it is; without anything, only an insecure or in-process farm takes it."""
    credential = config.resolved_agent_credential
    if credential or config.agent_secret:
        return Signer(name, config.agent_secret, credential)
    if not (config.insecure_agents or config.embedded_broker):
        raise ConfigError("this agent has no credential: enroll it (`corral agent enroll NAME`) and set "
                          "CORRAL_AGENT_CREDENTIAL_FILE, or set CORRAL_INSECURE_AGENTS=true on a trusted "
                          "network")
    return None
