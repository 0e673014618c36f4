"""The machine the figures were taken on, for the table's header and docs/benchmarks.md."""
from __future__ import annotations

import os
import platform
import subprocess

import psutil


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _postgres_version() -> str:
    try:
        out = subprocess.run(["psql", "-h", "localhost", "-U", "postgres", "-Atc", "SHOW server_version"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip().split()[0] if out.returncode == 0 and out.stdout.strip() else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def describe() -> str:
    import celery
    import kombu

    from bench.broker import server_version

    ram = psutil.virtual_memory().total / 2**30
    return (f"{os.cpu_count()} cores ({_cpu_model()}), {ram:.0f} GiB RAM, "
            f"Python {platform.python_version()}, "
            f"RabbitMQ {server_version()}, PostgreSQL {_postgres_version()}, kombu {kombu.__version__}, "
            f"Celery {celery.__version__}")
