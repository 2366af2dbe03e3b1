"""What the host's guests say about themselves, gathered alongside the agent's report loop.

Each running guest with a qemu-guest-agent is asked (``ComputeDriver.guest_info``: addresses per
NIC, hostname, OS, filesystems) every ``AGENT_INTERVAL_S``; one without an agent costs a QMP query
at a growing interval (``NO_AGENT_FIRST_S`` up to ``NO_AGENT_MAX_S``), one whose agent holds the
channel but does not answer a short timeout (``virt/guestagent.INFO_TIMEOUT_S``) at that interval
too. The asking runs in a task of its own, never in the report: a report carries only what changed
since the last accepted one (``take``), so an idle host sends nothing extra.

The host's DHCP servers' leases (``dhcp_leases``: MAC -> IPv4 of every tenant network whose
dnsmasq runs here) go the same way: the server gives a guest without an agent the address its
NIC really leased (``compute/guestinfo.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from novacron.network.model import NetworkBackend
    from novacron.virt.base import ComputeDriver

log = logging.getLogger(__name__)
#: a guest with an agent is asked again this often (filesystems fill, addresses change)
AGENT_INTERVAL_S = 10.0
#: a guest without an agent is looked at again after this, then ever less often, up to the maximum
NO_AGENT_FIRST_S = 2.0
NO_AGENT_MAX_S = 30.0
#: a guest whose agent answered before keeps that answer until it misses this many times in a row
MISSES = 3
#: guests asked at once (each one is a unix-socket round trip into QEMU)
CONCURRENCY = 8
#: how often the host's lease files are looked at (only a changed file is read)
LEASES_INTERVAL_S = 3.0


class GuestInfoCollector:
    """The latest guest information of this host's instances, and what of it the server lacks."""

    def __init__(self, driver: ComputeDriver, network: NetworkBackend | None = None) -> None:
        self.driver = driver
        self.network = network
        self._due: dict[str, float] = {}
        self._wait: dict[str, float] = {}
        self._misses: dict[str, int] = {}
        #: the newest answer of each guest ({} when it has no agent)
        self._latest: dict[str, dict[str, Any]] = {}
        #: what the server was last sent (accepted), per guest
        self._sent: dict[str, dict[str, Any]] = {}
        self._leases: dict[str, str] = {}
        self._leases_sent: dict[str, str] = {}
        self._leases_at = -LEASES_INTERVAL_S
        self._lease_stamps: dict[Path, float] = {}
        self._task: asyncio.Task[None] | None = None

    def poll(self, running: list[str], busy: set[str] | frozenset[str] = frozenset()) -> None:
        """Start asking the guests that are due (in the background; one round at a time). A
        ``busy`` guest (an operation runs on it: a backup freezing its filesystems through the
        same channel, a migration) is left alone until it is done."""
        now = time.monotonic()
        for gone in set(self._latest) - set(running):
            self._latest.pop(gone, None)
            self._due.pop(gone, None)
            self._wait.pop(gone, None)
            self._misses.pop(gone, None)
        if self._task is not None and not self._task.done():
            return
        due = [i for i in running if i not in busy and self._due.get(i, 0.0) <= now]
        leases_due = self.network is not None and now - self._leases_at >= LEASES_INTERVAL_S
        if due or leases_due:
            self._task = asyncio.create_task(self._round(due, leases_due))

    async def _round(self, due: list[str], leases_due: bool) -> None:
        limit = asyncio.Semaphore(CONCURRENCY)

        async def ask(instance_id: str) -> None:
            async with limit:
                await self._ask(instance_id)

        await asyncio.gather(*(ask(i) for i in due))
        if leases_due:
            self._leases_at = time.monotonic()
            with contextlib.suppress(OSError):
                self._leases = await asyncio.to_thread(self._read_leases)

    async def _ask(self, instance_id: str) -> None:
        try:
            answer = await self.driver.guest_info(instance_id)
        except Exception as exc:  # stopped meanwhile, QMP busy: next time
            log.debug("guest information of %s: %s", instance_id, exc)
            answer = None
        now = time.monotonic()
        if answer is not None:
            self._latest[instance_id] = answer
            self._misses.pop(instance_id, None)
            self._wait.pop(instance_id, None)
            self._due[instance_id] = now + AGENT_INTERVAL_S
            return
        misses = self._misses[instance_id] = self._misses.get(instance_id, 0) + 1
        if not self._latest.get(instance_id) or misses >= MISSES:
            self._latest[instance_id] = {}  # a busy guest's one slow answer changes nothing
        wait = min(NO_AGENT_MAX_S, self._wait.get(instance_id, NO_AGENT_FIRST_S / 1.5) * 1.5)
        self._wait[instance_id] = wait
        self._due[instance_id] = now + wait

    def _read_leases(self) -> dict[str, str]:
        """MAC -> IPv4 of every lease in this host's dnsmasq lease files (re-read when changed)."""
        state_dir = getattr(self.network, "state_dir", None)
        if state_dir is None:
            return {}
        files = sorted(Path(state_dir).glob("dhcp/*/leases"))
        stamps = {f: f.stat().st_mtime for f in files}
        if stamps == self._lease_stamps:
            return self._leases
        leases: dict[str, str] = {}
        for f in files:
            for line in f.read_text().splitlines():
                fields = line.split()
                if len(fields) >= 3 and fields[1].count(":") == 5 and "." in fields[2]:
                    leases[fields[1].lower()] = fields[2]
        self._lease_stamps = stamps
        return leases

    def take(self) -> dict[str, Any]:
        """What changed since the last accepted report: ``guest_info`` (instance -> its answer, {}
        for a guest without an agent now) and ``dhcp_leases`` (all of them, when any changed)."""
        extra: dict[str, Any] = {}
        changed = {i: info for i, info in self._latest.items() if self._sent.get(i) != info}
        if changed:
            extra["guest_info"] = changed
        if self._leases != self._leases_sent:
            extra["dhcp_leases"] = dict(self._leases)
        return extra

    def accepted(self, extra: dict[str, Any]) -> None:
        """The server took ``extra`` (from ``take``): it is not sent again until it changes."""
        self._sent.update(extra.get("guest_info") or {})
        for gone in set(self._sent) - set(self._latest):
            del self._sent[gone]
        if "dhcp_leases" in extra:
            self._leases_sent = extra["dhcp_leases"]
