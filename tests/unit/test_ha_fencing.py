"""The fencing arithmetic: the control plane restarts a VM only after its old host surely stopped it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from novacron.agent.watchdog import Lease
from novacron.compute.ha import fence_deadline, is_down


def test_fence_deadline_is_heartbeat_plus_lease_plus_margin() -> None:
    hb = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert fence_deadline(hb, 20, 5) == hb + timedelta(seconds=25)


def test_host_is_down_only_past_the_timeout_and_never_without_a_heartbeat() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert not is_down(None, now, 15)
    assert not is_down(now - timedelta(seconds=15), now, 15)
    assert is_down(now - timedelta(seconds=15.1), now, 15)


def test_agent_lease_runs_from_when_the_report_was_sent() -> None:
    lease = Lease(None)
    assert not lease.expired(now=1e9)  # not armed: no HA VM, never fences
    lease.renew(sent_at=100.0, lease_s=20)
    assert not lease.expired(now=119.9)
    assert lease.expired(now=120.0)
    # the agent's deadline is never later than the control plane's: the server recorded the
    # heartbeat after the agent sent it, and adds a margin on top
    server_heartbeat = 100.3
    assert lease.deadline is not None and lease.deadline <= server_heartbeat + 20 + 5
    lease.renew(sent_at=130.0, lease_s=0)  # the host no longer holds HA VMs: disarmed
    assert lease.deadline is None and not lease.expired(now=1e9)
