"""One typed configuration object for every Corral process.

Every default lives here; ``CORRAL_*`` environment variables override them.
Durations carry their unit in the name.
"""
from __future__ import annotations

import dataclasses
import os
import re
import socket
from pathlib import Path

from common.errors import ConfigError

AMQP_DEFAULT = "amqp://guest:guest@localhost:5672//"
NAMESPACE_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings shared by the gateway, the dispatcher, the agents and the CLI."""

    broker_url: str = AMQP_DEFAULT
    database_url: str = ""
    namespace: str = "corral"
    data_dir: str = "var"
    heartbeat_interval_s: float = 5.0
    agent_timeout_s: float = 30.0
    # How many chunks the dispatcher keeps released (published, not yet started)
    # beyond one per eligible idle agent, per chunk queue.
    release_ahead: int = 1
    tick_interval_s: float = 0.5
    default_max_retries: int = 3
    default_priority: int = 50
    blender: str = "blender"
    ffmpeg: str = "ffmpeg"
    blender_allow_python: bool = False
    kill_grace_s: float = 5.0
    log_tail_lines: int = 60
    progress_interval_s: float = 0.25

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url.startswith("memory://")

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(self.data_dir).resolve() / 'corral.db'}"

    def validate(self) -> Config:
        if not NAMESPACE_RE.match(self.namespace):
            raise ConfigError(
                f"CORRAL_NAMESPACE {self.namespace!r} must be 1-64 letters, digits, '.', '_' or '-'"
            )
        if not self.broker_url.startswith(("amqp://", "amqps://", "pyamqp://", "memory://")):
            raise ConfigError(f"CORRAL_BROKER_URL {self.broker_url!r} must be amqp://... or memory://")
        url = self.resolved_database_url
        if not url.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ConfigError(f"CORRAL_DATABASE_URL {url!r} must be sqlite:///... or postgresql://...")
        if self.heartbeat_interval_s <= 0:
            raise ConfigError("CORRAL_HEARTBEAT_INTERVAL must be a positive number of seconds")
        if self.agent_timeout_s <= self.heartbeat_interval_s:
            raise ConfigError(
                "CORRAL_AGENT_TIMEOUT must be longer than CORRAL_HEARTBEAT_INTERVAL "
                f"({self.agent_timeout_s} <= {self.heartbeat_interval_s})"
            )
        return self


# environment variable -> (field, type)
_ENV = {
    "CORRAL_BROKER_URL": ("broker_url", str),
    "CORRAL_DATABASE_URL": ("database_url", str),
    "CORRAL_NAMESPACE": ("namespace", str),
    "CORRAL_DATA_DIR": ("data_dir", str),
    "CORRAL_HEARTBEAT_INTERVAL": ("heartbeat_interval_s", float),
    "CORRAL_AGENT_TIMEOUT": ("agent_timeout_s", float),
    "CORRAL_RELEASE_AHEAD": ("release_ahead", int),
    "CORRAL_TICK_INTERVAL": ("tick_interval_s", float),
    "CORRAL_BLENDER": ("blender", str),
    "CORRAL_FFMPEG": ("ffmpeg", str),
    "CORRAL_BLENDER_ALLOW_PYTHON": ("blender_allow_python", bool),
    "CORRAL_KILL_GRACE": ("kill_grace_s", float),
}


def _convert(name: str, raw: str, kind: type) -> object:
    if kind is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{name}={raw!r} is not a boolean (use true or false)")
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None


def load_config(env: dict[str, str] | None = None, **overrides: object) -> Config:
    """Build the config from defaults, then the environment, then explicit overrides."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for name, (field, kind) in _ENV.items():
        if name in env:
            values[field] = _convert(name, env[name], kind)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Config(**values).validate()  # type: ignore[arg-type]


def default_agent_name() -> str:
    return socket.gethostname()
