"""The heartbeat thread: liveness, the held lease and machine readings, over its own connection."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from agent import machine
from common.bus import Bus
from common.errors import BrokerUnavailable
from common.messages import AgentHeartbeat

log = logging.getLogger(__name__)

# Slow-changing readings (architecture, disk, memory, CPUs) go with every Nth beat.
LESS_FREQUENT_EVERY = 10


class Heartbeat:
    """Publishes an ``AgentHeartbeat`` now and then every ``interval_s`` until stopped."""

    def __init__(self, bus: Bus, agent: str, boot_id: str, interval_s: float,
                 lease: Callable[[], str | None], disk_path: str = "/",
                 ready: Callable[[], bool] = lambda: True) -> None:
        self.ready = ready  # False until the agent may publish (signed) events
        self.bus = bus
        self.agent = agent
        self.boot_id = boot_id
        self.interval_s = interval_s
        self.lease = lease
        self.disk_path = disk_path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{agent}", daemon=True)

    def start(self) -> None:
        machine.prime_cpu_percent()
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def beat(self, count: int) -> AgentHeartbeat:
        less = machine.less_frequent_readings(self.disk_path) if count % LESS_FREQUENT_EVERY == 0 else {}
        return AgentHeartbeat(
            agent=self.agent, sent_at=time.time(), boot_id=self.boot_id, lease_id=self.lease(),
            update_frequent=machine.frequent_readings(), update_less_frequent=less)

    def _loop(self) -> None:
        # A publisher of its own: kombu connections must not be shared between threads.
        publisher = self.bus.publisher()
        count = 0
        try:
            while not self._stop.is_set():
                try:
                    if self.ready():
                        publisher.event(self.beat(count), persistent=False)
                        count += 1
                except BrokerUnavailable as exc:
                    log.warning("heartbeat not sent: %s", exc)
                except Exception:  # noqa: BLE001 - a reading failed; the next beat may work
                    log.exception("heartbeat failed")
                self._stop.wait(self.interval_s)
        finally:
            publisher.close()
