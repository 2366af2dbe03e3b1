"""A network backend that keeps the desired state in memory: the agent's datapath in unit tests."""

from __future__ import annotations

import threading

from novacron.network.model import NetworkBackend
from novacron.network.wire import HostState


class FakeBackend(NetworkBackend):
    """Records every state it is asked to apply; ``state`` is the host's current one (None: nothing)."""

    name = "fake"

    def __init__(self) -> None:
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
