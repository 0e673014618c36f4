"""Certificates made at test time (openssl) and a RabbitMQ node of our own with a TLS listener.

The node is ``corral-tls@localhost`` (AMQP 5711, AMQPS 5712, distribution 25711),
with its own data, log, config and Erlang cookie under a temporary directory,
and no plugins; it never touches the shared broker. Its TLS listener requires
a client certificate signed by the test CA.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

NODE = "corral-tls@localhost"
AMQP_PORT, AMQPS_PORT, DIST_PORT = 5711, 5712, 25711


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_ca: Path  # a CA that signed nothing here: trusting only it must fail


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(folder: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem",
             "-days", "2", "-subj", f"/CN=Corral test {name}", cwd=folder)


def _leaf(folder: Path, name: str, extensions: str) -> None:
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={name}", cwd=folder)
    (folder / f"{name}.ext").write_text(extensions)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=folder)


def make_certificates(folder: Path) -> Certificates:
    """A CA, a server certificate for the name ``localhost`` only, a client certificate, a rogue CA."""
    folder.mkdir(parents=True, exist_ok=True)
    _ca(folder, "ca")
    _ca(folder, "rogue")
    _leaf(folder, "server", "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _leaf(folder, "client", "extendedKeyUsage=clientAuth\n")
    for key in folder.glob("*.key"):
        key.chmod(0o600)
    return Certificates(folder / "ca.pem", folder / "server.pem", folder / "server.key",
                        folder / "client.pem", folder / "client.key", folder / "rogue.pem")


def server_script() -> str | None:
    """The real rabbitmq-server script (not the Debian wrapper, which would switch users)."""
    found = shutil.which("rabbitmq-server")
    if found is None:
        return None
    real = Path(os.path.realpath(found))
    direct = real.parent / "rabbitmq-server"
    return str(direct if direct.exists() and direct.resolve() != real else real)


def ports_free() -> bool:
    for port in (AMQP_PORT, AMQPS_PORT, DIST_PORT):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return False
    return True


class TLSBroker:
    """``start`` the node in the foreground as a child process group; ``stop`` ends that group."""

    def __init__(self, folder: Path, certs: Certificates) -> None:
        self.folder, self.certs = folder, certs
        self.proc: subprocess.Popen | None = None

    def _environment(self) -> dict[str, str]:
        base = self.folder
        for name in ("mnesia", "log", "home"):
            (base / name).mkdir(parents=True, exist_ok=True)
        (base / "enabled_plugins").write_text("[].\n")
        (base / "rabbitmq-env.conf").write_text("")  # not the system's, which names the shared node
        (base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{AMQP_PORT}\n"
            f"listeners.ssl.default = 127.0.0.1:{AMQPS_PORT}\n"
            f"ssl_options.cacertfile = {self.certs.ca}\n"
            f"ssl_options.certfile = {self.certs.server_cert}\n"
            f"ssl_options.keyfile = {self.certs.server_key}\n"
            "ssl_options.verify = verify_peer\n"
            "ssl_options.fail_if_no_peer_cert = true\n")
        return {**os.environ, "HOME": str(base / "home"), "RABBITMQ_NODENAME": NODE,
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": str(AMQP_PORT),
                "RABBITMQ_DIST_PORT": str(DIST_PORT), "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
                "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
                "RABBITMQ_MNESIA_BASE": str(base / "mnesia"), "RABBITMQ_LOG_BASE": str(base / "log"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
                "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"), "ERL_EPMD_ADDRESS": "127.0.0.1",
                "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}"}

    def start(self, script: str) -> None:
        log = open(self.folder / "node.out", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen([script], env=self._environment(), stdout=log, stderr=subprocess.STDOUT,
                                     cwd=self.folder, start_new_session=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self) -> str:
        return (self.folder / "node.out").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
