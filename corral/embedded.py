"""``corral up``: the whole farm in one process, for one machine.

The gateway (a threaded WSGI server), the dispatcher and N agents run as
threads. With no ``CORRAL_BROKER_URL`` they talk over kombu's ``memory://``
transport, which only works inside this process and has no priorities: the
dispatcher then releases one chunk per idle agent (``release_ahead=0``), so
the highest-priority pending chunk is always the next one to run.

Unless ``CORRAL_ADMIN_TOKEN`` is set, the first start makes an admin API token,
keeps it in ``<data dir>/admin.token`` (mode 0600) and prints it; the CLI's
client verbs read it from there.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from common import auth, sessions, signing
from common.bus import Bus
from common.config import Config, load_config
from common.db import open_and_migrate
from common.errors import ConfigError
from common.models import database_proxy

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
    if "CORRAL_AGENT_SECRET" not in env:
        # The agents live in this process: a fresh secret each run is all they need.
        overrides["agent_secret"] = secrets.token_hex(32)
    try:
        config = load_config(**overrides)
    except ConfigError as exc:
        print(f"corral up: {exc}")
        return 2
    os.makedirs(config.data_dir, exist_ok=True)
    open_and_migrate(config.resolved_database_url)
    if not config.storage_roots:
        os.makedirs(config.resolved_storage_roots[0], exist_ok=True)
    new_token = ensure_admin_token(config)

    dispatcher = Dispatcher(config)
    dispatcher.start()
    hostname = socket.gethostname()
    nodes = [Agent(config, f"{hostname}-{i + 1}", ["default"]) for i in range(agents)]
    for node in nodes:
        node.start()

    bus = Bus(config)
    bus.command_key = signing.command_key(config.command_key)
    publisher = bus.publisher()
    app = create_app(config, publisher)
    try:
        server = make_server(host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
    except OSError as exc:
        print(f"corral up: cannot listen on {host}:{port}: {exc}")
        _shutdown(nodes, dispatcher, publisher)
        return 2
    threading.Thread(target=server.serve_forever, name="gateway", daemon=True).start()
    _banner(host, port, config, agents, new_token, login_link(config, f"http://{host}:{port}"))

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


def admin_token_path(config: Config) -> str:
    return os.path.join(os.path.abspath(config.data_dir), "admin.token")


def ensure_admin_token(config: Config) -> str | None:
    """Make the admin token file on first start; return the new secret, or None if there was one.

    Nothing is made when ``CORRAL_ADMIN_TOKEN`` is set. A file whose token the
    database no longer knows (the database was replaced) is made anew.
    """
    if config.admin_token:
        return None
    path = admin_token_path(config)
    with database_proxy.connection_context():
        try:
            with open(path, encoding="utf-8") as handle:
                existing = handle.read().strip()
            principal = auth.authenticate(existing)
            if principal is not None and principal.allows(auth.ADMIN):
                return None
            log.warning("%s holds a token the database does not know; making a new one", path)
            os.unlink(path)
        except FileNotFoundError:
            pass
        _, secret = auth.create_token("admin-corral-up", [auth.ADMIN])
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secret + "\n")
    return secret


def login_link(config: Config, base_url: str) -> str:
    """A one-time link that logs a browser in as the farm's admin (``common.sessions``).

    The code sits in the fragment (after ``#``), which browsers never send: it
    reaches no server log, and the page replaces the address once it is used.
    """
    with database_proxy.connection_context():
        if config.admin_token:
            principal = auth.Principal(auth.ENV_ADMIN_NAME, frozenset({auth.ADMIN}))
        else:
            with open(admin_token_path(config), encoding="utf-8") as handle:
                principal = auth.authenticate(handle.read().strip())
            if principal is None:
                raise ConfigError(f"{admin_token_path(config)} holds a token the database does not know")
        code = sessions.issue_login_code(principal)
    return f"{base_url.rstrip('/')}/ui/login#code={code}"


def _banner(host: str, port: int, config: Config, agents: int, new_token: str | None, link: str) -> None:
    url = f"http://{host}:{port}"
    mode = "embedded memory:// broker (one machine only)" if config.embedded_broker else config.broker_url
    if config.admin_token:
        token_note, bearer = "admin token: $CORRAL_ADMIN_TOKEN", "$CORRAL_ADMIN_TOKEN"
    else:
        path = admin_token_path(config)
        token_note = (f"admin token (new; shown this once, kept in {path}, mode 0600):\n  {new_token}"
                      if new_token else f"admin token: in {path}")
        bearer = f"$(cat {path})"
    minutes = sessions.LOGIN_CODE_TTL_S // 60
    print(f"""
Corral is up: {url}
Open the dashboard (one-time login link, valid {minutes} minutes; `corral login-link` makes another):
  {link}
  broker:   {mode}
  database: {config.resolved_database_url}
  storage:  {os.pathsep.join(config.resolved_storage_roots)}
  agents:   {agents}
{token_note}

Submit a task:
  curl -s -X POST {url}/tasks -H "Authorization: Bearer {bearer}" -H 'Content-Type: application/json' \\
    -d '{json.dumps(SAMPLE_TASK)}'
Watch it:
  curl -s -H "Authorization: Bearer {bearer}" {url}/tasks/1
  .venv/bin/corral workers
API reference: {url}/docs
Stop with Ctrl-C.
""", flush=True)
