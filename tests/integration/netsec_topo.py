"""A host and its VMs out of network namespaces, for the firewall and QoS tests.

The "host" is a namespace with a Linux bridge; each "VM" is a namespace whose ``eth0`` is one end of
a veth pair whose other end (standing in for the VM's tap device) is enslaved to the bridge. The
QEMU-guest versions of these tests belong to the linux backend's own tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from novacron.network.model import FixedIP, PortSpec, QosSpec, Rule


def sh(cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, shell=True, check=check, capture_output=True, text=True, timeout=timeout)


def have_netns() -> bool:
    if os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("tc"):
        return False
    name = f"ncprobe{uuid.uuid4().hex[:6]}"
    ok = sh(f"ip netns add {name}", check=False).returncode == 0
    sh(f"ip netns del {name}", check=False)
    return ok


@dataclass
class VM:
    ns: str
    device: str
    mac: str
    ip: str
    ip6: str

    def port(
        self, rules: tuple[Rule, ...] = (), qos: QosSpec | None = None, security: bool = True
    ) -> PortSpec:
        return PortSpec(
            id=f"port-{self.device}",
            network_id="net-a",
            tenant_id="tenant-a",
            mac=self.mac,
            fixed_ips=(FixedIP("v4", self.ip), FixedIP("v6", self.ip6)),
            device=self.device,
            port_security=security,
            rules=rules,
            qos=qos,
        )

    def run(self, cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return sh(f"ip netns exec {self.ns} {cmd}", check=check, timeout=timeout)

    def py(self, code: str, timeout: float = 60) -> str:
        """Run Python in the VM; returns its stdout."""
        proc = subprocess.run(
            ["ip", "netns", "exec", self.ns, sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return proc.stdout.strip()


@dataclass
class Topology:
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:5])
    vms: list[VM] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: more namespaces to delete (a second host)
    extra: list[str] = field(default_factory=list)

    @property
    def host(self) -> str:
        return f"nch{self.tag}"

    def up(self, count: int) -> None:
        sh(f"ip netns add {self.host}")
        sh(f"ip -n {self.host} link add br0 type bridge && ip -n {self.host} link set br0 up")
        sh(f"ip -n {self.host} link set lo up")
        for n in range(1, count + 1):
            ns, dev = f"ncv{self.tag}{n}", f"t{self.tag}{n}"
            mac = f"52:54:00:aa:00:{n:02x}"
            sh(f"ip netns add {ns} && ip -n {ns} link set lo up")
            sh(f"ip -n {self.host} link add {dev} type veth peer name eth0 netns {ns}")
            sh(f"ip -n {self.host} link set {dev} master br0 up")
            sh(f"ip -n {ns} link set eth0 address {mac} up")
            sh(f"ip -n {ns} addr add 10.9.0.{n}/24 dev eth0")
            sh(f"ip -n {ns} addr add fd09::{n}/64 dev eth0 nodad")
            self.vms.append(VM(ns, dev, mac, f"10.9.0.{n}", f"fd09::{n}"))

    def serve(self, vm: VM, port: int, log: Path, tls: tuple[Path, Path] | None = None) -> None:
        """A TCP (or TLS) server in ``vm`` that logs the first bytes of each connection, answers OK."""
        cert, key = (str(tls[0]), str(tls[1])) if tls else ("", "")
        code = f"""
            import socket, ssl
            s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind(("::", {port})); s.listen(64)
            ctx = None
            if {bool(tls)}:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain({cert!r}, {key!r})
            while True:
                c, _ = s.accept(); c.settimeout(5)
                try:
                    if ctx: c = ctx.wrap_socket(c, server_side=True)
                    data = c.recv(100)
                    open({str(log)!r}, "ab").write(data + b"\\n")
                    c.sendall(b"OK\\n")
                except Exception as e:
                    open({str(log)!r}, "ab").write(b"ERR " + repr(e).encode() + b"\\n")
                finally:
                    c.close()
        """
        self.procs.append(
            subprocess.Popen(
                ["ip", "netns", "exec", vm.ns, sys.executable, "-c", textwrap.dedent(code)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )

    def serve_udp(self, vm: VM, port: int) -> None:
        """A UDP server in ``vm`` answering each datagram with OK."""
        code = f"""
            import socket
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", {port}))
            while True:
                data, peer = s.recvfrom(2048); s.sendto(b"OK", peer)
        """
        self.procs.append(
            subprocess.Popen(
                ["ip", "netns", "exec", vm.ns, sys.executable, "-c", textwrap.dedent(code)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )

    def down(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait(timeout=10)
        for ns in [vm.ns for vm in self.vms] + self.extra:
            sh(f"ip netns del {ns}", check=False)
        sh(f"ip netns del {self.host}", check=False)


def connect(vm: VM, ip: str, port: int, payload: bytes, timeout: float = 4, src: str | None = None) -> str:
    """'OK' if the server in the other VM answered, else the error (refused, timed out...)."""
    bind = f"s.bind(({src!r}, 0))" if src else ""
    family = "socket.AF_INET6" if ":" in ip else "socket.AF_INET"
    return vm.py(
        f"""
        import socket
        s = socket.socket({family}); s.settimeout({timeout})
        {bind}
        try:
            s.connect(({ip!r}, {port})); s.sendall({payload!r}); print(s.recv(100).decode().strip() or "EOF")
        except Exception as e:
            print(type(e).__name__)
        """,
        timeout=timeout * 3 + 30,
    )


def tls_connect(vm: VM, ip: str, port: int, server_name: str, timeout: float = 4) -> str:
    return vm.py(
        f"""
        import socket, ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s = socket.create_connection(({ip!r}, {port}), timeout={timeout})
        try:
            t = ctx.wrap_socket(s, server_hostname={server_name!r})
            t.sendall(b"hi")
            print(t.recv(100).decode().strip())
        except Exception as e:
            print(type(e).__name__)
        """,
        timeout=timeout * 3 + 30,
    )


def udp(vm: VM, ip: str, port: int, payload: bytes, timeout: float = 3, sport: int = 0) -> str:
    return vm.py(
        f"""
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout({timeout})
        s.bind(("0.0.0.0", {sport}))
        s.sendto({payload!r}, ({ip!r}, {port}))
        try:
            print(s.recv(100).decode())
        except Exception as e:
            print(type(e).__name__)
        """,
        timeout=timeout + 30,
    )


#: a DNS query for example.com, type A (id 0x1234, recursion desired)
DNS_QUERY = bytes.fromhex("123401000001000000000000") + b"\x07example\x03com\x00\x00\x01\x00\x01"
