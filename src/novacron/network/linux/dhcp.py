"""DHCP and DNS of one network: dnsmasq in its own namespace, on a veth into the network's bridge.

Addresses are handed out only as static leases (``dhcp-range ... static``): a guest gets the
address IPAM gave its port, never another one, and a MAC the platform does not know gets none.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import time
from pathlib import Path

from novacron.network.linux import links, names
from novacron.network.model import NetworkSpec, PortSpec, SubnetSpec


def server_ip(subnet: SubnetSpec, taken: frozenset[str] = frozenset()) -> str:
    """The DHCP server's own address: the highest one of the subnet that is neither the gateway
    nor a port's (``taken``).

    IPAM fills its pools from the bottom, so the top is the last address it hands out; should it
    give that one to a port, the port's lease moves the server down one at the next sync.
    """
    net = ipaddress.ip_network(subnet.cidr)
    avoid = set(taken) | ({subnet.gateway_ip} if subnet.gateway_ip else set())
    for n in range(2, min(net.num_addresses, 4096)):
        ip = str(net[-n])
        if ip not in avoid:
            return ip
    raise links.NetError(f"subnet {subnet.id}: no address left for the DHCP server")


def _config(network: NetworkSpec, ports: tuple[PortSpec, ...], iface: str, run: Path) -> str:
    """The whole configuration, leases included: dnsmasq reads its config before it drops root,
    while files it rereads on SIGHUP it reads as ``nobody``, who may not reach the state dir."""
    lines = [
        f"interface={iface}",
        "bind-interfaces",
        "except-interface=lo",
        "no-resolv",
        "no-hosts",
        "no-ping",
        f"pid-file={run / 'dnsmasq.pid'}",
        f"dhcp-leasefile={run / 'leases'}",
        f"log-facility={run / 'dnsmasq.log'}",
        "dhcp-authoritative",
    ]
    v6 = False
    taken = frozenset(f.ip for p in ports for f in p.fixed_ips)
    for n, subnet in enumerate(s for s in network.subnets if s.dhcp):
        net = ipaddress.ip_network(subnet.cidr)
        tag = f"s{n}"
        if net.version == 4:
            lines.append(f"dhcp-range=set:{tag},{net.network_address},static,{net.netmask},12h")
            if subnet.gateway_ip:
                lines.append(f"dhcp-option=tag:{tag},option:router,{subnet.gateway_ip}")
            dns = ",".join(subnet.dns_servers) or server_ip(subnet, taken)
            lines.append(f"dhcp-option=tag:{tag},option:dns-server,{dns}")
            lines.append(f"dhcp-option=tag:{tag},option:mtu,{network.mtu}")
            if subnet.host_routes:
                routes = [f"{dst},{hop}" for dst, hop in subnet.host_routes]
                if subnet.gateway_ip:  # option 121 replaces the router option: keep the default
                    routes.append(f"0.0.0.0/0,{subnet.gateway_ip}")
                lines.append(f"dhcp-option=tag:{tag},option:classless-static-route,{','.join(routes)}")
        else:
            v6 = True
            lines.append(f"dhcp-range=set:{tag},{net.network_address},static,{net.prefixlen},12h")
            if subnet.dns_servers:
                servers = ",".join(f"[{d}]" for d in subnet.dns_servers)
                lines.append(f"dhcp-option=tag:{tag},option6:dns-server,{servers}")
    if v6:
        lines.append("enable-ra")
    # one static lease and one DNS name per port
    for port in sorted(ports, key=lambda p: p.id):
        ips = [f.ip if ":" not in f.ip else f"[{f.ip}]" for f in port.fixed_ips]
        if ips:
            lines.append(f"dhcp-host={','.join([port.mac, *ips])}")
            lines.append(f"host-record=port-{port.id[:8]},{','.join(f.ip for f in port.fixed_ips)}")
    return "\n".join(lines) + "\n"


def prune_leases(path: Path, ports: tuple[PortSpec, ...]) -> None:
    """Drop the IPv4 leases no port holds any more from dnsmasq's lease file (it is not running).

    dnsmasq reads its leases back when it starts and will not hand an address leased to another
    MAC to the port IPAM gave it to now ("not using configured address"): a VM taking the address
    of one just deleted (a scaling group replacing a member) would get none until the old lease
    expired, 12 hours on."""
    if not path.exists():
        return
    held = {(p.mac.lower(), f.ip) for p in ports for f in p.fixed_ips}
    lines = path.read_text().splitlines()
    kept = []
    for line in lines:
        fields = line.split()
        is_v4 = len(fields) >= 3 and fields[1].count(":") == 5 and "." in fields[2]
        if not is_v4 or (fields[1].lower(), fields[2]) in held:
            kept.append(line)
    if kept != lines:
        with path.open("w") as f:  # in place: its owner and mode stay dnsmasq's
            f.write("".join(f"{line}\n" for line in kept))


class Dnsmasq:
    def __init__(self, state_dir: Path, scope: str) -> None:
        self.state_dir = state_dir
        self.scope = scope

    def run_dir(self, network_id: str) -> Path:
        return self.state_dir / "dhcp" / names.h(network_id)

    def pid(self, network_id: str) -> int | None:
        return _live_dnsmasq(self.run_dir(network_id) / "dnsmasq.pid")

    def ensure(self, network: NetworkSpec, ports: tuple[PortSpec, ...], bridge_idx: int) -> None:
        ns, veth, peer = (
            names.dhcp_ns(self.scope, network.id),
            names.dhcp_veth(network.id),
            names.dhcp_peer(network.id),
        )
        links.ensure_ns(ns)
        with links.route() as ipr:
            links.ensure_veth_into(ipr, veth, peer, ns)
            links.ensure_port_link(ipr, veth, bridge_idx, network.mtu, link_kind="veth")
        taken = frozenset(f.ip for p in ports for f in p.fixed_ips)
        addrs = []
        for s in network.subnets:
            if s.dhcp:
                addrs.append(f"{server_ip(s, taken)}/{ipaddress.ip_network(s.cidr).prefixlen}")
        with links.route(ns) as inner:
            inner.link("set", index=links.index(inner, peer), mtu=network.mtu)
            links.sync_addresses(inner, peer, addrs)
        run = self.run_dir(network.id)
        run.mkdir(parents=True, exist_ok=True)
        changed = _write(run / "dnsmasq.conf", _config(network, ports, peer, run))
        pid = self.pid(network.id)
        if pid is not None and changed:
            # leases are static: a restart loses nothing a guest holds
            self._kill(pid)
            pid = None
        if pid is None:
            prune_leases(run / "leases", ports)
            links.in_ns(ns, "dnsmasq", f"--conf-file={run / 'dnsmasq.conf'}")

    def stop_ns_named(self, ns: str) -> None:
        """Stop the DHCP server of namespace ``ns`` (its network id is no longer known)."""
        self._stop(ns[len(names.ns_prefix(self.scope)) + 1 :])

    def _stop(self, key: str) -> None:
        run = self.state_dir / "dhcp" / key
        pid = _live_dnsmasq(run / "dnsmasq.pid")
        if pid is not None:
            self._kill(pid)
        with links.route() as ipr:
            links.delete(ipr, names.DHCP_VETH + key)  # takes its peer in the namespace along
        links.remove_ns(names.ns_prefix(self.scope) + "d" + key)
        if run.exists():
            for f in run.iterdir():
                f.unlink()
            run.rmdir()

    @staticmethod
    def _kill(pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _write(path: Path, text: str) -> bool:
    if path.exists() and path.read_text() == text:
        return False
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True


def _live_dnsmasq(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
        if "dnsmasq" not in Path(f"/proc/{pid}/comm").read_text():
            return None
    except (OSError, ValueError):
        return None
    return pid
