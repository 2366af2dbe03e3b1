"""Active-standby load balancers seen from a client: two amphorae ("two hosts": namespaces A and B
on the lab's bridge), each running the seam's HAProxy and keepalived for the same load balancer,
in front of the lab's member namespaces (tests/integration/lblab.py).

A client loops on the VIP with a short timeout and times every request, so the failover gap is
measured from the client's side: from the moment the active side is lost to the first request
that succeeds through the standby.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from novacron.lbaas.keepalived import ActiveStandbyInstance
from novacron.lbaas.model import AmphoraSpec, ListenerSpec, LoadBalancerSpec, MemberSpec, PoolSpec
from tests.conftest import require, short_tmpdir
from tests.integration.lblab import LbLab, sh
from tests.integration.netsec_topo import have_netns

PORT = 80
#: the issue's bound: the VIP answers from the standby within 5 s of losing the active host
FAILOVER_BOUND_S = 5.0
#: the looping client's per-request timeout (the gap's resolution)
CLIENT_TIMEOUT_S = 0.5


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

    def kill(self, amphora_id: str, command: str | None = None) -> None:
        """SIGKILL every process of the amphora's namespace (only ``command``'s, if given)."""
        for pid in sh(f"ip netns pids {self.ns(amphora_id)}", check=False).stdout.split():
            try:
                if command is None or Path(f"/proc/{pid}/comm").read_text().strip() == command:
                    os.kill(int(pid), signal.SIGKILL)
            except (OSError, ValueError):
                pass

    def link(self, amphora_id: str, state: str) -> None:
        sh(f"ip -n {self.ns(amphora_id)} link set eth0 {state}")


@pytest.fixture
def ha() -> Iterator[HaLab]:
    require(have_netns(), "needs root and network namespaces")
    for tool in ("haproxy", "keepalived", "socat"):
        require(shutil.which(tool) is not None, f"needs {tool} (scripts/setup.sh installs it)")
    workdir = short_tmpdir("nclbha")
    net = LbLab(workdir)
    lab: HaLab | None = None
    try:
        members = net.up(members=2, lb=False)
        (ns_a, ip_a), (ns_b, ip_b) = net.add_host("A", 101), net.add_host("B", 102)
        spec = LoadBalancerSpec(
            "lb-ha",
            net.vip,
            (ListenerSpec("web", "HTTP", PORT, default_pool_id="pool-1"),),
            (PoolSpec("pool-1", members=tuple(MemberSpec(m, net.addresses[m], 80) for m in members)),),
            topology="ACTIVE_STANDBY",
            amphorae=(AmphoraSpec("amp-a", "MASTER", ip_a), AmphoraSpec("amp-b", "BACKUP", ip_b)),
        )
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
        shutil.rmtree(workdir, ignore_errors=True)


def first_success_after(result: dict[str, object], since: float) -> float:
    """Seconds from ``since`` to the end of the first request started after it that succeeded."""
    ok = result["ok"]
    assert isinstance(ok, list)
    ends: list[float] = [end for start, end in ok if start >= since]
    assert ends, f"no request succeeded after the failover: {result['failed']}"
    return min(ends) - since


def failures_after(result: dict[str, object], since: float) -> list[object]:
    failed = result["failed"]
    assert isinstance(failed, list)
    return [f for f in failed if f[0] >= since]


def test_the_master_amphora_holds_the_vip_and_serves(ha: HaLab) -> None:
    ha.wait_holder("amp-a")
    assert ha.side("amp-b").vrrp.vrrp_state() == "BACKUP"
    assert set(ha.net.names(PORT, 6)) == {"m1", "m2"}
    vrrp_dir = ha.side("amp-a").vrrp.paths.state_dir
    assert oct(vrrp_dir.stat().st_mode & 0o777) == "0o700"
    assert oct((vrrp_dir / "keepalived.conf").stat().st_mode & 0o777) == "0o600"
    # a reload (SIGHUP) with the same configuration keeps the VIP where it is
    ha.side("amp-a").apply(ha.spec)
    time.sleep(4 * ha.spec.vrrp_advert_int)
    assert ha.holders() == ["amp-a"]


def test_losing_the_active_host_moves_the_vip_within_5_s_and_its_return_does_not_take_it_back(
    ha: HaLab,
) -> None:
    ha.wait_holder("amp-a")
    looper = ha.net.loop(PORT, timeout=CLIENT_TIMEOUT_S)
    assert set(ha.net.names(PORT, 4)) == {"m1", "m2"}

    # the host is lost: everything on it dies at once (no goodbye advert) and it leaves the network;
    # the gap counts from then (a request that started earlier may still have been served by A)
    ha.kill("amp-a")
    ha.link("amp-a", "down")
    lost_at = time.time()
    ha.wait_holder("amp-b", timeout=FAILOVER_BOUND_S + 5, lost="amp-a")
    assert set(ha.net.names(PORT, 4)) == {"m1", "m2"}

    # the host comes back (its HAProxy and keepalived started again): nopreempt, B keeps the VIP
    ha.side("amp-a").apply(ha.spec)
    back_at = time.time()
    ha.link("amp-a", "up")
    deadline = time.monotonic() + 6 * ha.spec.vrrp_advert_int + 2 * 2  # > rise × check interval
    while time.monotonic() < deadline:
        assert ha.holders() == ["amp-b"], "the VIP flapped back to the returning amphora"
        time.sleep(0.1)
    assert ha.side("amp-a").vrrp.vrrp_state() == "BACKUP"
    result = looper.finish()

    gap = first_success_after(result, lost_at)
    print(f"\nhost lost: first success through the standby {gap:.2f} s after the loss")
    assert gap < FAILOVER_BOUND_S
    assert failures_after(result, back_at) == []


def test_a_dead_haproxy_moves_the_vip_by_the_check_script(ha: HaLab) -> None:
    ha.wait_holder("amp-a")
    looper = ha.net.loop(PORT, timeout=CLIENT_TIMEOUT_S)
    assert set(ha.net.names(PORT, 4)) == {"m1", "m2"}

    ha.kill("amp-a", command="haproxy")
    killed_at = time.time()
    ha.wait_holder("amp-b", timeout=FAILOVER_BOUND_S + 5)
    assert ha.side("amp-a").vrrp.vrrp_state() == "FAULT"
    assert ha.side("amp-a").vrrp.running()

    # HAProxy back on A: the check passes again, A becomes the standby and the VIP stays on B
    ha.side("amp-a").apply(ha.spec)
    back_at = time.time()
    deadline = time.monotonic() + 10
    while ha.side("amp-a").vrrp.vrrp_state() != "BACKUP":
        assert time.monotonic() < deadline, ha.side("amp-a").vrrp.vrrp_state()
        time.sleep(0.1)
    time.sleep(4 * ha.spec.vrrp_advert_int)
    assert ha.holders() == ["amp-b"]
    result = looper.finish()

    gap = first_success_after(result, killed_at)
    print(f"\nHAProxy killed: first success through the standby {gap:.2f} s after the kill")
    assert gap < FAILOVER_BOUND_S
    assert failures_after(result, back_at) == []
