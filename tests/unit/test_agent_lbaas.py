"""The agent's load-balancer operations refuse what they cannot do, with the reason; HAProxy's
member statuses become the four states the control plane is told; a simulated host answers them
in the same shape from memory."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from novacron.agent.lbaas import _new_member_addresses, member_state
from novacron.agent.runtime import AgentRuntime
from novacron.errors import InvalidInput, Unavailable
from novacron.lbaas.model import (
    AmphoraSpec,
    HealthMonitorSpec,
    ListenerSpec,
    LoadBalancerSpec,
    MemberSpec,
    PoolSpec,
)
from novacron.network.simulated import SimulatedBackend
from novacron.network.wire import to_dict


class NamespacedHost(SimulatedBackend):
    """The in-memory state under a real backend's name: the agent runs HAProxy in namespaces."""

    name = "linux"


SPEC = LoadBalancerSpec("lb-1", "10.0.0.5", (ListenerSpec("l1", "TCP", 80),))
HA = LoadBalancerSpec(
    "lb-2",
    "10.0.0.6",
    topology="ACTIVE_STANDBY",
    amphorae=(AmphoraSpec("amp-a", "MASTER", "10.0.0.7"), AmphoraSpec("amp-b", "BACKUP", "10.0.0.8")),
)


@pytest.mark.parametrize(
    ("haproxy", "state"),
    [
        ("UP", "UP"),
        ("UP 1/3", "UP"),
        ("DOWN", "DOWN"),
        ("DOWN 1/2", "DOWN"),
        ("MAINT", "MAINT"),
        ("MAINT (via p1/m1)", "MAINT"),
        ("DRAIN", "UP"),
        ("no check", "NO_CHECK"),
    ],
)
def test_member_states(haproxy: str, state: str) -> None:
    assert member_state(haproxy) == state


def run(runtime: AgentRuntime, op: str, payload: dict[str, object]) -> dict[str, object]:
    return asyncio.run(runtime.execute(op, "", payload))


def test_lb_apply_waits_for_the_namespace_then_names_the_leg(tmp_path: Path) -> None:
    runtime = AgentRuntime(None, None, lease_dir=tmp_path, network=NamespacedHost())  # type: ignore[arg-type]
    with pytest.raises(Unavailable, match="leg leg-unknown-1 is not on this host after 0.2 s"):
        run(runtime, "lb_apply", {"spec": to_dict(SPEC), "leg_id": "leg-unknown-1", "wait_namespace_s": 0.2})
    with pytest.raises(InvalidInput, match="amphora"):
        run(runtime, "lb_apply", {"spec": to_dict(HA), "leg_id": "amp-a"})
    # removing what is not here answers removed (idempotent); its status is unavailable
    assert run(runtime, "lb_remove", {"loadbalancer_id": "lb-1", "leg_id": "leg-1"}) == {"removed": True}
    with pytest.raises(Unavailable, match="not on this host"):
        run(runtime, "lb_status", {"loadbalancer_id": "lb-1"})


def test_a_host_without_a_run_directory_runs_no_load_balancer() -> None:
    runtime = AgentRuntime(None, None, network=NamespacedHost())  # type: ignore[arg-type]
    with pytest.raises(Unavailable, match="runs no load balancer"):
        run(runtime, "lb_status", {"loadbalancer_id": "lb-1"})


def test_a_simulated_host_answers_from_the_applied_spec() -> None:
    runtime = AgentRuntime(None, None, network=SimulatedBackend())  # type: ignore[arg-type]
    members = (MemberSpec("m1", "10.0.0.10", 80), MemberSpec("m2", "10.0.0.11", 80, admin_state_up=False))
    pools = (
        PoolSpec("p1", members=members, healthmonitor=HealthMonitorSpec()),
        PoolSpec("p2", members=members[:1]),
    )
    spec = LoadBalancerSpec("lb-3", "10.0.0.9", pools=pools)
    answer = run(runtime, "lb_apply", {"spec": to_dict(spec), "leg_id": "leg-3"})
    assert answer == {
        "applied": True,
        "members": {"p1/m1": "UP", "p1/m2": "MAINT", "p2/m1": "NO_CHECK"},
        "vrrp_state": None,
    }
    with pytest.raises(InvalidInput, match="amphora"):
        run(runtime, "lb_apply", {"spec": to_dict(HA), "leg_id": "amp-a"})
    assert (
        run(runtime, "lb_apply", {"spec": to_dict(HA), "leg_id": "amp-b", "amphora_id": "amp-b"})[
            "vrrp_state"
        ]
        == "BACKUP"
    )
    assert run(runtime, "lb_status", {"loadbalancer_id": "lb-3"})["members"] == answer["members"]
    assert run(runtime, "lb_remove", {"loadbalancer_id": "lb-3", "leg_id": "leg-3"}) == {"removed": True}
    with pytest.raises(Unavailable, match="not on this host"):
        run(runtime, "lb_status", {"loadbalancer_id": "lb-3"})


def test_members_new_to_a_pool_have_their_addresses_forgotten() -> None:
    """A replacement VM often gets a deleted one's address: the leg must not keep its old MAC."""
    old = (MemberSpec("m1", "10.0.0.10", 80), MemberSpec("m2", "10.0.0.11", 80))
    new = (
        MemberSpec("m1", "10.0.0.10", 80),
        MemberSpec("m3", "10.0.0.11", 80),
        MemberSpec("m4", "10.0.0.12", 80),
    )
    before = dataclasses.replace(SPEC, pools=(PoolSpec("p1", members=old),))
    after = dataclasses.replace(SPEC, pools=(PoolSpec("p1", members=new), PoolSpec("p2", members=old[:1])))
    assert _new_member_addresses(before, after) == ["10.0.0.10", "10.0.0.11", "10.0.0.12"]
    assert _new_member_addresses(after, after) == []
    assert _new_member_addresses(None, before) == ["10.0.0.10", "10.0.0.11"]
