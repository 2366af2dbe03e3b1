"""A network backend that keeps the desired state in memory: the datapath of unit tests and of
scale simulations (``NOVACRON_NETWORK_BACKEND=simulated``, beside the simulated compute driver),
where the control plane is measured at more hosts, ports and load balancers than this machine
can run for real. Nothing is programmed in the kernel."""

from __future__ import annotations

import threading

from novacron.network.model import NetworkBackend
from novacron.network.wire import HostState


class SimulatedBackend(NetworkBackend):
    """Records every state it is asked to apply; ``state`` is the host's current one (None: nothing)."""

    name = "simulated"

    def __init__(self, scope: str = "") -> None:
        self.scope = scope
        self.applied: list[HostState] = []
        self.state: HostState | None = None
        self.released = False
        self._lock = threading.Lock()

    def sync(self, state: HostState) -> dict[str, int]:
        """Take ``state`` as the host's; the counts are those ``LinuxBackend.sync`` answers."""
        with self._lock:
            self.applied.append(state)
            self.state = state
        return {
            "networks": len(state.networks),
            "ports": len(state.ports),
            "routers": len(state.routers),
            "loadbalancers": len(state.loadbalancers),
        }

    def release(self) -> None:
        """Forget the state, as the real backend removes what it made."""
        with self._lock:
            self.state = None
            self.released = True
