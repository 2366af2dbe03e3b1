"""DR failover on real QEMU guests: two host groups on one machine, a replicated store, hooks, fail-back.

Group ``group-a`` is the all-in-one server's embedded host, ``group-b`` a remote agent. Two VMs run
on group A and are backed up to target ``site-a``, which the backup controller replicates to
``site-b``. The primary store is then made unreadable (the site is "lost"): the failover can only
restore from the replica. The tests run in order and share the guests (TCG boots are slow).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
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
    type_on_console,
    wait_console,
    wait_task,
)
from tests.integration.test_backups import USER_DATA
from tests.integration.test_cli import Cli
from tests.integration.test_remote_agent import Agent, _wait_host, host_project

MARKER = "NOVACRON-GUEST-UP"
HOOK = "echo hook $NOVACRON_HOOK step $NOVACRON_STEP vm $NOVACRON_VM phase $NOVACRON_PHASE"


@dataclass
class Site:
    server: Server
    agent: Agent
    c: httpx.Client
    hosts: dict[str, str]
    vms: dict[str, str]
    backups: dict[str, str]
    volume: str  # the data volume of "db", written in the guest before its backup


_calls = iter(range(7000, 10**6))


def _in_guest(server: Server, c: httpx.Client, vm_id: str, command: str, tag: str) -> str:
    """Run ``command`` in the guest's shell; what it printed between ``<tag>=`` and this call's end."""
    n = next(_calls)  # the end mark is computed by the guest's shell: the echoed command never matches
    type_on_console(server, c, vm_id, f"echo {tag}=$({command})=E$(({n}-1+1))E", f"=E{n}E")
    found = re.findall(rf"{tag}=(.*?)=E{n}E", wait_console(c, vm_id, f"=E{n}E"))
    assert found, f"no {tag} answer on the console of {vm_id}"
    return str(found[-1]).strip()


def _volume_data(server: Server, c: httpx.Client, vm_id: str, volume_id: str, write: str = "") -> str:
    """The first 10 bytes of the volume (the guest's vdc, after its seed disk) as the guest reads
    them, after writing ``write``'s output there. The commands stay shorter than the console's 80
    columns: a line the guest's shell wraps while it prints TICKs can come out garbled."""
    deadline = time.monotonic() + 30  # a hot-plugged disk shows up in the guest a moment after its task
    while not (serial := _in_guest(server, c, vm_id, "cat /sys/block/vdc/serial", "S")):
        assert time.monotonic() < deadline, "no vdc in the guest"
    assert serial == volume_id[:20], serial
    if write:
        assert _in_guest(server, c, vm_id, f"{write}>/dev/vdc;sync;echo ok", "W") == "ok"
    return _in_guest(server, c, vm_id, "head -c 10 /dev/vdc", "R")


def _pids(vm_id: str) -> list[str]:
    out = subprocess.run(["pgrep", "-f", f"qemu-system.*{vm_id}"], capture_output=True, text=True).stdout
    return sorted(out.split())


def _events(c: httpx.Client, type_: str) -> list[dict[str, Any]]:
    return list(c.get("/v1/events", params={"types": type_, "limit": 100}).json()["items"])


@pytest.fixture(scope="module")
def site(guest: Guest) -> Iterator[Site]:
    server = make_server()
    server.start(timeout_s=180)
    agent = Agent(server, "node-b")
    try:
        with server.client() as c:
            c.timeout = httpx.Timeout(60)
            import_guest_image(c, guest)
            token = c.post("/v1/hosts/join-tokens", json={}).json()
            agent.start(token["join_token"], token["ca_fingerprint"])
            _wait_host(c, "node-b", timeout_s=120)
            hosts = {h["name"]: h["id"] for h in c.get("/v1/hosts").json()["items"]}
            embedded = server.env["NOVACRON_HOST_NAME"]
            for group, host in (("group-a", embedded), ("group-b", "node-b")):
                r = c.post("/v1/aggregates", json={"name": group, "hosts": [host]})
                assert r.status_code == 201, r.text
            for name, extra in (
                ("site-b", {}),
                ("site-a", {"replicate_to": "site-b", "replicate_every_s": 1}),
            ):
                body = {
                    "name": name,
                    "type": "local",
                    "config": {"path": str(server.state_dir / name)},
                    **extra,
                }
                r = c.post("/v1/backup-targets", json=body)
                assert r.status_code == 201, r.text
            project = host_project(c)
            vms: dict[str, str] = {}
            for name in ("db", "app"):
                r = c.post("/v1/vms", json={
                    "name": name, "image": "test-guest", "flavor": "tiny", "user_data": USER_DATA,
                    "project_id": project, "placement": {"aggregate": "group-a"},
                })  # fmt: skip
                assert r.status_code == 202, r.text
                vms[name] = r.json()["vm"]["id"]
                assert wait_task(c, r.json()["task_id"], timeout_s=300)["state"] == "succeeded"
            # "db" keeps its data on a volume, hot-plugged and written before the backup
            wait_console(c, vms["db"], "TICK 2", timeout_s=180)
            r = c.post("/v1/volumes", json={"name": "db-data", "size_gb": 1, "project_id": project})
            assert r.status_code == 202, r.text
            volume = r.json()["volume"]["id"]
            assert wait_task(c, r.json()["task_id"], timeout_s=120)["state"] == "succeeded"
            r = c.post(f"/v1/volumes/{volume}/attach", json={"vm": vms["db"]})
            assert r.status_code == 202, r.text
            assert wait_task(c, r.json()["task_id"], timeout_s=120)["state"] == "succeeded"
            data = _volume_data(server, c, vms["db"], volume, "echo VOL$((100+23))AT-A")
            assert data == "VOL123AT-A", data
            backups = {}
            for name, vm_id in vms.items():
                assert c.get(f"/v1/vms/{vm_id}").json()["host_id"] == hosts[embedded]
                r = c.post("/v1/backups", json={"vm": vm_id, "target": "site-a"})
                assert r.status_code == 202, r.text
                assert wait_task(c, r.json()["task_id"], timeout_s=600)["state"] == "succeeded"
                backups[name] = r.json()["backup"]["id"]
            deadline = time.monotonic() + 120  # the backup controller copies them to site-b
            while not all(c.get(f"/v1/backups/{b}").json()["replicated_at"] for b in backups.values()):
                assert time.monotonic() < deadline, c.get("/v1/backup-targets").text
                time.sleep(0.5)
            yield Site(server, agent, c, hosts, vms, backups, volume)
    finally:
        agent.stop()
        subprocess.run(["pkill", "-9", "-f", f"{agent.state_dir}/"], check=False)
        destroy_server(server)
        shutil.rmtree(agent.state_dir, ignore_errors=True)


def _runbook(c: httpx.Client, name: str, vms: list[str], after: str = HOOK) -> str:
    steps = [
        {"vm": vm, "health": {"kind": "console", "marker": MARKER, "timeout_s": 240},
         "hooks": [{"when": "before", "command": ["sh", "-c", HOOK]},
                   {"when": "after", "command": ["sh", "-c", after]}]}
        for vm in vms
    ]  # fmt: skip
    r = c.post(
        "/v1/dr/runbooks",
        json={"name": name, "steps": steps, "recovery_group": "group-b", "project_id": host_project(c),
              "rpo_target_s": 3600, "rto_target_s": 1200},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_dry_run_restores_in_isolation_on_group_b_and_leaves_production_untouched(site: Site) -> None:
    c = site.c
    before = {name: _pids(vm_id) for name, vm_id in site.vms.items()}
    assert all(before.values()), before
    # the after hook shows the dry run's QEMU command line while it runs: no NIC at all
    rid = _runbook(c, "proof", ["app"], after='exec pgrep -af "qemu-system.*$NOVACRON_VM_ID"')
    r = c.post(f"/v1/dr/runbooks/{rid}/failover", json={"dry_run": True})
    assert r.status_code == 202, r.text
    task = wait_task(c, r.json()["task_id"], timeout_s=600)
    assert task["state"] == "succeeded", task["error"]
    report: dict[str, Any] = task["result"]
    assert report["dry_run"] is True and report["rto_s"] > 0
    print(f"\nDR dry run (1 VM) RTO {report['rto_s']} s")
    (step,) = report["steps"]
    assert step["host"] == "node-b" and step["health"]["ok"] and step["backup_id"] == site.backups["app"]
    qemu_line = step["hooks"][1]["output"]
    assert step["vm_id"] in qemu_line and "-kernel" in qemu_line and "-netdev" not in qemu_line, qemu_line
    # what the dry run made is gone: the VM row, its QEMU and its files on node-b
    assert c.get(f"/v1/vms/{step['vm_id']}").status_code == 404
    assert _pids(step["vm_id"]) == []
    assert not (site.agent.state_dir / "instances" / step["vm_id"]).exists()
    # production ran on, untouched: same QEMU processes, still running on group A
    assert {name: _pids(vm_id) for name, vm_id in site.vms.items()} == before
    for vm_id in site.vms.values():
        assert c.get(f"/v1/vms/{vm_id}").json()["state"] == "running"
    shown = c.get(f"/v1/dr/runbooks/{rid}").json()
    assert shown["state"] == "normal" and shown["last_test"]["ok"] and shown["last_test"]["rto_met"]
    assert _events(c, "dr.dry_run_passed")


def test_failover_to_group_b_from_the_replica_in_order_with_hooks(site: Site, tmp_path: Path) -> None:
    c = site.c
    rid = _runbook(c, "site", ["db", "app"])
    primary = site.server.state_dir / "site-a"
    primary.rename(primary.with_name("site-a-lost"))
    primary.write_text("the primary site is lost\n")  # nothing can read site-a any more
    cli = Cli(tmp_path / "novacron" / "credentials.json", site.server)
    cli.ok("login", "--server", site.server.url, "--username", "admin", "--password-stdin",
           stdin=site.server.admin_password + "\n")  # fmt: skip
    r = cli("dr", "failover", "site", "--json", timeout=900)
    assert r.code == 0, r.err
    report = r.json()
    steps = report["steps"]
    print(f"\nDR failover (2 VMs, from the replica) RTO {report['rto_s']} s")
    assert [s["vm"] for s in steps] == ["db", "app"] and all(s["host"] == "node-b" for s in steps)
    assert steps[0]["up_after_s"] <= steps[1]["up_after_s"]
    # hooks ran around each step, in the runbook's order, and their output is kept in the task
    outputs = [h["output"].strip() for s in steps for h in s["hooks"]]
    assert outputs == [
        f"hook {w} step {n} vm {vm} phase dr.failover"
        for n, vm in ((1, "db"), (2, "app"))
        for w in ("before", "after")
    ], outputs
    for s in steps:
        assert s["source"] == "stopped" and s["backup_id"] == site.backups[s["vm"]]
        vm = c.get(f"/v1/vms/{s['vm_id']}").json()
        assert vm["state"] == "running" and vm["host_id"] == site.hosts["node-b"], vm
        text = wait_console(c, s["vm_id"], f"{MARKER} hostname={s['vm']}-dr", timeout_s=30)
        assert "hostname=" in text
        assert c.get(f"/v1/vms/{site.vms[s['vm']]}").json()["state"] == "stopped"
    shown = c.get(f"/v1/dr/runbooks/{rid}").json()
    assert shown["state"] == "failed-over" and len(shown["failover"]) == 2
    assert _events(c, "dr.failed_over")
    assert "site-a" in str(c.get("/v1/backup-targets").json())  # replication now fails, and says so
    # the recovery site serves: the database changes its disk there
    type_on_console(site.server, c, steps[0]["vm_id"],
             "echo CHANGED-AT-B | dd of=/dev/vda bs=512 seek=300000 conv=notrunc,fsync 2>/dev/null; "
             "echo WROTE-$((40+2))", "WROTE-42")  # fmt: skip
    # its data volume came with it: a new volume on the recovery site, attached, holding what the
    # guest wrote at site A; the database changes it there too
    (moved,) = c.get("/v1/volumes", params={"vm_id": steps[0]["vm_id"]}).json()["items"]
    assert moved["id"] != site.volume and moved["status"] == "in-use", moved
    assert _volume_data(site.server, c, steps[0]["vm_id"], moved["id"]) == "VOL123AT-A"
    assert (
        _volume_data(site.server, c, steps[0]["vm_id"], moved["id"], "echo VOL$((400+56))AT-B")
        == "VOL456AT-B"
    )


def test_failback_brings_the_changes_home_to_group_a(site: Site, tmp_path: Path) -> None:
    c = site.c
    rid = c.get("/v1/dr/runbooks", params={"name": "site"}).json()["items"][0]["id"]
    recovered = [f["recovered_vm_id"] for f in c.get(f"/v1/dr/runbooks/{rid}").json()["failover"]]
    (moved,) = c.get("/v1/volumes", params={"vm_id": recovered[0]}).json()["items"]
    r = c.post(f"/v1/dr/runbooks/{rid}/failback")
    assert r.status_code == 202, r.text
    task = wait_task(c, r.json()["task_id"], timeout_s=900)
    assert task["state"] == "succeeded", task["error"]
    print(f"\nDR fail-back (2 VMs) {task['result']['duration_s']} s")
    embedded = site.hosts[site.server.env["NOVACRON_HOST_NAME"]]
    for name, vm_id in site.vms.items():
        vm = c.get(f"/v1/vms/{vm_id}").json()
        assert vm["state"] == "running" and vm["host_id"] == embedded, vm
        # the health check waited for this boot's marker, not the first boot's still in the log
        assert c.get(f"/v1/vms/{vm_id}/console-log").text.count(f"{MARKER} hostname={name}") == 2
    # the change made at the recovery site came back with the fail-back
    wait_console(c, site.vms["db"], "DISK-B: CHANGED-AT-B", timeout_s=60)
    # and so did the change to its data volume: written over the original volume, still attached
    assert [s["volumes"] for s in task["result"]["steps"]] == [1, 0]
    home = c.get(f"/v1/volumes/{site.volume}").json()
    assert home["vm_id"] == site.vms["db"] and home["status"] == "in-use", home
    assert _volume_data(site.server, c, site.vms["db"], site.volume) == "VOL456AT-B"
    assert c.get(f"/v1/volumes/{moved['id']}").status_code == 404  # the recovery site's copy is gone
    for vm_id in recovered:
        assert c.get(f"/v1/vms/{vm_id}").status_code == 404 and _pids(vm_id) == []
    shown = c.get(f"/v1/dr/runbooks/{rid}").json()
    assert shown["state"] == "failed-back" and shown["failover"] is None
    assert _events(c, "dr.failed_back")
