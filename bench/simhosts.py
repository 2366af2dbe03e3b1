"""Many simulated hosts in ONE process: each a real agent runtime speaking the real agent protocol.

SCALE SIMULATION helper of bench/bench_scale.py. A thousand ``novacron agent --driver simulated``
processes would not fit in this machine's memory (about 60 MiB each), so this process runs N
agents on one asyncio loop. Each has what a real agent has: its own name, join token, state
directory (``agent.json``, ``ca.crt`` written by ``agent/main.ensure_joined``), node credential,
``HttpControlPlane`` (its own HTTPS client, pinned to the platform CA) and ``AgentRuntime`` (the
report loop, the long-polling work loop, operation handlers) over a ``SimulatedDriver``. Nothing
here answers for the control plane: registration, reports, claims and completions are the HTTPS
calls of ``agent/control.py``.

What differs from a production agent, and why:
- the hosts share one interpreter (the point of the multiplexer);
- no self-fencing watchdog process per host (``lease_dir=None``: the lease is kept in memory); a
  simulated VM dies with its agent anyway, which is what a host failure is here;
- no host sample (``/proc`` of this one machine would be the same for every host);
- the simulated hosts report a shared storage id, so HA VMs may restart elsewhere (the QEMU driver
  reports it when ``NOVACRON_SHARED_STORAGE_DIR`` is set).

Protocol (stdin/stdout, one line each): it prints ``joined N``, then ``ready N`` once every agent
has registered and reported; ``stop NAME...`` on stdin kills those agents at once (their tasks are
cancelled: no more reports or claims, their VMs gone, as when a host loses power) and it answers
``stopped NAME UNIX_TIME`` per host; ``rss`` answers ``rss BYTES``; EOF ends the process.

Run: python bench/simhosts.py --server URL --tokens FILE --state-dir DIR [--cpus 64 --ram-mb 262144]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import resource
import sys
import time
from pathlib import Path

from novacron.agent.control import HttpControlPlane
from novacron.agent.main import ensure_joined
from novacron.agent.runtime import AgentRuntime
from novacron.network.simulated import SimulatedBackend
from novacron.virt.base import HostFacts
from novacron.virt.simulated import SimulatedDriver

SHARED_STORAGE = "scale-sim"


class SimHostDriver(SimulatedDriver):
    """The simulated driver of a host that keeps disks on shared storage (see the module docstring)."""

    def host_facts(self) -> HostFacts:
        return dataclasses.replace(super().host_facts(), shared_storage=SHARED_STORAGE)


async def join(server: str, name: str, token: str, fingerprint: str, root: Path) -> dict[str, str]:
    """The host's identity: the real join (CA fetched and checked, token spent for a credential)."""
    return await asyncio.to_thread(ensure_joined, root / name, server, name, token, fingerprint)


async def start_host(
    name: str, identity: dict[str, str], root: Path, args: argparse.Namespace
) -> AgentRuntime:
    state = root / name
    driver = SimHostDriver(cpus=args.cpus, ram_mb=args.ram_mb, state_dir=state / "sim", host_id=name)
    control = HttpControlPlane(
        identity["server"], identity["credential"], state / "ca.crt", name, driver.name, state / "images"
    )
    runtime = AgentRuntime(
        driver, control, args.report_interval, "127.0.0.1", None, network=SimulatedBackend(name)
    )
    await runtime.start()
    return runtime


async def main_async(args: argparse.Namespace) -> None:
    spec = json.loads(Path(args.tokens).read_text())
    root = Path(args.state_dir)
    gate = asyncio.Semaphore(args.parallel)
    names = sorted(spec["tokens"])

    async def joined(name: str) -> tuple[str, dict[str, str]]:
        async with gate:
            return name, await join(args.server, name, spec["tokens"][name], spec["fingerprint"], root)

    identities = dict(await asyncio.gather(*(joined(n) for n in names)))
    print(f"joined {len(identities)}", flush=True)

    async def started(name: str) -> tuple[str, AgentRuntime]:
        async with gate:
            return name, await start_host(name, identities[name], root, args)

    runtimes = dict(await asyncio.gather(*(started(n) for n in names)))
    tasks = {n: asyncio.create_task(r.run_forever(), name=f"agent:{n}") for n, r in runtimes.items()}
    for t in tasks.values():
        t.add_done_callback(_report_crash)
    print(f"ready {len(runtimes)}", flush=True)
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    while line := (await reader.readline()).decode().strip():
        word, *rest = line.split()
        if word == "stop":
            for name in rest:
                tasks[name].cancel()  # a host losing power: no goodbye, no more calls
                runtimes[name].stop()
                print(f"stopped {name} {time.time():.3f}", flush=True)
        elif word == "rss":
            print(f"rss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}", flush=True)
    for t in tasks.values():
        t.cancel()


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        print(f"crashed {task.get_name()} {task.exception()!r}", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", required=True, help="the agent URL (https://...:AGENT_PORT)")
    ap.add_argument("--tokens", required=True, help='JSON {"fingerprint": ..., "tokens": {name: token}}')
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--cpus", type=int, default=64)
    ap.add_argument("--ram-mb", type=int, default=256 * 1024)
    ap.add_argument("--report-interval", type=float, default=1.0, help="NOVACRON_METRICS_INTERVAL")
    ap.add_argument("--parallel", type=int, default=16, help="joins and registrations at once")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
