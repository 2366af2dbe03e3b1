"""The agent's load balancers: ``lb_apply`` / ``lb_remove`` / ``lb_status`` (``agent/protocol.py``),
the member health of its periodic report and the abuse guard of protected listeners.

Each load balancer placed on this host runs in its leg's namespace (``network/linux/lbns.py``,
made by the network sync, which may land after the ``lb_apply`` that needs it: the handler waits
for the namespace with the leg's own address on it): an
:class:`~novacron.lbaas.haproxy.HAProxyInstance` and, on an amphora of an ACTIVE_STANDBY load
balancer, a :class:`~novacron.lbaas.keepalived.VRRPInstance` beside it. Their files live under
``<run dir>/lb/<h(lb id)>`` (short: socket paths are limited to 107 bytes) with ``lb.json``
naming the applied spec, leg and amphora, so an agent that restarts finds a running HAProxy again
by its sockets and reports its members as before. Every call is idempotent; the blocking ones run
in a worker thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import logging
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pyroute2 import netns

from novacron.agent import protocol as p
from novacron.errors import InvalidInput, Unavailable
from novacron.lbaas import exporter
from novacron.lbaas.haproxy import HAProxyInstance
from novacron.lbaas.keepalived import VRRPInstance
from novacron.lbaas.model import LoadBalancerSpec
from novacron.network.linux import lbns, links, names
from novacron.network.wire import from_dict, to_dict
from novacron.private import mkdir_private, write_private

if TYPE_CHECKING:
    from novacron.agent.runtime import AgentRuntime

log = logging.getLogger(__name__)
RECORD = "lb.json"
NAMESPACE_POLL_S = 0.1
#: HAProxy's member status (its first word) → the state the control plane is told
MEMBER_STATES = {"UP": "UP", "DOWN": "DOWN", "MAINT": "MAINT", "DRAIN": "UP", "NOLB": "UP", "no": "NO_CHECK"}


def member_state(haproxy_status: str) -> str:
    """UP, DOWN, MAINT or NO_CHECK from HAProxy's status: a member on its way (``UP 1/3``,
    ``DOWN 1/2``) is what it still is; a draining one is up (the control plane knows it drains)."""
    first = haproxy_status.split(" ", 1)[0]
    return MEMBER_STATES.get(first, "DOWN")


class LoadBalancerHost(Protocol):
    """What the agent asks of its host's load balancers: :class:`HostLoadBalancers` (HAProxy in
    namespaces) or, on a simulated host, ``lbaas_simulated.SimulatedLoadBalancers``."""

    def apply(self, r: p.LbApply) -> dict[str, Any]: ...
    def remove(self, lb_id: str) -> dict[str, Any]: ...
    def status(self, lb_id: str) -> dict[str, Any]: ...
    def challenge(self, r: p.LbChallenge) -> dict[str, Any]: ...
    def health(self) -> dict[str, dict[str, str]]: ...
    def metrics(self) -> dict[str, list[exporter.LbSample]]: ...
    def guard(self) -> None: ...
    def take_bans(self) -> dict[str, list[dict[str, Any]]]: ...


@dataclass
class PlacedLb:
    """One load balancer on this host: its leg, the amphora this host runs (ACTIVE_STANDBY), its
    HAProxy and keepalived."""

    leg_id: str
    amphora_id: str | None
    haproxy: HAProxyInstance
    vrrp: VRRPInstance | None
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


class HostLoadBalancers:
    """This host's load balancers: their processes live in the namespaces of ``scope``'s legs and
    their files under ``root``; found again there after a restart."""

    def __init__(self, root: Path, scope: str) -> None:
        self.root = root
        self.scope = scope
        self._placed: dict[str, PlacedLb] = {}
        self._lock = threading.Lock()
        self._found = False
        #: the guard's decisions since the last report, by load balancer
        self._bans: dict[str, list[dict[str, Any]]] = {}

    def state_dir(self, lb_id: str) -> Path:
        return self.root / names.h(lb_id)

    def _place(self, lb_id: str, leg_id: str, amphora_id: str | None) -> PlacedLb:
        state_dir, ns = self.state_dir(lb_id), names.lb_ns(self.scope, leg_id)
        haproxy = HAProxyInstance(state_dir, netns=ns)
        vrrp = VRRPInstance(state_dir / "vrrp", haproxy.admin_socket, netns=ns) if amphora_id else None
        return PlacedLb(leg_id, amphora_id, haproxy, vrrp)

    def _find(self) -> None:
        """The load balancers an earlier run of the agent left running (once, on first use)."""
        with self._lock:
            if self._found:
                return
            self._found = True
            for record in sorted(self.root.glob(f"*/{RECORD}")):
                try:
                    saved = json.loads(record.read_text())
                    spec = from_dict(LoadBalancerSpec, saved["spec"])
                    placed = self._place(spec.id, saved["leg_id"], saved.get("amphora_id"))
                except (OSError, ValueError, KeyError, TypeError, InvalidInput) as exc:
                    log.warning("ignoring the unreadable load balancer record %s: %s", record, exc)
                    continue
                if placed.haproxy.running():
                    placed.haproxy.spec = spec
                if placed.vrrp is not None and placed.vrrp.running():
                    placed.vrrp.spec, placed.vrrp.amphora = spec, spec.amphora(str(placed.amphora_id))
                self._placed[spec.id] = placed

    def _get(self, lb_id: str) -> PlacedLb | None:
        self._find()
        with self._lock:
            return self._placed.get(lb_id)

    def apply(self, r: p.LbApply) -> dict[str, Any]:
        """Start or reload the load balancer's HAProxy (and keepalived) with ``r.spec``."""
        spec = r.spec
        if spec.topology == "ACTIVE_STANDBY":
            if r.amphora_id is None:
                raise InvalidInput("amphora_id", "an ACTIVE_STANDBY load balancer names this host's amphora")
            # the VIP goes on the leg, whatever the control plane called the interface
            amphorae = tuple(dataclasses.replace(a, vrrp_interface=names.LB_INNER) for a in spec.amphorae)
            spec = dataclasses.replace(spec, amphorae=amphorae)
            spec.amphora(r.amphora_id)
        amphora_id = r.amphora_id if spec.topology == "ACTIVE_STANDBY" else None
        own = spec.amphora(amphora_id).vrrp_ip if amphora_id is not None else spec.vip_address
        self._wait_namespace(r.leg_id, own, r.wait_namespace_s)
        placed = self._get(spec.id)
        if placed is not None and (placed.leg_id, placed.amphora_id) != (r.leg_id, amphora_id):
            self._stop(placed)  # moved to another leg (or topology): its old processes go
            placed = None
        if placed is None:
            placed = self._place(spec.id, r.leg_id, amphora_id)
            with self._lock:
                self._placed[spec.id] = placed
        with placed.lock:
            for ref, pem in dict(r.secrets.get("certificates") or {}).items():
                placed.haproxy.put_certificate(str(ref), str(pem))
            # before the reload: the new members' first checks must not go to a deleted VM's MAC
            lbns.forget_neighbours(self.scope, r.leg_id, _new_member_addresses(placed.haproxy.spec, spec))
            placed.haproxy.apply(spec)
            if placed.vrrp is not None and amphora_id is not None:
                placed.vrrp.apply(spec, amphora_id)
            record = {"spec": to_dict(spec), "leg_id": r.leg_id, "amphora_id": amphora_id}
            write_private(placed.haproxy.paths.state_dir / RECORD, json.dumps(record))
            return {"applied": True, **self._status(placed)}

    def _wait_namespace(self, leg_id: str, address: str, wait_s: float) -> None:
        """Until the network sync made the leg: its namespace with the leg's own ``address`` on it
        (HAProxy cannot bind a SINGLE load balancer's VIP before)."""
        ns = names.lb_ns(self.scope, leg_id)
        deadline = time.monotonic() + wait_s
        while not self._leg_ready(ns, address):
            if time.monotonic() >= deadline:
                raise Unavailable(
                    f"the namespace of load balancer leg {leg_id} is not on this host after {wait_s:g} s "
                    f"with its address {address} (has the network sync placing it run?)"
                )
            time.sleep(NAMESPACE_POLL_S)

    @staticmethod
    def _leg_ready(ns: str, address: str) -> bool:
        if ns not in netns.listnetns():
            return False
        wanted = ipaddress.ip_address(address)
        with links.route(ns) as ipr:
            return any(ipaddress.ip_address(m.get_attr("IFA_ADDRESS")) == wanted for m in ipr.get_addr())

    def remove(self, lb_id: str) -> dict[str, Any]:
        """Stop the load balancer's processes and forget its files (a load balancer unknown here
        is removed already)."""
        placed = self._get(lb_id)
        with self._lock:
            self._placed.pop(lb_id, None)
            self._bans.pop(lb_id, None)
        state_dir = self.state_dir(lb_id)
        if placed is None and state_dir.is_dir():
            # files without a readable record: their processes are found by their pid files
            haproxy = HAProxyInstance(state_dir)
            placed = PlacedLb("", None, haproxy, VRRPInstance(state_dir / "vrrp", haproxy.admin_socket))
        if placed is not None:
            self._stop(placed)
        shutil.rmtree(state_dir, ignore_errors=True)
        return {"removed": True}

    def challenge(self, r: p.LbChallenge) -> dict[str, Any]:
        """Put (or remove) an ACME HTTP-01 answer on the load balancer's HTTP listeners."""
        placed = self._get(r.loadbalancer_id)
        if placed is None:
            raise Unavailable(f"load balancer {r.loadbalancer_id} is not on this host")
        with placed.lock:
            if r.key_authorization is None:
                placed.haproxy.remove_challenge(r.token)
            else:
                placed.haproxy.put_challenge(r.token, r.key_authorization)
        return {"answering": r.key_authorization is not None}

    @staticmethod
    def _stop(placed: PlacedLb) -> None:
        with placed.lock:
            # keepalived first: as MASTER it hands the VIP over before this HAProxy stops serving
            if placed.vrrp is not None:
                placed.vrrp.stop()
            placed.haproxy.stop()

    def status(self, lb_id: str) -> dict[str, Any]:
        """Member health and VRRP state; Unavailable when the load balancer is not on this host."""
        placed = self._get(lb_id)
        if placed is None:
            raise Unavailable(f"load balancer {lb_id} is not on this host")
        with placed.lock:
            return self._status(placed)

    @staticmethod
    def _status(placed: PlacedLb) -> dict[str, Any]:
        """Each member's state and its current sessions (HAProxy's ``scur``: a draining member
        is idle when it reaches 0), keyed ``pool/member``; the VRRP state."""
        stats = placed.haproxy.stats() if placed.haproxy.spec is not None else []
        members = {f"{s.pool_id}/{s.member_id}": member_state(s.status) for s in stats}
        sessions = {f"{s.pool_id}/{s.member_id}": s.current_sessions for s in stats}
        vrrp_state = (placed.vrrp.vrrp_state() or None) if placed.vrrp is not None else None
        return {"members": members, "sessions": sessions, "vrrp_state": vrrp_state}

    def health(self) -> dict[str, dict[str, str]]:
        """Every load balancer's member states, for the agent's report (empty: HAProxy does not
        answer, or was not running when the agent started)."""
        self._find()
        with self._lock:
            placed = dict(self._placed)
        found: dict[str, dict[str, str]] = {}
        for lb_id, lb in placed.items():
            try:
                with lb.lock:
                    found[lb_id] = self._status(lb)["members"]
            except Unavailable:
                found[lb_id] = {}
        return found

    def metrics(self) -> dict[str, list[exporter.LbSample]]:
        """Every running load balancer's statistics (``lbaas/exporter.py``), for the report."""
        self._find()
        with self._lock:
            placed = dict(self._placed)
        found: dict[str, list[exporter.LbSample]] = {}
        for lb_id, lb in placed.items():
            spec = lb.haproxy.spec
            if spec is None:
                continue
            try:
                with lb.lock:
                    found[lb_id] = lb.haproxy.metrics()
            except Unavailable:
                continue  # not running (yet): its health says so
        return found

    def guard(self) -> None:
        """Run each protected listener's guard once (HAProxyInstance.guard): ban the sources
        abusing it; the decisions wait for the next report."""
        self._find()
        with self._lock:
            placed = dict(self._placed)
        for lb_id, lb in placed.items():
            spec = lb.haproxy.spec
            if spec is None or not any(li.protection for li in spec.listeners):
                continue
            try:
                with lb.lock:
                    decisions = lb.haproxy.guard()
            except (Unavailable, InvalidInput) as exc:
                log.warning("guard of load balancer %s: %s", lb_id, exc)
                continue
            if decisions:
                with self._lock:
                    self._bans.setdefault(lb_id, []).extend(dataclasses.asdict(d) for d in decisions)

    def take_bans(self) -> dict[str, list[dict[str, Any]]]:
        """The guard's decisions since the last call."""
        with self._lock:
            bans, self._bans = self._bans, {}
        return bans


