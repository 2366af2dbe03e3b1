"""An agent applies the newest network state it has received, whatever order the syncs queue in."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from novacron.agent.runtime import AgentRuntime
from novacron.network import wire
from novacron.network.linux import LinuxBackend


class SlowBackend(LinuxBackend):
    """Records the states it applies; the first one takes long, so the others queue behind it."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir, None)
        self.applied: list[str] = []
        self.first = threading.Event()

    def sync(self, state: wire.HostState) -> dict[str, int]:
        if not self.first.is_set():
            self.first.set()
            time.sleep(0.5)
        self.applied.append(state.host_id)
        return {}


def payload(name: str, generation: int) -> dict[str, object]:
    return {"state": wire.to_dict(wire.HostState(host_id=name)), "generation": generation}


def test_a_sync_older_than_one_received_is_skipped(tmp_path: Path) -> None:
    backend = SlowBackend(tmp_path)
    runtime = AgentRuntime(None, None, network=backend)  # type: ignore[arg-type]

    async def main() -> list[dict[str, object]]:
        first = asyncio.create_task(runtime.execute("network_sync", "", payload("gen1", 1)))
        await asyncio.to_thread(backend.first.wait)
        # claimed while gen1 runs, in the order the thread pool would pick them up: newest first
        newest = asyncio.create_task(runtime.execute("network_sync", "", payload("gen3", 3)))
        older = asyncio.create_task(runtime.execute("network_sync", "", payload("gen2", 2)))
        return list(await asyncio.gather(first, newest, older))

    results = asyncio.run(main())
    assert backend.applied == ["gen1", "gen3"]
    assert results[2] == {"superseded_by": 3}
