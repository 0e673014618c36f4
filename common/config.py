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
QUEUE_TYPES = ("classic", "quorum")
NAMESPACE_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings shared by the gateway, the dispatcher, the agents and the CLI."""

    # One address, or several separated by ';' (the nodes of a RabbitMQ cluster): every
    # connection tries them in turn, starting with the one that answered last.
    broker_url: str = AMQP_DEFAULT
    # "classic", or "quorum" for a RabbitMQ cluster: the durable queues become replicated
    # quorum queues (docs/architecture.md, "Running on a RabbitMQ cluster").
    queue_type: str = "classic"
    # AMQP heartbeats of the long-lived consuming connections (agents, dispatcher): a broker
    # or a peer silent for about twice this long is taken as gone, so a partitioned agent
    # reconnects and the broker drops its side. 0 turns them off.
    amqp_heartbeat_s: float = 30.0
    database_url: str = ""
    namespace: str = "corral"
    data_dir: str = "var"
    heartbeat_interval_s: float = 5.0
    agent_timeout_s: float = 30.0
    # How many chunks the dispatcher keeps released (published, not yet started)
    # beyond one per eligible idle agent, per chunk queue.
    release_ahead: int = 4
    tick_interval_s: float = 0.5
    # Standby dispatchers (dispatcher/leader.py): the active one holds a lease this long,
    # renewed every third of it; a standby takes over once it has expired.
    leader_lease_s: float = 5.0
    # A chunk released (published) but not started this long after is presumed lost by the
    # broker (a purged or deleted queue) and released again with a new lease; its broker
    # message expires at the same age (per-message TTL), so it cannot arrive late.
    release_timeout_s: float = 300.0
    default_max_retries: int = 3
    default_priority: int = 50
    blender: str = "blender"
    ffmpeg: str = "ffmpeg"
    blender_allow_python: bool = False
    kill_grace_s: float = 5.0
    log_tail_lines: int = 60
    progress_interval_s: float = 0.25
    # Security (docs/security.md). Paths a task reads or writes must resolve inside
    # one of these directories; empty means ``<data_dir>/storage``.
    storage_roots: tuple[str, ...] = ()
    # Accepted as an admin API token when set (bootstrap for deployments); never logged.
    admin_token: str = dataclasses.field(default="", repr=False)
    max_body_bytes: int = 1024 * 1024
    # Failed authentications allowed per client address: a bucket of ``burst`` that
    # refills at ``rate`` per second; an empty bucket answers 429.
    auth_failure_rate_per_s: float = 2.0
    auth_failure_burst: int = 10

    # The farm's agent secret (docs/security.md): agents sign their hello with it and
    # receive a per-agent key. Empty: agents are not authenticated (warned at start).
    agent_secret: str = dataclasses.field(default="", repr=False)
    # This node's own credential from ``corral agent enroll`` (or a file holding it): its hello is
    # signed with a key derived from it, and the dispatcher binds the agent's name to it.
    agent_credential: str = dataclasses.field(default="", repr=False)
    agent_credential_file: str = ""
    # Accept agents that prove nothing (a trusted network only); refused by default on a real broker.
    insecure_agents: bool = False
    # Signs gateway -> dispatcher commands; empty: the key kept in the database (common/commands.py).
    command_key: str = dataclasses.field(default="", repr=False)
    # TLS to the broker (amqps://): the CA that signed the broker's certificate, and an optional
    # client certificate and key. The broker's certificate is always verified, host name included.
    broker_ca_file: str = ""
    broker_cert_file: str = ""
    broker_key_file: str = ""
    # A directory of job-type files (docs/jobtypes.md), read by the gateway and the dispatcher
    # on top of the built-in types; empty: only the built-ins.
    job_types_dir: str = ""
    # The agent's command registry file (agent/registry.py); empty: the built-in commands found.
    agent_commands: str = ""
    # How old GET /workers and task totals may be (seconds, per gateway process); 0: always fresh.
    api_cache_s: float = 1.0
    # GET /metrics without a token (for a Prometheus that cannot send one); otherwise scope read.
    metrics_public: bool = False
    # Open GET /events streams per gateway process; each holds a serving thread (corral gateway --threads).
    event_streams_per_process: int = 48

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url.startswith("memory://")

    @property
    def resolved_agent_credential(self) -> str:
        """The node credential: ``CORRAL_AGENT_CREDENTIAL``, else the first line of its file."""
        if self.agent_credential or not self.agent_credential_file:
            return self.agent_credential.strip()
        with open(self.agent_credential_file, encoding="utf-8") as handle:
            return handle.readline().strip()

    @property
    def broker_urls(self) -> tuple[str, ...]:
        """The broker addresses, in the order given."""
        return tuple(url.strip() for url in self.broker_url.split(";") if url.strip())

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(self.data_dir).resolve() / 'corral.db'}"

    @property
    def resolved_storage_roots(self) -> tuple[str, ...]:
        """The storage roots as absolute paths with symlinks resolved."""
        roots = self.storage_roots or (str(Path(self.data_dir) / "storage"),)
        return tuple(os.path.realpath(root) for root in roots)

    def validate(self) -> Config:
        if not NAMESPACE_RE.match(self.namespace):
            raise ConfigError(
                f"CORRAL_NAMESPACE {self.namespace!r} must be 1-64 letters, digits, '.', '_' or '-'"
            )
        self._validate_broker()
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
        if self.leader_lease_s < 1:
            raise ConfigError("CORRAL_LEADER_LEASE must be at least 1 second")
        if self.release_timeout_s < 1:
            raise ConfigError("CORRAL_RELEASE_TIMEOUT must be at least 1 second")
        self._validate_security()
        return self

    def _validate_broker(self) -> None:
        urls = self.broker_urls
        if not urls:
            raise ConfigError("CORRAL_BROKER_URL is empty: give amqp://... or memory://")
        for url in urls:
            if not url.startswith(("amqp://", "amqps://", "pyamqp://", "memory://")):
                raise ConfigError(f"CORRAL_BROKER_URL {url!r} must be amqp://... or memory://")
        if len(urls) > 1 and any(url.startswith("memory://") for url in urls):
            raise ConfigError("CORRAL_BROKER_URL: memory:// cannot be one of several broker addresses")
        if self.amqp_heartbeat_s < 0:
            raise ConfigError("CORRAL_AMQP_HEARTBEAT must be 0 (off) or a positive number of seconds")
        if self.queue_type not in QUEUE_TYPES:
            raise ConfigError(f"CORRAL_QUEUE_TYPE {self.queue_type!r} must be " + " or ".join(QUEUE_TYPES))

    def _validate_security(self) -> None:
        if self.admin_token and (len(self.admin_token) < 16 or not self.admin_token.isprintable()
                                 or " " in self.admin_token):
            raise ConfigError("CORRAL_ADMIN_TOKEN must be at least 16 printable characters without spaces")
        if self.max_body_bytes < 1024:
            raise ConfigError("CORRAL_MAX_BODY_BYTES must be at least 1024")
        if self.auth_failure_rate_per_s <= 0 or self.auth_failure_burst < 1:
            raise ConfigError("CORRAL_AUTH_FAILURE_RATE must be positive and "
                              "CORRAL_AUTH_FAILURE_BURST at least 1")
        for name, path in (("CORRAL_BROKER_CA_FILE", self.broker_ca_file),
                           ("CORRAL_BROKER_CERT_FILE", self.broker_cert_file),
                           ("CORRAL_BROKER_KEY_FILE", self.broker_key_file),
                           ("CORRAL_AGENT_CREDENTIAL_FILE", self.agent_credential_file)):
            if path and not os.path.isfile(path):
                raise ConfigError(f"{name}: {path!r} is not a readable file")
        if self.broker_key_file and not self.broker_cert_file:
            raise ConfigError("CORRAL_BROKER_KEY_FILE needs CORRAL_BROKER_CERT_FILE (the client certificate)")
        for root in self.storage_roots:
            if not os.path.isabs(root):
                raise ConfigError(f"CORRAL_STORAGE_ROOTS: {root!r} is not an absolute path")


# environment variable -> (field, type)
_ENV = {
    "CORRAL_BROKER_URL": ("broker_url", str),
    "CORRAL_DATABASE_URL": ("database_url", str),
    "CORRAL_NAMESPACE": ("namespace", str),
    "CORRAL_QUEUE_TYPE": ("queue_type", str),
    "CORRAL_AMQP_HEARTBEAT": ("amqp_heartbeat_s", float),
    "CORRAL_DATA_DIR": ("data_dir", str),
    "CORRAL_HEARTBEAT_INTERVAL": ("heartbeat_interval_s", float),
    "CORRAL_AGENT_TIMEOUT": ("agent_timeout_s", float),
    "CORRAL_RELEASE_AHEAD": ("release_ahead", int),
    "CORRAL_TICK_INTERVAL": ("tick_interval_s", float),
    "CORRAL_LEADER_LEASE": ("leader_lease_s", float),
    "CORRAL_RELEASE_TIMEOUT": ("release_timeout_s", float),
    "CORRAL_BLENDER": ("blender", str),
    "CORRAL_FFMPEG": ("ffmpeg", str),
    "CORRAL_BLENDER_ALLOW_PYTHON": ("blender_allow_python", bool),
    "CORRAL_KILL_GRACE": ("kill_grace_s", float),
    "CORRAL_AGENT_SECRET": ("agent_secret", str),
    "CORRAL_API_CACHE": ("api_cache_s", float),
    "CORRAL_AGENT_CREDENTIAL": ("agent_credential", str),
    "CORRAL_AGENT_CREDENTIAL_FILE": ("agent_credential_file", str),
    "CORRAL_INSECURE_AGENTS": ("insecure_agents", bool),
    "CORRAL_COMMAND_KEY": ("command_key", str),
    "CORRAL_BROKER_CA_FILE": ("broker_ca_file", str),
    "CORRAL_BROKER_CERT_FILE": ("broker_cert_file", str),
    "CORRAL_BROKER_KEY_FILE": ("broker_key_file", str),
    "CORRAL_JOB_TYPES_DIR": ("job_types_dir", str),
    "CORRAL_AGENT_COMMANDS": ("agent_commands", str),
    "CORRAL_METRICS_PUBLIC": ("metrics_public", bool),
    "CORRAL_EVENT_STREAMS": ("event_streams_per_process", int),
    "CORRAL_STORAGE_ROOTS": ("storage_roots", tuple),
    "CORRAL_ADMIN_TOKEN": ("admin_token", str),
    "CORRAL_MAX_BODY_BYTES": ("max_body_bytes", int),
    "CORRAL_AUTH_FAILURE_RATE": ("auth_failure_rate_per_s", float),
    "CORRAL_AUTH_FAILURE_BURST": ("auth_failure_burst", int),
}


def _convert(name: str, raw: str, kind: type) -> object:
    if kind is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{name}={raw!r} is not a boolean (use true or false)")
    if kind is tuple:  # a list of paths, os.pathsep-separated like PATH
        return tuple(part for part in raw.split(os.pathsep) if part)
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
