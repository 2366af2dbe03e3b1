"""Active-standby load balancers seen from a client: two amphorae ("two hosts": namespaces A and B
on the lab's bridge), each running the seam's HAProxy and keepalived for the same load balancer,
in front of the lab's member namespaces (tests/integration/lbhalab.py, lblab.py).

A client loops on the VIP with a short timeout and times every request, so the failover gap is
measured from the client's side: from the moment the active side is lost to the first request
that succeeds through the standby.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest

from tests.conftest import require, short_tmpdir
from tests.integration.lbhalab import PORT, HaLab, failures_after, first_success_after, ha_lab
from tests.integration.netsec_topo import have_netns

#: the issue's bound: the VIP answers from the standby within 5 s of losing the active host
FAILOVER_BOUND_S = 5.0
#: the looping client's per-request timeout (the gap's resolution)
CLIENT_TIMEOUT_S = 0.5


@pytest.fixture
def ha() -> Iterator[HaLab]:
    require(have_netns(), "needs root and network namespaces")
    for tool in ("haproxy", "keepalived", "socat"):
        require(shutil.which(tool) is not None, f"needs {tool} (scripts/setup.sh installs it)")
    workdir = short_tmpdir("nclbha")
    try:
        with ha_lab(workdir) as lab:
            yield lab
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


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

    # the gap counts from the loss (a request that started earlier may still have been served by A)
    ha.lose_host("amp-a")
    lost_at = time.time()
    ha.wait_holder("amp-b", timeout=FAILOVER_BOUND_S + 5, lost="amp-a")
    assert set(ha.net.names(PORT, 4)) == {"m1", "m2"}

    # the host comes back (its HAProxy and keepalived started again): nopreempt, B keeps the VIP
    ha.restore_host("amp-a")
    back_at = time.time()
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
    ha.wait_state("amp-a", "BACKUP", timeout=10)
    time.sleep(4 * ha.spec.vrrp_advert_int)
    assert ha.holders() == ["amp-b"]
    result = looper.finish()

    gap = first_success_after(result, killed_at)
    print(f"\nHAProxy killed: first success through the standby {gap:.2f} s after the kill")
    assert gap < FAILOVER_BOUND_S
    assert failures_after(result, back_at) == []
