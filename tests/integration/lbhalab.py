"""An active-standby load balancer out of namespaces, for the keepalived tests and benchmark.

Two amphorae ("two hosts": namespaces A at 10.77.0.101 and B at 10.77.0.102 on the bridge of a
:class:`~tests.integration.lblab.LbLab`), each running the seam's HAProxy and keepalived
(:class:`~novacron.lbaas.keepalived.ActiveStandbyInstance`) for one ACTIVE_STANDBY load balancer
in front of the lab's member namespaces. A host is lost by killing every process of its
namespace and taking its link down; :func:`ha_lab` stops and removes everything, even after a
failure.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from novacron.lbaas.keepalived import ActiveStandbyInstance
from novacron.lbaas.model import AmphoraSpec, ListenerSpec, LoadBalancerSpec, MemberSpec, PoolSpec
from tests.integration.lblab import LbLab, sh

PORT = 80


@dataclass
class HaLab:
    net: LbLab
    spec: LoadBalancerSpec
    #: amphora id → (namespace, side)
    sides: dict[str, tuple[str, ActiveStandbyInstance]]

    def side(self, amphora_id: str) -> ActiveStandbyInstance:
        return self.sides[amphora_id][1]

    def ns(self, amphora_id: str) -> str:
        return self.sides[amphora_id][0]

    def holders(self, lost: str | None = None) -> list[str]:
        """The amphorae whose interface carries the VIP; a ``lost`` host's does not count (its
        keepalived died without removing the VIP, and the host is off the network)."""
        return sorted(a for a, (_, side) in self.sides.items() if a != lost and side.holds_vip())

    def wait_holder(self, amphora_id: str, timeout: float = 15.0, lost: str | None = None) -> None:
        """Until ``amphora_id``, and only it, holds the VIP and reports MASTER."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.holders(lost) == [amphora_id] and self.side(amphora_id).vrrp.vrrp_state() == "MASTER":
                return
            time.sleep(0.05)
        states = {a: side.vrrp.vrrp_state() for a, (_, side) in self.sides.items()}
        raise AssertionError(f"{amphora_id} does not hold the VIP: holders {self.holders()}, states {states}")

    def wait_state(self, amphora_id: str, state: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while (current := self.side(amphora_id).vrrp.vrrp_state()) != state:
            assert time.monotonic() < deadline, f"{amphora_id} is {current!r}, not {state}"
            time.sleep(0.05)

    def kill(self, amphora_id: str, command: str | None = None) -> None:
        """SIGKILL every process of the amphora's namespace (only ``command``'s, if given)."""
        for pid in sh(f"ip netns pids {self.ns(amphora_id)}", check=False).stdout.split():
            try:
                if command is None or Path(f"/proc/{pid}/comm").read_text().strip() == command:
                    os.kill(int(pid), signal.SIGKILL)
            except (OSError, ValueError):
                pass

    def lose_host(self, amphora_id: str) -> None:
        """Everything on the host dies at once (no goodbye advert) and it leaves the network."""
        self.kill(amphora_id)
        self.link(amphora_id, "down")

    def restore_host(self, amphora_id: str) -> None:
        """The host comes back: HAProxy and keepalived start again, then its link comes up."""
        self.side(amphora_id).apply(self.spec)
        self.link(amphora_id, "up")

    def link(self, amphora_id: str, state: str) -> None:
        sh(f"ip -n {self.ns(amphora_id)} link set eth0 {state}")


@contextmanager
def ha_lab(workdir: Path, members: int = 2, advert_int: float | None = None) -> Iterator[HaLab]:
    """The lab with both amphorae applied (the MASTER amphora, amp-a, wins the first election);
    ``advert_int``: the VRRP advert interval (None: the spec's default)."""
    net = LbLab(workdir)
    lab: HaLab | None = None
    try:
        names = net.up(members=members, lb=False)
        (ns_a, ip_a), (ns_b, ip_b) = net.add_host("A", 101), net.add_host("B", 102)
        spec = LoadBalancerSpec(
            "lb-ha",
            net.vip,
            (ListenerSpec("web", "HTTP", PORT, default_pool_id="pool-1"),),
            (PoolSpec("pool-1", members=tuple(MemberSpec(m, net.addresses[m], 80) for m in names)),),
            topology="ACTIVE_STANDBY",
            amphorae=(AmphoraSpec("amp-a", "MASTER", ip_a), AmphoraSpec("amp-b", "BACKUP", ip_b)),
        )
        if advert_int is not None:
            spec = dataclasses.replace(spec, vrrp_advert_int=advert_int)
        lab = HaLab(
            net,
            spec,
            {
                "amp-a": (ns_a, ActiveStandbyInstance(workdir / "a", "amp-a", netns=ns_a)),
                "amp-b": (ns_b, ActiveStandbyInstance(workdir / "b", "amp-b", netns=ns_b)),
            },
        )
        for _, side in lab.sides.values():
            side.apply(spec)
        yield lab
    finally:
        if lab is not None:
            for amphora_id, (_, side) in lab.sides.items():
                side.stop()
                lab.kill(amphora_id)
        net.down()


def first_success_after(result: dict[str, object], since: float) -> float:
    """Seconds from ``since`` to the end of the first request started after it that succeeded
    (a timed looper's result: :data:`~tests.integration.lblab.TIMED_LOOP_CLIENT`)."""
    ok = result["ok"]
    assert isinstance(ok, list)
    ends: list[float] = [end for start, end in ok if start >= since]
    assert ends, f"no request succeeded after the failover: {result['failed']}"
    return min(ends) - since


def failures_after(result: dict[str, object], since: float) -> list[object]:
    failed = result["failed"]
    assert isinstance(failed, list)
    return [f for f in failed if f[0] >= since]
