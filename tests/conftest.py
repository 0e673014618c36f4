"""Shared fixtures: a real broker, a real database, a namespace per test.

The broker comes from ``CORRAL_TEST_BROKER_URL``, else a testcontainers
RabbitMQ where a Docker engine answers, else ``localhost``. When none answers
the broker tests skip on a laptop and fail under ``CI=true``.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCAL_BROKER = "amqp://guest:guest@localhost:5672//"
LOCAL_POSTGRES = "postgresql://postgres@localhost:5432/test"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _answers(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "localhost", parsed.port or 5672), timeout=2):
            return True
    except OSError:
        return False


def _docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def missing(what: str) -> None:
    """Skip on a laptop without ``what``; fail under CI=true, where nothing may be skipped silently."""
    if IN_CI:
        pytest.fail(f"{what} is not reachable and CI=true: failing instead of skipping")
    pytest.skip(f"{what} is not reachable")


@pytest.fixture(scope="session")
def broker_url():
    url = os.environ.get("CORRAL_TEST_BROKER_URL")
    if url:
        if not _answers(url):
            missing(f"broker {url}")
        yield url
        return
    if not _answers(LOCAL_BROKER) and _docker_answers():
        from testcontainers.rabbitmq import RabbitMqContainer

        with RabbitMqContainer("rabbitmq:3.12-management") as rabbit:
            host, port = rabbit.get_container_host_ip(), rabbit.get_exposed_port(5672)
            yield f"amqp://guest:guest@{host}:{port}//"
        return
    if not _answers(LOCAL_BROKER):
        missing("RabbitMQ on localhost:5672")
    yield LOCAL_BROKER


@pytest.fixture(scope="session")
def postgres_url():
    url = os.environ.get("CORRAL_TEST_POSTGRES_URL", LOCAL_POSTGRES)
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "localhost", parsed.port or 5432), timeout=2):
            pass
    except OSError:
        missing(f"PostgreSQL at {parsed.hostname}:{parsed.port}")
    return url


@pytest.fixture
def namespace():
    """A namespace of its own for each test; its queues are deleted afterwards."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'corral.db'}"


@pytest.fixture
def pg_database(postgres_url):
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    import psycopg2

    name = f"corral_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(postgres_url)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    parsed = urlparse(postgres_url)
    yield parsed._replace(path=f"/{name}").geturl()
    if admin.closed or _broken(admin):  # a test may have restarted the server
        admin = psycopg2.connect(postgres_url)
        admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.close()


def _broken(conn) -> bool:
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        return False
    except Exception:  # noqa: BLE001 - any failure means reconnect
        return True


def farm_environment(broker_url: str, namespace: str, database_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for Corral processes of one test: short heartbeats and timeouts, its own namespace."""
    env = dict(os.environ)
    env.update({
        "CORRAL_BROKER_URL": broker_url,
        "CORRAL_DATABASE_URL": database_url,
        "CORRAL_NAMESPACE": namespace,
        "CORRAL_DATA_DIR": str(tmp_path / "var"),
        "CORRAL_HEARTBEAT_INTERVAL": "0.5",
        "CORRAL_AGENT_TIMEOUT": "3",
        "CORRAL_TICK_INTERVAL": "0.2",
        "CORRAL_AGENT_SECRET": f"test-agent-secret-{namespace}",
        "CORRAL_STORAGE_ROOTS": str(tmp_path),
        # Tests read state right after changing it; the one-second read memo has its own tests.
        "CORRAL_API_CACHE": "0",
        "PYTHONUNBUFFERED": "1",
    })
    return env


@pytest.fixture
def farm_env(broker_url, namespace, sqlite_url, tmp_path):
    """Environment for Corral processes of one test on the real broker."""
    yield farm_environment(broker_url, namespace, sqlite_url, tmp_path)
    delete_namespace_queues(broker_url, namespace)


# Agent commands the job-type tests register (tests/integration/test_jobtypes.py).
TEST_COMMANDS = ("sim", "husk", "slowing")


def delete_namespace_queues(broker_url: str, namespace: str) -> None:
    """Delete the queues and exchanges a test's namespace may have created."""
    from kombu import Connection

    from common import topology as t

    names = [t.dispatcher_queue_name(namespace), t.heartbeat_queue_name(namespace),
             t.dead_queue_name(namespace)]
    for pool in ("default", "gpu", "cpu"):
        for command in ("noop", "sleep", "blender_render", "ffmpeg_encode", *TEST_COMMANDS):
            names.append(t.chunk_queue_name(namespace, pool, command))
    exchanges = [t.events_exchange_name(namespace), t.chunks_exchange_name(namespace),
                 t.control_exchange_name(namespace), t.dead_exchange_name(namespace)]
    try:
        with Connection(broker_url, connect_timeout=3) as conn:
            channel = conn.channel()
            for name in names:
                try:
                    channel.queue_delete(name)
                except Exception:  # noqa: BLE001 - a closed channel is reopened below
                    channel = conn.channel()
            for name in exchanges:
                try:
                    channel.exchange_delete(name)
                except Exception:  # noqa: BLE001
                    channel = conn.channel()
    except OSError:
        pass



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")

