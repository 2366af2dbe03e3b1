"""A host's load balancers kept in memory: the agent side of scale simulations.

On a host whose network backend is ``simulated`` (``network/simulated.py``) no namespace exists for
an HAProxy to run in, so ``lb_apply`` / ``lb_remove`` / ``lb_status`` / ``lb_challenge`` are
answered from the applied specs: every call is validated as the real
:class:`~novacron.agent.lbaas.HostLoadBalancers` validates it and answers in its shape (members
``UP`` when their pool is health-checked, ``NO_CHECK`` otherwise, ``MAINT`` when administratively
down; the ``MASTER`` amphora of a pair in ``MASTER`` state). It lets the control plane (tasks,
placement, network pushes, reports) be measured at 1,000 load balancers on one machine; it says
nothing about HAProxy, whose own costs are measured for real (``bench/bench_lb_scale.py``).
"""

from __future__ import annotations

import threading
from typing import Any

from novacron.agent import protocol as p
from novacron.errors import InvalidInput, Unavailable
from novacron.lbaas import exporter
from novacron.lbaas.model import LoadBalancerSpec


def simulated_members(spec: LoadBalancerSpec) -> dict[str, str]:
    """``pool/member`` → the state a healthy HAProxy would report for it."""
    states: dict[str, str] = {}
    for pool in spec.pools:
        for member in pool.members:
            state = "UP" if pool.healthmonitor is not None else "NO_CHECK"
            states[f"{pool.id}/{member.id}"] = state if member.admin_state_up else "MAINT"
    return states


class SimulatedLoadBalancers:
    """The load balancers placed on a simulated host: their specs and amphorae, in memory."""

    def __init__(self) -> None:
        self._placed: dict[str, tuple[LoadBalancerSpec, str | None]] = {}
        self._lock = threading.Lock()

    def apply(self, r: p.LbApply) -> dict[str, Any]:
        """Take ``r.spec`` as the load balancer's (an ACTIVE_STANDBY one names this host's amphora)."""
        amphora_id = None
        if r.spec.topology == "ACTIVE_STANDBY":
            if r.amphora_id is None:
                raise InvalidInput("amphora_id", "an ACTIVE_STANDBY load balancer names this host's amphora")
            r.spec.amphora(r.amphora_id)
            amphora_id = r.amphora_id
        with self._lock:
            self._placed[r.spec.id] = (r.spec, amphora_id)
        return {"applied": True, **self._status(r.spec, amphora_id)}

    def remove(self, lb_id: str) -> dict[str, Any]:
        with self._lock:
            self._placed.pop(lb_id, None)
        return {"removed": True}

    def status(self, lb_id: str) -> dict[str, Any]:
        with self._lock:
            placed = self._placed.get(lb_id)
        if placed is None:
            raise Unavailable(f"load balancer {lb_id} is not on this host")
        return self._status(*placed)

    def challenge(self, r: p.LbChallenge) -> dict[str, Any]:
        self.status(r.loadbalancer_id)  # Unavailable when it is not here, as the real host says
        return {"answering": r.key_authorization is not None}

    @staticmethod
    def _status(spec: LoadBalancerSpec, amphora_id: str | None) -> dict[str, Any]:
        vrrp_state = spec.amphora(amphora_id).role if amphora_id is not None else None
        return {"members": simulated_members(spec), "vrrp_state": vrrp_state}

    def health(self) -> dict[str, dict[str, str]]:
        with self._lock:
            placed = dict(self._placed)
        return {lb_id: simulated_members(spec) for lb_id, (spec, _) in placed.items()}

    def metrics(self) -> dict[str, list[exporter.LbSample]]:
        """No traffic flows through a simulated load balancer: no statistics."""
        return {}

    def guard(self) -> None:
        """Nothing to guard: no client reaches a simulated load balancer."""

    def take_bans(self) -> dict[str, list[dict[str, Any]]]:
        return {}
