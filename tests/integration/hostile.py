"""A hostile render node for the security tests: ``python -m tests.integration.hostile ATTACK ...``.

It is a real, enrolled agent: it starts with its own credential and its own
broker user (from the environment, like any agent), is welcomed, and so holds a
valid signing key of its own. Then it tries one attack and prints, as one JSON
line, a list of ``{"try": ..., "outcome": ...}``: ``published`` when the broker
let it through (the dispatcher must then refuse it), or the broker's refusal.
"""
from __future__ import annotations

import argparse
import base64
import json
import socket
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlparse

import amqp
import amqp.exceptions

from agent.agent import Agent
from agent.registry import CommandSpec, Registry
from common import enrollment, messages, signing, topology
from common.bus import CONTENT_TYPE
from common.config import Config, load_config


def broker_try(config: Config, what: str, action: Callable[[Any], None]) -> dict[str, str]:
    """Run ``action`` on a fresh channel of this node's own broker user; say how the broker answered."""
    url = urlparse(config.broker_url)
    conn = amqp.Connection(f"{url.hostname}:{url.port or 5672}", userid=unquote(url.username or ""),
                           password=unquote(url.password or ""), virtual_host=unquote(url.path[1:]) or "/",
                           confirm_publish=True)
    conn.connect()
    try:
        action(conn.channel())
        outcome = "published"
    except amqp.exceptions.AccessRefused as exc:
        outcome = f"refused by the broker: {exc.reply_code} {exc.reply_text}"
    except amqp.exceptions.AMQPError as exc:
        outcome = f"failed: {exc!r}"
    finally:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - the broker may have closed it already
            pass
    return {"try": what, "outcome": outcome}


def publish(exchange: str, key: str, body: bytes, headers: dict[str, Any]) -> Callable[[Any], None]:
    return lambda ch: ch.basic_publish(amqp.Message(body, content_type=CONTENT_TYPE,
                                                    application_headers=headers), exchange, key)


