"""A small LAN of network namespaces for partition tests: ``ip netns``, veth pairs, one bridge.

The root namespace is the manager host: the bridge carries its address. Each
render host is a namespace whose veth pair ends on the bridge. Every name
carries a random tag, so runs never collide, and ``close`` removes everything
(namespaces, links, impairments) even after a failed test.

Impairing a link uses ``tc netem`` (delay and loss) where the kernel has it;
otherwise loss comes from an nftables rule inside the render namespace
(``numgen random``) and slowness from a ``tbf`` rate limit, which adds queueing
delay. ``impair`` says which one it used.
"""
from __future__ import annotations

import dataclasses
import secrets
import shutil
import subprocess


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def netns_problem() -> str:
    """An empty string when namespaces and veth pairs can be made here, else why not."""
    tools = (("ip", "iproute2"), ("tc", "iproute2"), ("ping", "iputils-ping"), ("nft", "nftables"))
    for tool, package in tools:
        if shutil.which(tool) is None:
            return f"the {tool} command ({package})"
    probe = f"corral-probe-{secrets.token_hex(3)}"
    made = run("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"ip netns add (not permitted here: {made.stderr.strip()})"
    run("ip", "netns", "del", probe, check=False)
    return ""


@dataclasses.dataclass
class Host:
    """One render host: its namespace, the veth end on the bridge, its address."""

    netns: str
    bridge_end: str
    inner_end: str
    address: str

    def command(self, *argv: str) -> list[str]:
        """``argv`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]


class Lan:
    """A bridge in the root namespace with ``count`` render-host namespaces on it."""

    def __init__(self, count: int) -> None:
        self.tag = secrets.token_hex(2)
        subnet = 100 + secrets.randbelow(150)
        self.prefix = f"10.231.{subnet}"
        self.manager_address = f"{self.prefix}.1"
        self.bridge = f"crb{self.tag}"
        self.hosts = [Host(f"corral-{self.tag}-r{i}", f"crh{self.tag}{i}", f"crn{self.tag}{i}",
                           f"{self.prefix}.{10 + i}") for i in range(1, count + 1)]
        self.impairment = ""

    def open(self) -> Lan:
        try:
            run("ip", "link", "add", self.bridge, "type", "bridge")
            run("ip", "addr", "add", f"{self.manager_address}/24", "dev", self.bridge)
            run("ip", "link", "set", self.bridge, "up")
            for host in self.hosts:
                self._add(host)
        except BaseException:
            self.close()
            raise
        return self

    def _add(self, host: Host) -> None:
        run("ip", "netns", "add", host.netns)
        run("ip", "link", "add", host.bridge_end, "type", "veth", "peer", "name", host.inner_end)
        run("ip", "link", "set", host.inner_end, "netns", host.netns)
        run("ip", "link", "set", host.bridge_end, "master", self.bridge)
        run("ip", "link", "set", host.bridge_end, "up")
        inside = ["ip", "netns", "exec", host.netns]
        run(*inside, "ip", "link", "set", "lo", "up")
        run(*inside, "ip", "addr", "add", f"{host.address}/24", "dev", host.inner_end)
        run(*inside, "ip", "link", "set", host.inner_end, "up")

    def reachable(self, host: Host) -> bool:
        ping = host.command("ping", "-c", "1", "-W", "1", self.manager_address)
        return run(*ping, check=False).returncode == 0

    def ping_loss(self, host: Host, count: int = 40) -> float:
        """Percent of ``count`` quick pings from the host to the manager that got no answer."""
        ping = host.command("ping", "-q", "-c", str(count), "-i", "0.05", "-W", "1", self.manager_address)
        out = run(*ping, check=False).stdout
        for part in out.replace(",", "\n").splitlines():
            if "packet loss" in part:
                return float(part.split("%")[0].strip())
        raise RuntimeError(f"no ping summary in: {out}")

    def cut(self, host: Host) -> None:
        """The host's cable is pulled: its link to the bridge goes down, packets vanish."""
        run("ip", "link", "set", host.bridge_end, "down")

    def heal(self, host: Host) -> None:
        run("ip", "link", "set", host.bridge_end, "up")

    def impair(self, host: Host, delay_ms: int, loss_percent: int, rate_kbit: int) -> str:
        """Make the host's link slow and lossy in both directions; returns how."""
        netem = ["netem", "delay", f"{delay_ms}ms", "loss", f"{loss_percent}%", "rate", f"{rate_kbit}kbit"]
        ends = [("ip", "netns", "exec", host.netns, "tc"), ("tc",)]
        devices = [host.inner_end, host.bridge_end]
        if run(*ends[0], "qdisc", "add", "dev", devices[0], "root", *netem, check=False).returncode == 0:
            run(*ends[1], "qdisc", "add", "dev", devices[1], "root", *netem)
            self.impairment = f"tc netem delay {delay_ms}ms loss {loss_percent}% rate {rate_kbit}kbit"
            return self.impairment
        # No netem in this kernel: tbf for a slow link, nftables for random loss (both directions).
        burst = max(1600, rate_kbit * 1000 // 8 // 50)
        for tc, dev in zip(ends, devices, strict=True):
            run(*tc, "qdisc", "add", "dev", dev, "root", "tbf", "rate", f"{rate_kbit}kbit",
                "burst", str(burst), "latency", f"{max(delay_ms, 50) * 4}ms")
        nft = host.command("nft")
        run(*nft, "add", "table", "inet", "corral_loss")
        for hook in ("input", "output"):
            run(*nft, "add", "chain", "inet", "corral_loss", hook,
                f"{{ type filter hook {hook} priority 0; }}")
            run(*nft, "add", "rule", "inet", "corral_loss", hook,
                "numgen", "random", "mod", "100", "<", str(loss_percent), "drop")
        self.impairment = (f"tbf rate {rate_kbit}kbit (queueing delay) + nftables random loss "
                           f"{loss_percent}% each way (no netem in this kernel)")
        return self.impairment

    def clear(self, host: Host) -> None:
        """Remove every impairment from the host's link."""
        run(*host.command("tc", "qdisc", "del", "dev", host.inner_end, "root"), check=False)
        run("tc", "qdisc", "del", "dev", host.bridge_end, "root", check=False)
        run(*host.command("nft", "delete", "table", "inet", "corral_loss"), check=False)

    def close(self) -> None:
        for host in self.hosts:
            run("ip", "link", "del", host.bridge_end, check=False)
            run("ip", "netns", "del", host.netns, check=False)
        run("ip", "link", "del", self.bridge, check=False)
