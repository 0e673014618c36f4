"""Publishing the gateway's events, and remembering whether the broker took the last one."""
from __future__ import annotations

import logging
import threading
from typing import Protocol

from common.errors import BrokerUnavailable
from common.messages import Message

log = logging.getLogger(__name__)

UNKNOWN, OK, ERROR = "unknown", "ok", "error"


class EventPublisher(Protocol):
    """The part of ``common.bus.Publisher`` the gateway uses."""

    def event(self, message: Message) -> None: ...


class EventSender:
    """Sends events through a publisher and keeps the outcome of the last send.

    ``/health`` reports that outcome instead of opening a broker connection per
    request: the broker is "ok" if the last publish was confirmed.
    """

    def __init__(self, publisher: EventPublisher) -> None:
        self.publisher = publisher
        self._lock = threading.Lock()
        self._state = UNKNOWN

    @property
    def broker_state(self) -> str:
        return self._state

    def send(self, message: Message) -> None:
        try:
            self.publisher.event(message)
        except BrokerUnavailable:
            self._record(ERROR)
            raise
        self._record(OK)
        log.info("published %s %s", message.kind, message)

    def _record(self, state: str) -> None:
        with self._lock:
            self._state = state
