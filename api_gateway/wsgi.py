"""The WSGI entry point: ``gunicorn api_gateway.wsgi:application``.

The broker connection is made on first use in each process, never at import:
gunicorn forks its workers after importing this module, and a connection must
not be shared across a fork.
"""
from __future__ import annotations

import logging
import os
import threading

import falcon

from api_gateway.app import create_app
from common import signing
from common.bus import Bus, Publisher
from common.config import Config, load_config
from common.db import open_and_migrate
from common.errors import ConfigError
from common.messages import Message

log = logging.getLogger(__name__)

# A request waits at most this long for the broker before answering 503.
PUBLISH_GIVE_UP_S = 3.0


class LazyPublisher:
    """A ``Publisher`` created on the first event in each process."""

    def __init__(self, config: Config) -> None:
        self.bus = Bus(config)
        self._lock = threading.Lock()
        self._publisher: Publisher | None = None
        self._pid = 0

    def _current(self) -> Publisher:
        with self._lock:
            if self._publisher is None or self._pid != os.getpid():
                self._publisher = Publisher(self.bus, give_up_s=PUBLISH_GIVE_UP_S)
                self._pid = os.getpid()
            return self._publisher

    def event(self, message: Message) -> None:
        self._current().event(message)


def build_application(config: Config | None = None) -> falcon.App:
    """Load the config, open and migrate the database, and build the app."""
    try:
        config = config or load_config()
    except ConfigError as exc:
        raise SystemExit(f"corral gateway: {exc}") from None
    open_and_migrate(config.resolved_database_url)
    scheme = config.resolved_database_url.split(":", 1)[0]  # the URL may hold a password
    log.info("gateway ready: %s database, broker namespace %s", scheme, config.namespace)
    publisher = LazyPublisher(config)
    # Commands to the dispatcher are signed with a key agents never hold (common/signing.py).
    publisher.bus.command_key = signing.command_key(config.command_key)
    return create_app(config, publisher)


application = build_application()
