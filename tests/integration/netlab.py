"""A lab of hypervisor "hosts" on one machine: each host is a network namespace, joined to the
others by a veth into an underlay bridge in the root namespace (the VTEPs talk over it), and an
"internet" namespace reached through host 1's external (provider) interface.

What runs "on a host" runs inside its network namespace (``nsenter --net``): the network backend's bridges,
VXLAN devices, taps, dnsmasq and router namespaces, and the QEMU guests on the taps. ``python -m
tests.integration.netlab sync|launch`` is that host-side entry point.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
UNDERLAY = "10.250.{n}.{host}"
INTERNET_IP = "203.0.113.1"


def sh(*argv: str, check: bool = True, stdin: str | None = None, timeout: float = 120) -> str:
    res = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()} {res.stdout}")
    return res.stdout


@dataclass
class Host:
    name: str
    ns: str
    underlay_ip: str
    state_dir: Path

    def run(self, *argv: str, check: bool = True, stdin: str | None = None, timeout: float = 120) -> str:
        # nsenter, not ``ip netns exec``: the latter's private mount namespace would swallow the
        # namespaces the backend creates (their bind mounts in /run/netns vanish with it)
        return sh("nsenter", f"--net=/run/netns/{self.ns}", *argv, check=check, stdin=stdin, timeout=timeout)

    def helper(self, command: str, payload: dict[str, Any], timeout: float = 180) -> dict[str, Any]:
        out = self.run(
            sys.executable,
            "-m",
            "tests.integration.netlab",
            command,
            str(self.state_dir),
            self.name,
            self.underlay_ip,
            stdin=json.dumps(payload),
            timeout=timeout,
        )
        return dict(json.loads(out.strip().splitlines()[-1]))

    def sync(self, state: dict[str, Any]) -> dict[str, Any]:
        """What the agent's ``network_sync`` operation does, run on this host."""
        return self.helper("sync", state)

    def links(self) -> list[str]:
        return [ln.split(":")[1].strip().split("@")[0] for ln in self.run("ip", "-o", "link").splitlines()]


@dataclass
class Lab:
    """``tag`` keeps two labs (or a lab and a benchmark) apart on one machine."""

    tag: str
    workdir: Path
    n_hosts: int = 2
    subnet: int = 250
    hosts: list[Host] = field(default_factory=list)
    internet_ns: str = ""
    pids: list[int] = field(default_factory=list)

    @property
    def underlay_bridge(self) -> str:
        return f"{self.tag}ul"

    def up(self) -> Lab:
        br = self.underlay_bridge
        sh("ip", "link", "add", br, "type", "bridge")
        sh("ip", "addr", "add", f"10.{self.subnet}.0.1/24", "dev", br)
        sh("ip", "link", "set", br, "up")
        for n in range(1, self.n_hosts + 1):
            ns = f"{self.tag}-h{n}"
            host = Host(f"{self.tag}h{n}", ns, f"10.{self.subnet}.0.{10 + n}", self.workdir / f"h{n}")
            host.state_dir.mkdir(parents=True, exist_ok=True)
            self.hosts.append(host)
            sh("ip", "netns", "add", ns)
            outer = f"{self.tag}u{n}"
            sh("ip", "link", "add", outer, "type", "veth", "peer", "name", "ul0", "netns", ns)
            sh("ip", "link", "set", outer, "master", br, "up")
            host.run("ip", "link", "set", "lo", "up")
            host.run("ip", "addr", "add", f"{host.underlay_ip}/24", "dev", "ul0")
            host.run("ip", "link", "set", "ul0", "up")
        # the internet, reached through host 1's provider interface ext0
        self.internet_ns = f"{self.tag}-inet"
        sh("ip", "netns", "add", self.internet_ns)
        sh(
            "ip",
            "-n",
            self.hosts[0].ns,
            "link",
            "add",
            "ext0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            self.internet_ns,
        )
        self.internet("ip", "link", "set", "lo", "up")
        self.internet("ip", "addr", "add", f"{INTERNET_IP}/24", "dev", "eth0")
        self.internet("ip", "link", "set", "eth0", "up")
        return self

    def internet(self, *argv: str, check: bool = True, timeout: float = 60) -> str:
        return sh("ip", "netns", "exec", self.internet_ns, *argv, check=check, timeout=timeout)

    def down(self) -> None:
        """Kill everything in the lab's namespaces and delete them (and the underlay bridge)."""
        namespaces = [h.ns for h in self.hosts] + ([self.internet_ns] if self.internet_ns else [])
        for host in self.hosts:
            with contextlib.suppress(Exception):
                host.sync(
                    {"state": {"host_id": host.name}}
                )  # the backend removes its namespaces, dnsmasq, devices
        for ns in namespaces:
            for ns_pid in sh("ip", "netns", "pids", ns, check=False).split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(ns_pid), signal.SIGKILL)
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for ns in namespaces:
            sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", self.underlay_bridge, check=False)
        for n in range(1, self.n_hosts + 1):
            sh("ip", "link", "del", f"{self.tag}u{n}", check=False)


