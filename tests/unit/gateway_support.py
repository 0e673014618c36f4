"""What the in-process gateway tests share: an admin token, the config, a recording publisher."""
from __future__ import annotations

import pytest
from falcon import testing

from api_gateway.app import create_app
from common.config import load_config
from common.db import open_and_migrate
from common.errors import BrokerUnavailable

# The gateway is closed by default: these tests act as the admin (docs/security.md).
ADMIN = "test-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
CONFIG = load_config({}, admin_token=ADMIN, storage_roots=("/",))
NOW = 1_700_000_000.0


class RecordingPublisher:
    """Keeps every published message; raises BrokerUnavailable while ``down``."""

    def __init__(self) -> None:
        self.sent: list = []
        self.down = False

    def event(self, message) -> None:
        if self.down:
            raise BrokerUnavailable("the test broker is down")
        self.sent.append(message)


class StubFeed:
    """A change feed with no broker: tests publish into ``fanout`` themselves."""

    def __init__(self) -> None:
        from api_gateway.changefeed import Fanout

        self.fanout = Fanout()

    def start(self) -> None:
        pass


def open_stream(app, path: str, headers: dict[str, str], query: str = "", chunks: int = 1):
    """Call the WSGI app for a streaming answer; return (status, headers, the first ``chunks`` pieces)."""
    environ = testing.create_environ(path=path, query_string=query, headers=headers)
    start = testing.StartResponseMock()
    body = app(environ, start)
    try:
        iterator = iter(body)
        pieces = [next(iterator) for _ in range(chunks)] if start.status.startswith("200") else list(iterator)
    finally:
        if hasattr(body, "close"):
            body.close()
    return start.status, dict(start.headers), pieces


@pytest.fixture
def publisher():
    return RecordingPublisher()


@pytest.fixture
def client(tmp_path, publisher):
    """The real gateway app on a fresh SQLite database, acting as the admin."""
    db = open_and_migrate(f"sqlite:///{tmp_path}/c.db")
    yield testing.TestClient(create_app(CONFIG, publisher, clock=lambda: NOW, feed=StubFeed()), headers=AUTH)
    db.close()
