"""``corral up``: the whole farm in one process, for one machine.

The gateway (a threaded WSGI server), the dispatcher and N agents run as
threads. With no ``CORRAL_BROKER_URL`` they talk over kombu's ``memory://``
transport, which only works inside this process and has no priorities: the
dispatcher then releases one chunk per idle agent (``release_ahead=0``), so
the highest-priority pending chunk is always the next one to run.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from common.bus import Bus
from common.config import load_config
from common.db import open_and_migrate
from common.errors import ConfigError

log = logging.getLogger("corral.up")
SAMPLE_TASK = {"type": "sleep", "priority": 50,
               "settings": {"frame_start": 1, "frame_end": 12, "chunk_size": 3, "seconds_per_frame": 0.5}}


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        log.debug("%s " + format, self.address_string(), *args)


def run_embedded(host: str, port: int, agents: int, data_dir: str | None) -> int:
    from agent.agent import Agent
    from api_gateway.app import create_app
    from dispatcher.service import Dispatcher

    env = os.environ
    broker = env.get("CORRAL_BROKER_URL", "memory://")
    overrides: dict[str, object] = {"broker_url": broker, "data_dir": data_dir}
    if broker.startswith("memory://") and "CORRAL_RELEASE_AHEAD" not in env:
        overrides["release_ahead"] = 0
    try:
        config = load_config(**overrides)
    except ConfigError as exc:
        print(f"corral up: {exc}")
        return 2
    os.makedirs(config.data_dir, exist_ok=True)
    open_and_migrate(config.resolved_database_url)

    dispatcher = Dispatcher(config)
    dispatcher.start()
    hostname = socket.gethostname()
    nodes = [Agent(config, f"{hostname}-{i + 1}", ["default"]) for i in range(agents)]
    for node in nodes:
        node.start()

    publisher = Bus(config).publisher()
    app = create_app(config, publisher)
    try:
        server = make_server(host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
    except OSError as exc:
        print(f"corral up: cannot listen on {host}:{port}: {exc}")
        _shutdown(nodes, dispatcher, publisher)
        return 2
    threading.Thread(target=server.serve_forever, name="gateway", daemon=True).start()
    _banner(host, port, config, agents)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    log.info("shutting down")
    server.shutdown()
    _shutdown(nodes, dispatcher, publisher)
    return 0


def _shutdown(nodes: list, dispatcher: object, publisher: object) -> None:
    for node in nodes:
        node.kill()
    dispatcher.stop()  # type: ignore[attr-defined]
    publisher.close()  # type: ignore[attr-defined]


def _banner(host: str, port: int, config: object, agents: int) -> None:
    url = f"http://{host}:{port}"
    mode = ("embedded memory:// broker (one machine only)" if config.embedded_broker  # type: ignore[attr-defined]
            else config.broker_url)  # type: ignore[attr-defined]
    print(f"""
Corral is up: {url}
  broker:   {mode}
  database: {config.resolved_database_url}
  agents:   {agents}

Submit a task:
  curl -s -X POST {url}/tasks -H 'Content-Type: application/json' \\
    -d '{json.dumps(SAMPLE_TASK)}'
Watch it:
  curl -s {url}/tasks/1
  curl -s {url}/workers
Stop with Ctrl-C.
""", flush=True)  # type: ignore[attr-defined]
