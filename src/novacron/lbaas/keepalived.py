"""Active-standby load balancers: keepalived (VRRP) beside each amphora's HAProxy.

:class:`VRRPInstance` runs Debian's keepalived (VRRP subsystem only) inside one amphora's network
namespace, daemonised with pid files in its state directory (0700; configuration 0600, scripts
0700), so it outlives the agent that started it, like :class:`~novacron.lbaas.haproxy.HAProxyInstance`.
A configuration is checked with ``keepalived -t`` before use; a running keepalived reloads it on
SIGHUP. Which side holds the VIP is read from the interface itself (:meth:`VRRPInstance.holds_vip`)
and the state keepalived last reported through its notify script (:meth:`VRRPInstance.vrrp_state`).

:class:`ActiveStandbyInstance` is one amphora of an ACTIVE_STANDBY load balancer as a
:class:`~novacron.lbaas.haproxy.LoadBalancerDriver`: its HAProxy binds the VIP whether or not the
VIP is on its interface (``ip_nonlocal_bind`` in the namespace, as Octavia's amphora sets it), so
the standby serves the moment keepalived moves the VIP to it; run-time member changes and
statistics go to the local HAProxy (the agent applies them on both amphorae).

The rendering and the failover design are in :mod:`novacron.lbaas.keepalived_config`.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from novacron.errors import InvalidInput, Unavailable
from novacron.lbaas import keepalived_config
from novacron.lbaas.certificates import CertificateInfo
from novacron.lbaas.haproxy import (
    READY_TIMEOUT_S,
    HAProxyInstance,
    LoadBalancerDriver,
    MemberStat,
    MemberState,
    check_config,
)
from novacron.lbaas.keepalived_config import VRRPPaths
from novacron.lbaas.model import AmphoraSpec, LoadBalancerSpec, MemberSpec
from novacron.private import mkdir_private, write_private
from novacron.virt.procs import live_pid, process_matches

KEEPALIVED = "/usr/sbin/keepalived"
PID_FILE = "keepalived.pid"
VRRP_PID_FILE = "vrrp.pid"


def _run(argv: Sequence[str], what: str) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise Unavailable(f"{what}: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


class VRRPInstance:
    """One amphora's keepalived, in network namespace ``netns`` (None: this namespace), with its
    files under ``state_dir``, checking the HAProxy whose admin socket is ``haproxy_socket``."""

    def __init__(
        self, state_dir: Path, haproxy_socket: Path, netns: str | None = None, keepalived: str = KEEPALIVED
    ) -> None:
        self.paths = VRRPPaths(state_dir=state_dir, haproxy_socket=haproxy_socket)
        self.netns = netns
        self.keepalived = keepalived
        #: the load balancer and amphora last applied
        self.spec: LoadBalancerSpec | None = None
        self.amphora: AmphoraSpec | None = None

    def _in_netns(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else list(argv)

    def _ip(self, *args: str) -> list[str]:
        return ["ip", *(["-n", self.netns] if self.netns else []), *args]

    def check(self, config: str) -> None:
        """Raise InvalidInput with keepalived's own words when ``config`` is not valid."""
        candidate = self.paths.state_dir / (keepalived_config.CONFIG + ".new")
        # in the namespace: keepalived checks that the configuration's interfaces exist there
        proc = check_config(self._in_netns([self.keepalived, "-t", "-f"]), candidate, config)
        if proc.returncode != 0:
            raise InvalidInput("configuration", proc.stderr.strip() or "rejected by keepalived -t")

    def apply(self, spec: LoadBalancerSpec, amphora_id: str) -> None:
        """Run keepalived for amphora ``amphora_id`` of ``spec``: start it, or reload it (SIGHUP)."""
        amphora = spec.amphora(amphora_id)
        mkdir_private(self.paths.state_dir)
        config = keepalived_config.render(spec, amphora_id, self.paths)
        for script, text in (
            (self.paths.check_script, keepalived_config.check_script(self.paths)),
            (self.paths.notify_script, keepalived_config.notify_script(self.paths)),
        ):
            write_private(script, text)
            os.chmod(script, 0o700)
        self.check(config)
        write_private(self.paths.config, config)
        pid = live_pid(self.paths.state_dir / PID_FILE)
        if pid is not None:
            os.kill(pid, signal.SIGHUP)
        else:
            self._start(spec, amphora)
        self.spec, self.amphora = spec, amphora

    def allow_nonlocal_bind(self, spec: LoadBalancerSpec) -> None:
        """Let HAProxy bind the VIP on the side that does not hold it (yet)."""
        family = "ipv6" if ipaddress.ip_address(spec.vip_address).version == 6 else "ipv4"
        _run(self._in_netns(["sysctl", "-q", "-w", f"net.{family}.ip_nonlocal_bind=1"]), "sysctl")

    def _start(self, spec: LoadBalancerSpec, amphora: AmphoraSpec) -> None:
        # a side that crashed (or a host that comes back) may still carry the VIP keepalived had
        # added: it would answer for the VIP beside the side that holds it now
        vip = keepalived_config.vip_with_prefix(spec)
        subprocess.run(self._ip("addr", "del", vip, "dev", amphora.vrrp_interface), capture_output=True)
        # keepalived refuses to start while its pid file names a live process: a killed keepalived's
        # pid may still be a zombie, or taken by another process
        for stale in (PID_FILE, VRRP_PID_FILE, keepalived_config.STATE_FILE):
            (self.paths.state_dir / stale).unlink(missing_ok=True)
        argv = [
            self.keepalived,
            "--vrrp",
            "--no_bfd",
            "--log-detail",
            "--umask=077",
            "-f",
            str(self.paths.config),
            "-p",
            str(self.paths.state_dir / PID_FILE),
            "-r",
            str(self.paths.state_dir / VRRP_PID_FILE),
        ]
        _run(self._in_netns(argv), "keepalived did not start")
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if live_pid(self.paths.state_dir / VRRP_PID_FILE) is not None:
                return
            time.sleep(0.05)
        raise Unavailable("keepalived's VRRP process did not come up")

    def running(self) -> bool:
        return live_pid(self.paths.state_dir / PID_FILE) is not None

    def holds_vip(self) -> bool:
        """The VIP is on this amphora's interface (keepalived put it there as MASTER)."""
        if self.spec is None or self.amphora is None:
            return False
        out = _run(self._ip("-o", "addr", "show", "dev", self.amphora.vrrp_interface), "ip addr")
        vip = keepalived_config.vip_with_prefix(self.spec)
        return any(vip in line.split() for line in out.splitlines())

    def vrrp_state(self) -> str:
        """MASTER, BACKUP, FAULT or STOP as keepalived last reported it ("" before its first report)."""
        try:
            return self.paths.state_file.read_text().strip()
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop keepalived (it removes the VIP, and as MASTER hands it over with a priority-0 advert)."""
        pid_file = self.paths.state_dir / PID_FILE
        pid = live_pid(pid_file)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + READY_TIMEOUT_S
            while time.monotonic() < deadline and process_matches(pid, str(pid_file)):
                time.sleep(0.05)
            if process_matches(pid, str(pid_file)):
                os.kill(pid, signal.SIGKILL)
        for leftover in (PID_FILE, VRRP_PID_FILE, keepalived_config.STATE_FILE):
            (self.paths.state_dir / leftover).unlink(missing_ok=True)
        self.spec = self.amphora = None


class ActiveStandbyInstance(LoadBalancerDriver):
    """Amphora ``amphora_id`` of an ACTIVE_STANDBY load balancer: HAProxy and keepalived in
    network namespace ``netns``, their files in ``state_dir`` (HAProxy's) and ``state_dir/vrrp``."""

    def __init__(
        self, state_dir: Path, amphora_id: str, netns: str | None = None, user: str | None = "haproxy"
    ) -> None:
        self.amphora_id = amphora_id
        self.haproxy = HAProxyInstance(state_dir, netns=netns, user=user)
        self.vrrp = VRRPInstance(state_dir / "vrrp", self.haproxy.admin_socket, netns=netns)

    def apply(self, spec: LoadBalancerSpec) -> None:
        if spec.topology != "ACTIVE_STANDBY":
            raise InvalidInput("topology", "an amphora serves an ACTIVE_STANDBY load balancer")
        spec.amphora(self.amphora_id)
        self.vrrp.allow_nonlocal_bind(spec)
        self.haproxy.apply(spec)
        self.vrrp.apply(spec, self.amphora_id)

    def set_member(
        self, pool_id: str, member_id: str, *, weight: int | None = None, state: MemberState | None = None
    ) -> MemberSpec:
        return self.haproxy.set_member(pool_id, member_id, weight=weight, state=state)

    def stats(self) -> list[MemberStat]:
        return self.haproxy.stats()

    # certificates and ACME answers are this amphora's HAProxy's (the agent calls both amphorae)
    def put_certificate(self, cert_id: str, pem_bundle: str) -> CertificateInfo:
        return self.haproxy.put_certificate(cert_id, pem_bundle)

    def certificate(self, cert_id: str) -> CertificateInfo:
        return self.haproxy.certificate(cert_id)

    def put_challenge(self, token: str, key_authorization: str) -> None:
        self.haproxy.put_challenge(token, key_authorization)

    def remove_challenge(self, token: str) -> None:
        self.haproxy.remove_challenge(token)

    def holds_vip(self) -> bool:
        return self.vrrp.holds_vip()

    def stop(self) -> None:
        # keepalived first: the VIP moves to the peer before this HAProxy stops serving
        self.vrrp.stop()
        self.haproxy.stop()