class Attacker:
    def __init__(self, agent: Agent, args: argparse.Namespace) -> None:
        self.agent, self.args, self.config = agent, args, agent.config
        self.ns = agent.topology.namespace
        self.events = topology.events_exchange_name(self.ns)
        self.node_key = enrollment.node_key(self.config.resolved_agent_credential)

    def send(self, what: str, message: messages.Message, headers: dict[str, Any],
             key: str | None = None) -> dict[str, str]:
        body = messages.encode(message)
        return broker_try(self.config, what, publish(self.events, key or message.kind, body, headers))

    def own_signature(self, message: messages.Message, sender: str) -> dict[str, Any]:
        """Headers signed with this node's own, valid session key, naming ``sender``."""
        headers = self.agent.signer.headers(message.kind, messages.encode(message))
        return {**headers, signing.AGENT_HEADER: sender}

    def hello_as(self) -> list[dict[str, str]]:
        victim = self.args.target
        hello = messages.AgentHello(agent=victim, hostname="evil", system="Linux", pools=["default"],
                                    commands=["sleep"], boot_id=uuid.uuid4().hex, sent_at=time.time())
        sig = signing.sign(self.node_key, messages.encode(hello))
        return [self.send(f"hello as {victim}, signed with my own credential, naming {sender}", hello,
                          {signing.AGENT_HEADER: sender, signing.SIG_HEADER: sig})
                for sender in (victim, self.agent.name)]

    def report_on(self) -> list[dict[str, str]]:
        chunk, lease, victim = self.args.chunk, self.args.lease, self.args.target
        frames = list(range(1, 10_000))
        tries = []
        for agent_name in (self.agent.name, victim):
            for message in (messages.ChunkProgress(agent=agent_name, chunk_id=chunk, lease_id=lease,
                                                   frames_done=frames),
                            messages.ChunkFinished(agent=agent_name, chunk_id=chunk, lease_id=lease,
                                                   outcome="failed", finished_at=time.time(),
                                                   reason="forged")):
                tries.append(self.send(f"{message.kind} on chunk {chunk} as {agent_name}", message,
                                       self.own_signature(message, agent_name)))
        return tries

    def commands(self) -> list[dict[str, str]]:
        forged = [messages.TaskCancel(task_id=self.args.task),
                  messages.TaskUpdate(task_id=self.args.task, priority=0, status="paused"),
                  messages.WorkerUpdate(worker_id=self.args.worker, status="disabled")]
        tries = []
        for message in forged:
            headers = self.own_signature(message, self.agent.name)
            tries.append(self.send(f"{message.kind} with its own routing key", message, headers))
            tries.append(self.send(f"{message.kind} disguised as chunk.finished", message, headers,
                                   key="chunk.finished"))
        return tries

    def consume(self) -> list[dict[str, str]]:
        queues = [topology.chunk_queue_name(self.ns, self.args.victim_pool, "sleep"),
                  topology.agent_queue_name(self.ns, self.args.target)]
        tries = []
        for queue in queues:
            tries.append(broker_try(self.config, f"consume {queue}",
                                    lambda ch, q=queue: ch.basic_consume(q, callback=lambda m: None)))
            tries.append(broker_try(self.config, f"get from {queue}", lambda ch, q=queue: ch.basic_get(q)))
        return tries

    def topology_changes(self) -> list[dict[str, str]]:
        ns, mine = self.ns, topology.agent_queue_name(self.ns, self.agent.name)
        chunk_queue = topology.chunk_queue_name(ns, "default", "sleep")
        return [
            broker_try(self.config, "declare a queue", lambda ch: ch.queue_declare(f"{ns}.evil")),
            broker_try(self.config, f"delete {chunk_queue}", lambda ch: ch.queue_delete(chunk_queue)),
            broker_try(self.config, f"delete {ns}.dispatcher",
                       lambda ch: ch.queue_delete(topology.dispatcher_queue_name(ns))),
            broker_try(self.config, f"delete its own queue {mine}", lambda ch: ch.queue_delete(mine)),
            broker_try(self.config, "declare an exchange",
                       lambda ch: ch.exchange_declare(f"{ns}.evil", "topic")),
            broker_try(self.config, f"delete {self.events}", lambda ch: ch.exchange_delete(self.events)),
            broker_try(self.config, f"bind {mine} to every event (to read them)",
                       lambda ch: ch.queue_bind(mine, self.events, "#")),
        ]

    def replay(self) -> list[dict[str, str]]:
        tries = []
        with open(self.args.replay, encoding="utf-8") as handle:
            captured = json.load(handle)
        for item in captured:
            body = base64.b64decode(item["body"])
            tries.append(broker_try(self.config, item["what"],
                                    publish(self.events, "agent.hello", body, item["headers"])))
        own = messages.AgentHello(agent=self.agent.name, hostname=socket.gethostname(), system="Linux",
                                  pools=[self.args.pool], commands=self.agent.registry.commands,
                                  boot_id=self.agent.boot_id, sent_at=time.time())
        body = messages.encode(own)
        headers = {signing.AGENT_HEADER: self.agent.name,
                   signing.SIG_HEADER: signing.sign(self.node_key, body)}
        for what in ("its own fresh hello", "its own hello again (replay)"):
            tries.append(broker_try(self.config, what, publish(self.events, "agent.hello", body, headers)))
            time.sleep(1.0)  # the first must be applied before the copy arrives
        return tries


ATTACKS = {"hello-as": Attacker.hello_as, "report-on": Attacker.report_on, "commands": Attacker.commands,
           "consume": Attacker.consume, "topology": Attacker.topology_changes, "replay": Attacker.replay}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hostile")
    parser.add_argument("attack", choices=sorted(ATTACKS))
    parser.add_argument("--name", required=True)
    parser.add_argument("--pool", default="night")
    parser.add_argument("--target", default="honest")
    parser.add_argument("--victim-pool", default="default")
    parser.add_argument("--chunk", type=int, default=0)
    parser.add_argument("--lease", default="")
    parser.add_argument("--task", type=int, default=0)
    parser.add_argument("--worker", type=int, default=0)
    parser.add_argument("--replay", default="")
    args = parser.parse_args(argv)
    config = load_config()
    agent = Agent(config, args.name, [args.pool], Registry(specs={"noop": CommandSpec("noop", None)}))
    agent.start(timeout=30)
    if not agent.signer.welcomed.wait(30):
        print(json.dumps([{"try": "join the farm", "outcome": "never welcomed"}]))
        agent.kill(timeout=10)
        return 1
    try:
        print(json.dumps(ATTACKS[args.attack](Attacker(agent, args))), flush=True)
    finally:
        agent.kill(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
