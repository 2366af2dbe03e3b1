"""High availability on real QEMU: a failed host's HA VMs restart elsewhere, fenced hosts stop VMs.

Two remote agents on one machine share a disk directory (NOVACRON_SHARED_STORAGE_DIR), as two
hypervisors would share NFS or CephFS. Timeouts are short through the environment.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import (
    Guest,
    Server,
    destroy_server,
    import_guest_image,
    make_server,
    short_tmpdir,
    wait_task,
)
from tests.integration.test_remote_agent import Agent, _wait_host, host_project

DOWN_AFTER_S, LEASE_S, MARGIN_S = 3, 6, 2
FAST_HA = {
    "NOVACRON_EMBEDDED_AGENT": "0",
    "NOVACRON_HOST_DOWN_AFTER_S": str(DOWN_AFTER_S),
    "NOVACRON_HA_LEASE_S": str(LEASE_S),
    "NOVACRON_HA_FENCE_MARGIN_S": str(MARGIN_S),
}


@pytest.fixture
def ha_cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Server, Agent, Agent, Path]]:
    """A control plane (no embedded agent) and two agent hosts on one shared disk directory."""
    shared = short_tmpdir("ncshared")
    monkeypatch.setenv("NOVACRON_SHARED_STORAGE_DIR", str(shared))  # the agents' environment
    server = make_server(**FAST_HA)
    server.start()
    a, b = Agent(server, "node-a"), Agent(server, "node-b")
    try:
        yield server, a, b, shared
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.send_signal(signal.SIGCONT)
        for agent in (a, b):
            agent.stop()
            subprocess.run(["pkill", "-9", "-f", f"{agent.state_dir}/"], check=False)
        destroy_server(server)
        for agent in (a, b):
            shutil.rmtree(agent.state_dir, ignore_errors=True)
        shutil.rmtree(shared, ignore_errors=True)


def _join(c: httpx.Client, agent: Agent) -> dict[str, Any]:
    token = c.post("/v1/hosts/join-tokens", json={}).json()
    agent.start(token["join_token"], token["ca_fingerprint"])
    return _wait_host(c, agent.name)


def _create(c: httpx.Client, name: str, **extra: Any) -> str:
    body = {"name": name, "image": "test-guest", "flavor": "tiny", "project_id": host_project(c), **extra}
    r = c.post("/v1/vms", json=body)
    assert r.status_code == 202, r.text
    assert r.json()["vm"]["ha"] is bool(extra.get("ha"))
    assert wait_task(c, r.json()["task_id"], timeout_s=180)["state"] == "succeeded"
    return str(r.json()["vm"]["id"])


def _console(agent: Agent, vm_id: str) -> str:
    path = agent.state_dir / "instances" / vm_id / "console.log"
    return path.read_text(errors="replace") if path.exists() else ""


def _qemu_pids(vm_id: str) -> list[str]:
    out = subprocess.run(["pgrep", "-f", f"qemu-system.*{vm_id}"], capture_output=True, text=True).stdout
    return out.split()


def _wait(what: str, check: Any, timeout_s: float, poll_s: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s}s"
        time.sleep(poll_s)


def _events(c: httpx.Client, type_: str) -> list[dict[str, Any]]:
    return list(c.get("/v1/events", params={"types": type_, "limit": 100}).json()["items"])


def _lease_armed(agent: Agent) -> bool:
    return (agent.state_dir / "run" / "lease.json").exists()


def test_failed_host_ha_vms_restart_elsewhere_in_priority_order_exactly_once(
    ha_cluster: tuple[Server, Agent, Agent, Path], guest: Guest
) -> None:
    server, a, b, shared = ha_cluster
    with server.client() as c:
        host_a = _join(c, a)
        import_guest_image(c, guest)
        # all three on node-a: node-b joins afterwards
        low = _create(c, "ha-low", ha=True, ha_priority=1)
        high = _create(c, "ha-high", ha=True, ha_priority=10)
        plain = _create(c, "plain")
        shown = c.get(f"/v1/vms/{high}").json()
        assert shown["ha"] is True and shown["ha_priority"] == 10 and shown["host_id"] == host_a["id"]
        # the flag can be changed with If-Match, like any other setting
        etag = c.get(f"/v1/vms/{low}").headers["ETag"]
        r = c.patch(f"/v1/vms/{low}", json={"ha_priority": 2}, headers={"If-Match": etag})
        assert r.status_code == 200 and r.json()["ha_priority"] == 2, r.text
        for vm_id in (low, high, plain):
            _wait("guest up on node-a", lambda v=vm_id: "NOVACRON-GUEST-UP" in _console(a, v), 120)
            assert (shared / vm_id / "disk.qcow2").exists()  # the disk is on the shared storage
        host_b = _join(c, b)
        hosts = {h["name"]: h for h in c.get("/v1/hosts").json()["items"]}
        storage = [t for t in hosts["node-a"]["traits"] if t.startswith("shared-storage:")]
        assert storage and storage == [
            t for t in hosts["node-b"]["traits"] if t.startswith("shared-storage:")
        ]
        _wait("node-a armed its lease (it holds HA VMs)", lambda: _lease_armed(a), 10)
        assert not _lease_armed(b)  # no HA VM there: VMs outlive the agent as usual

        # host A dies: its agent, watchdog and QEMU processes, all at once
        killed = time.monotonic()
        assert a.proc is not None
        a.proc.kill()
        subprocess.run(["pkill", "-9", "-f", f"{a.state_dir}/"], check=False)
        a.proc.wait(10)
        _wait("node-a's QEMUs gone", lambda: all(not _qemu_pids(v) for v in (low, high, plain)), 10)

        # down after the heartbeat timeout; the non-HA VM shows it at once
        _wait("node-a down", lambda: c.get(f"/v1/hosts/{host_a['id']}").json()["state"] == "down", 30)
        vm = c.get(f"/v1/vms/{plain}").json()
        assert vm["state"] == "host_down" and "node-a is down" in vm["error"], vm
        # no restart before the fencing deadline (last heartbeat + lease + margin)
        assert c.get(f"/v1/vms/{high}").json()["host_id"] == host_a["id"]

        def moved() -> bool:
            vms = [c.get(f"/v1/vms/{v}").json() for v in (high, low)]
            return all(
                v["host_id"] == host_b["id"] and v["state"] == "running" and v["task_state"] is None
                for v in vms
            )

        _wait("HA VMs running on node-b", moved, 60)
        restarted_after = time.monotonic() - killed
        for vm_id in (high, low):
            _wait("guest booted on node-b", lambda v=vm_id: "NOVACRON-GUEST-UP" in _console(b, v), 120)
        booted_after = time.monotonic() - killed
        print(f"HA: running on node-b {restarted_after:.1f}s after the kill, guests up {booted_after:.1f}s")
        assert restarted_after < 60

        fenced = _events(c, "host.fenced")
        assert [e["resource_id"] for e in fenced] == [host_a["id"]]
        assert [e["resource_id"] for e in _events(c, "host.down")] == [host_a["id"]]
        restarted = _events(c, "vm.ha_restarted")
        assert sorted(e["resource_id"] for e in restarted) == sorted([high, low])
        # higher priority first: its QEMU was launched first on node-b
        launched = {
            v: json.loads((b.state_dir / "instances" / v / "launch.json").read_text())["time"]
            for v in (high, low)
        }
        assert launched[high] < launched[low]
        # exactly one QEMU per VM across both hosts, and the plain VM stays with its failed host
        assert len(_qemu_pids(high)) == 1 and len(_qemu_pids(low)) == 1 and not _qemu_pids(plain)
        vm = c.get(f"/v1/vms/{plain}").json()
        assert vm["host_id"] == host_a["id"] and vm["state"] == "host_down"
        tasks = c.get("/v1/tasks", params={"limit": 100}).json()["items"]
        assert sorted(t["resource_id"] for t in tasks if t["kind"] == "vm.ha_restart") == sorted([high, low])

        # node-a comes back: it does not run the moved VMs (and keeps their shared disks), and the
        # VM that stayed there shows what its host observes again
        a.start()
        _wait_host(c, "node-a")
        # the agent forgets orphans one after another, in no set order: wait for both
        _wait(
            "moved instances removed from node-a",
            lambda: not any((a.state_dir / "instances" / v).exists() for v in (high, low)),
            30,
        )
        assert (shared / high / "disk.qcow2").exists() and (shared / low / "disk.qcow2").exists()
        _wait("plain VM seen stopped", lambda: c.get(f"/v1/vms/{plain}").json()["state"] == "stopped", 30)
        time.sleep(2)
        assert len(_qemu_pids(high)) == 1 and len(_qemu_pids(low)) == 1 and not _qemu_pids(plain)
        assert c.get(f"/v1/vms/{high}").json()["host_id"] == host_b["id"]


def test_agent_cut_off_from_the_control_plane_fences_itself(
    ha_cluster: tuple[Server, Agent, Agent, Path], guest: Guest
) -> None:
    server, a, _b, _shared = ha_cluster
    with server.client() as c:
        _join(c, a)
        import_guest_image(c, guest)
        vm_id = _create(c, "guarded", ha=True)
        assert len(_qemu_pids(vm_id)) == 1
        _wait("lease armed", lambda: _lease_armed(a), 10)

    # failure injection: the control plane freezes (SIGSTOP), so no report is accepted any more,
    # while the agent itself stays alive
    assert server.proc is not None
    server.proc.send_signal(signal.SIGSTOP)
    cut = time.monotonic()
    try:
        _wait("QEMU killed by the self-fence", lambda: not _qemu_pids(vm_id), LEASE_S + 5, poll_s=0.1)
        fenced_after = time.monotonic() - cut
        print(f"self-fenced {fenced_after:.1f}s after the cut (lease {LEASE_S}s)")
        assert a.proc is not None and a.proc.poll() is None, "the agent must stay alive"
        assert "lease expired" in a.log()
        # fenced: it runs nothing while cut off
        time.sleep(2)
        assert not _qemu_pids(vm_id)
    finally:
        server.proc.send_signal(signal.SIGCONT)
    with server.client() as c:
        # reconnected: the host is back, the VM stays stopped (nothing restarts it behind our back)
        _wait("node-a back up", lambda: c.get("/v1/hosts").json()["items"][0]["state"] == "up", 60)
        _wait("VM seen stopped", lambda: c.get(f"/v1/vms/{vm_id}").json()["state"] == "stopped", 30)
        assert not _qemu_pids(vm_id)
        r = c.post(f"/v1/vms/{vm_id}/actions/start")
        assert wait_task(c, r.json()["task_id"], timeout_s=120)["state"] == "succeeded"
        assert len(_qemu_pids(vm_id)) == 1


def test_a_killed_agent_is_fenced_by_its_watchdog(
    ha_cluster: tuple[Server, Agent, Agent, Path], guest: Guest
) -> None:
    """The agent dies but its host lives: the watchdog process kills the VMs when the lease runs out."""
    server, a, _b, _shared = ha_cluster
    with server.client() as c:
        _join(c, a)
        import_guest_image(c, guest)
        guarded = _create(c, "guarded", ha=True)
        _wait("lease armed", lambda: _lease_armed(a), 10)
        assert a.proc is not None
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
        killed = time.monotonic()
        assert len(_qemu_pids(guarded)) == 1  # QEMU outlives the agent ...
        _wait("watchdog fenced the host", lambda: not _qemu_pids(guarded), LEASE_S + 5, poll_s=0.1)
        print(f"watchdog fenced {time.monotonic() - killed:.1f}s after the agent died")
        assert os.path.exists(a.state_dir / "instances" / guarded)  # ... and its disk is kept


def test_a_host_back_before_its_fencing_deadline_recovers_its_vms(
    ha_cluster: tuple[Server, Agent, Agent, Path], guest: Guest
) -> None:
    """An agent silent past the down timeout but back before the fencing deadline: nothing moves."""
    server, a, _b, _shared = ha_cluster
    with server.client() as c:
        host_a = _join(c, a)
        import_guest_image(c, guest)
        plain = _create(c, "plain")
        assert a.proc is not None
        a.proc.send_signal(signal.SIGSTOP)  # failure injection: the agent hangs
        try:
            _wait("node-a down", lambda: c.get(f"/v1/hosts/{host_a['id']}").json()["state"] == "down", 30)
            _wait("VM shown host_down", lambda: c.get(f"/v1/vms/{plain}").json()["state"] == "host_down", 10)
        finally:
            a.proc.send_signal(signal.SIGCONT)
        _wait("node-a up again", lambda: c.get(f"/v1/hosts/{host_a['id']}").json()["state"] == "up", 30)
        _wait("VM running again", lambda: c.get(f"/v1/vms/{plain}").json()["state"] == "running", 30)
        assert len(_qemu_pids(plain)) == 1  # not an HA host: nothing was fenced
        assert [e["type"] for e in _events(c, "host.*")][-2:] == ["host.down", "host.up"]
