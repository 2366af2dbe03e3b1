"""An agent applies the newest network state it has received, whatever order the syncs queue in."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from novacron.agent.protocol import BadRequest
from novacron.agent.runtime import AgentRuntime
from novacron.network import model, wire
from novacron.network.simulated import SimulatedBackend


class SlowBackend(SimulatedBackend):
    """Records the states it applies; the first one takes long, so the others queue behind it."""

    def __init__(self) -> None:
        super().__init__()
        self.first = threading.Event()

    def sync(self, state: wire.HostState) -> dict[str, int]:
        if not self.first.is_set():
            self.first.set()
            time.sleep(0.5)
        super().sync(state)
        return {}


def payload(name: str, generation: int) -> dict[str, object]:
    return {"state": wire.to_dict(wire.HostState(host_id=name)), "generation": generation}


def test_a_sync_older_than_one_received_is_skipped(tmp_path: Path) -> None:
    backend = SlowBackend()
    runtime = AgentRuntime(None, None, network=backend)  # type: ignore[arg-type]

    async def main() -> list[dict[str, object]]:
        first = asyncio.create_task(runtime.execute("network_sync", "", payload("gen1", 1)))
        await asyncio.to_thread(backend.first.wait)
        # claimed while gen1 runs, in the order the thread pool would pick them up: newest first
        newest = asyncio.create_task(runtime.execute("network_sync", "", payload("gen3", 3)))
        older = asyncio.create_task(runtime.execute("network_sync", "", payload("gen2", 2)))
        return list(await asyncio.gather(first, newest, older))

    results = asyncio.run(main())
    assert [state.host_id for state in backend.applied] == ["gen1", "gen3"]
    assert results[2] == {"superseded_by": 3}


def _state() -> wire.HostState:
    net = model.NetworkSpec(
        id="n1", tenant_id="t1", vni=101, subnets=(model.SubnetSpec("s1", "10.0.0.0/24", "10.0.0.1"),)
    )
    port = model.PortSpec(
        id="p1", network_id="n1", tenant_id="t1", mac="52:54:00:00:00:01",
        fixed_ips=(model.FixedIP("s1", "10.0.0.5"),), device="tp000001",
        rules=(model.Rule("ingress", protocol="tcp", port_min=22, port_max=22),),
    )  # fmt: skip
    return wire.HostState(
        host_id="h1", underlay_ip="192.0.2.1", networks=(wire.HostNetwork(net, dhcp=True, leases=(port,)),),
        ports=(port,),
    )  # fmt: skip


def test_the_agent_applies_the_state_it_is_sent_through_the_backend_interface() -> None:
    """The runtime needs no Linux datapath: any ``NetworkBackend`` gets the very state the control
    plane resolved (the JSON round trip of ``network_sync`` included)."""
    backend = SimulatedBackend()
    runtime = AgentRuntime(None, None, network=backend)  # type: ignore[arg-type]
    payload = {"state": wire.to_dict(_state()), "generation": 7}
    counts = asyncio.run(runtime.execute("network_sync", "", payload))
    assert counts == {"networks": 1, "ports": 1, "routers": 0, "loadbalancers": 0}
    assert backend.state == _state()
    backend.release()
    assert backend.state is None and backend.released


def test_a_host_without_a_backend_and_a_bad_payload_are_refused() -> None:
    bare = AgentRuntime(None, None)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="no network backend"):
        asyncio.run(bare.execute("network_sync", "", {"state": wire.to_dict(_state())}))
    runtime = AgentRuntime(None, None, network=SimulatedBackend())  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match="'network_sync' lacks state"):
        asyncio.run(runtime.execute("network_sync", "", {"generation": 1}))
