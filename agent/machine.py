"""Facts and readings about the machine the agent runs on (psutil)."""
from __future__ import annotations

import platform
import socket

import psutil


def system_name() -> str:
    """Like ``Linux 6.1.0``."""
    return f"{platform.system()} {platform.release()}"


def network_identity() -> tuple[str, str]:
    """The first non-loopback IPv4 address and the MAC address of its interface."""
    addresses = psutil.net_if_addrs()
    for _name, entries in sorted(addresses.items()):
        ipv4 = [a.address for a in entries if a.family == socket.AF_INET
                and not a.address.startswith("127.")]
        if ipv4:
            macs = [a.address for a in entries if a.family == psutil.AF_LINK]
            return ipv4[0], macs[0] if macs else ""
    return "", ""


def prime_cpu_percent() -> None:
    """psutil's first cpu_percent() reading is 0.0; take it once so later ones mean something."""
    psutil.cpu_percent(interval=None)


def frequent_readings() -> dict[str, object]:
    one, five, fifteen = psutil.getloadavg()
    return {
        "load_average": {"1min": round(one, 2), "5min": round(five, 2), "15min": round(fifteen, 2)},
        "worker_cpu_percent": psutil.cpu_percent(interval=None),
    }


def less_frequent_readings(disk_path: str = "/") -> dict[str, object]:
    try:
        disk = psutil.disk_usage(disk_path).percent
    except OSError:
        disk = psutil.disk_usage("/").percent
    return {
        "worker_architecture": platform.machine(),
        "worker_disk_percent": disk,
        "worker_mem_percent": psutil.virtual_memory().percent,
        "worker_num_cpus": psutil.cpu_count() or 1,
    }