def guest_pids(state_dir: Path) -> list[int]:
    pids = []
    for f in (state_dir / "run").glob("*.pid"):
        with contextlib.suppress(ValueError, OSError):
            pids.append(int(f.read_text().strip()))
    return pids


# ---- host side (runs inside a host's namespace) ---------------------------------------------


def _sync(state_dir: Path, scope: str, underlay: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The agent's own ``network_sync`` operation (the control plane is not needed for it)."""
    from novacron.agent.runtime import AgentRuntime
    from novacron.network.linux import LinuxBackend

    backend = LinuxBackend.for_host(state_dir / "network", underlay, scope)
    runtime = AgentRuntime(None, None, network=backend)  # type: ignore[arg-type]
    started = time.monotonic()
    counts = asyncio.run(runtime.execute("network_sync", "", payload))
    return {**counts, "seconds": time.monotonic() - started}


def _driver(state_dir: Path, scope: str) -> Any:
    from novacron.virt.qemu import QemuDriver

    return QemuDriver(state_dir / "instances", state_dir / "run", "auto", bridge=None, tap_salt=scope)


def _spec(payload: dict[str, Any]) -> Any:
    from novacron.virt.base import InstanceSpec, Nic

    p = dict(payload)
    nics = tuple(Nic(**n) for n in p.pop("nics"))
    return InstanceSpec(
        nics=nics,
        mac=nics[0].mac,
        image_path=Path(p.pop("image_path")),
        kernel_path=Path(p.pop("kernel_path")),
        initrd_path=Path(p.pop("initrd_path")),
        **p,
    )


async def _vm(
    command: str, state_dir: Path, scope: str, underlay: str, payload: dict[str, Any]
) -> dict[str, Any]:
    """The agent's VM operations on this host (launch, live migration steps)."""
    from dataclasses import asdict

    from novacron.virt.migration import MigrationTarget

    driver = _driver(state_dir, scope)
    if command == "launch":
        spec = _spec(payload)
        await driver.launch(spec)
        return {"pid": driver.pid(spec.id), "console": str(driver.console_log(spec.id))}
    if command == "migrate_receive":
        spec = _spec(payload)
        target = await driver.migrate_receive(spec, underlay, "local")
        return {"target": asdict(target), "console": str(driver.console_log(spec.id))}
    if command == "migrate_send":
        stats = await driver.migrate_send(payload["id"], MigrationTarget(**payload["target"]))
        await driver.forget(payload["id"])
        return {"stats": stats.as_dict()}
    if command == "sample":
        sample = await driver.sample(payload["id"])
        return sample.as_dict() if sample else {}
    if command == "migrate_finish":
        await driver.migrate_finish(payload["id"], "local")
        return {"pid": driver.pid(payload["id"])}
    raise SystemExit(f"unknown command {command}")


def main() -> None:
    command, state_dir, scope, underlay = sys.argv[1:5]
    payload = json.loads(sys.stdin.read() or "{}")
    if command == "sync":
        out = _sync(Path(state_dir), scope, underlay, payload)
    else:
        out = asyncio.run(_vm(command, Path(state_dir), scope, underlay, payload))
    print(json.dumps(out))


if __name__ == "__main__":
    main()

#: the start of a lab guest's user-data: its DHCP lease on the console (``NETLAB-DHCP <ip>``, a default
#: route via the router option) and ``probe ADDR N``: up to N pings, then ``NETLAB-PING ADDR ok|fail``
GUEST_NET = """cat > /tmp/dh <<'DH'
#!/bin/sh
if [ "$1" = bound ]; then
  ip addr add $ip/${mask:-24} dev $interface
  [ -n "$router" ] && ip route add default via ${router%% *}
  echo "NETLAB-DHCP $ip" > /dev/console
fi
exit 0
DH
chmod +x /tmp/dh
ip link set lo up
ip link set eth0 up
udhcpc -q -f -n -t 60 -T 2 -i eth0 -s /tmp/dh >/dev/null 2>&1 || echo NETLAB-DHCP-FAIL
probe() {
  i=0
  while [ $i -lt $2 ]; do
    if ping -c 1 -W 1 $1 >/dev/null 2>&1; then echo "NETLAB-PING $1 ok"; return; fi
    i=$((i + 1))
  done
  echo "NETLAB-PING $1 fail"
}
"""


def guest_script(body: str, before: str = "", functions: str = "") -> str:
    """User-data: ``before`` (runs before the NIC has an address), the lease, the probes and
    ``functions``, then ``body``, then ``NETLAB-DONE``."""
    return f"#!/bin/sh\n{before}\n{GUEST_NET}{functions}{body}\necho NETLAB-DONE\n"