def _new_member_addresses(before: LoadBalancerSpec | None, after: LoadBalancerSpec) -> list[str]:
    """The addresses of members ``after`` has and ``before`` had not (by pool and member id)."""
    known = {(pool.id, m.id) for pool in before.pools for m in pool.members} if before else set()
    return sorted({m.address for pool in after.pools for m in pool.members if (pool.id, m.id) not in known})


def host_load_balancers(agent: AgentRuntime) -> LoadBalancerHost:
    """The agent's load balancers (made on first use): in its backend's namespaces, under its run
    dir; in memory on a host whose network is simulated."""
    if agent.load_balancers is None and agent.network is not None and agent.network.name == "simulated":
        from novacron.agent.lbaas_simulated import SimulatedLoadBalancers

        agent.load_balancers = SimulatedLoadBalancers()
    if agent.load_balancers is None:
        if agent.run_dir is None or agent.network is None:
            raise Unavailable("this host runs no load balancer (no run directory or network backend)")
        root = agent.run_dir / "lb"
        mkdir_private(root)
        agent.load_balancers = HostLoadBalancers(root, agent.network.scope)
    return agent.load_balancers


async def apply(agent: AgentRuntime, r: p.LbApply) -> dict[str, Any]:
    """``lb_apply``: ``{"applied": true, "members": {...}, "vrrp_state": ...}``."""
    return await asyncio.to_thread(host_load_balancers(agent).apply, r)


async def remove(agent: AgentRuntime, r: p.LbRemove) -> dict[str, Any]:
    """``lb_remove``: ``{"removed": true}``."""
    return await asyncio.to_thread(host_load_balancers(agent).remove, r.loadbalancer_id)


async def status(agent: AgentRuntime, r: p.LbStatus) -> dict[str, Any]:
    """``lb_status``: ``{"members": {...}, "vrrp_state": ...}``."""
    return await asyncio.to_thread(host_load_balancers(agent).status, r.loadbalancer_id)


async def challenge(agent: AgentRuntime, r: p.LbChallenge) -> dict[str, Any]:
    """``lb_challenge``: ``{"answering": true|false}``."""
    return await asyncio.to_thread(host_load_balancers(agent).challenge, r)
