"""Templates, linked clones and full clones, on real QEMU guests, through the API and the CLI.

One server for the module. The template test boots the issue's 20 linked clones at once (``vm
create --count``) as cheaply as it can: the smallest RAM the test guest boots in (112 MiB: at 96 its
kernel panics out of memory unpacking the initramfs), each clone awaited on its console marker.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import (
    Guest,
    Server,
    default_project,
    destroy_server,
    import_guest_image,
    make_server,
    wait_console,
    wait_task,
)
from tests.integration.test_cli import Cli
from tests.integration.test_quota_api import _used
from tests.integration.test_vm_lifecycle import _act, _create
from tests.integration.test_vm_resize_snapshot import READ_MARKER, WRITE_MARKER

CLONES = 20
#: the least RAM the test guest boots in (MiB)
MIN_RAM_MB = 112


@pytest.fixture(scope="module")
def lab(guest: Guest) -> Iterator[Server]:
    # 20 TCG guests booting at once on 2 shared cores can starve the embedded agent's reports for
    # longer than the default 15 s down / 20 s lease: the host would fence itself (HA is not tested here)
    srv = make_server(
        NOVACRON_COMPUTE_DRIVER="qemu", NOVACRON_HOST_DOWN_AFTER_S="120", NOVACRON_HA_LEASE_S="150"
    )
    srv.start(timeout_s=90)  # eight engineers' suites share 2 cores
    try:
        with srv.client() as c:
            import_guest_image(c, guest)
        yield srv
    finally:
        destroy_server(srv)


@pytest.fixture(scope="module")
def cli(lab: Server, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    c = Cli(tmp_path_factory.mktemp("cli") / "novacron" / "credentials.json", lab)
    c.ok(
        "login",
        "--server",
        lab.url,
        "--username",
        "admin",
        "--password-stdin",
        stdin=lab.admin_password + "\n",
    )
    return c


def _disk_info(server: Server, vm_id: str) -> dict[str, Any]:
    disk = server.state_dir / "instances" / vm_id / "disk.qcow2"
    out = subprocess.run(
        ["qemu-img", "info", "--output=json", "--force-share", str(disk)],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    info: dict[str, Any] = json.loads(out)
    return info


def _delete_vms(c: httpx.Client, vm_ids: list[str]) -> None:
    tasks = [c.delete(f"/v1/vms/{vm_id}").json()["task_id"] for vm_id in vm_ids]
    for task_id in tasks:
        assert wait_task(c, task_id)["state"] == "succeeded"


def test_template_image_linked_clones_and_delete_guard(lab: Server, cli: Cli) -> None:
    with lab.client() as c:
        image = c.get("/v1/images/test-guest").json()
        marked = cli.ok("image", "template", "test-guest", "--json").json()
        assert marked["template"] is True and c.get(f"/v1/images/{image['id']}").json()["template"]
        # a template's boot settings are what its clones share: fixed
        r = c.patch(f"/v1/images/{image['id']}", json={"kernel_cmdline": "console=ttyS0 single"})
        assert r.status_code == 409 and r.json()["errors"][0]["field"] == "body.kernel_cmdline", r.text

        flavor = {"name": "clone-min", "vcpus": 1, "ram_mb": MIN_RAM_MB, "disk_gb": 1}
        assert c.post("/v1/flavors", json=flavor).status_code == 201
        for host in c.get("/v1/hosts").json()["items"]:  # 20 idle 1-vCPU guests on the 2 cores
            r = c.patch(f"/v1/hosts/{host['id']}", json={"cpu_allocation_ratio": 16})
            assert r.status_code == 200, r.text
        started = time.monotonic()
        made = cli.ok(
            "vm", "create", "--name", "web", "--image", "test-guest", "--flavor", "clone-min",
            "--count", str(CLONES), "--project", "default", "--json", "--wait-timeout", "600",
        ).json()  # fmt: skip
        names = sorted(vm["name"] for vm in made["items"])
        assert names == sorted(f"web-{i}" for i in range(1, CLONES + 1))
        assert all(vm["state"] == "running" for vm in made["items"])
        for vm in made["items"]:
            wait_console(c, vm["id"], f"NOVACRON-GUEST-UP hostname={vm['name']}", timeout_s=600)
        print(f"{CLONES} linked clones from a template, all booted: {time.monotonic() - started:.1f} s")
        for vm in made["items"]:
            disk = _disk_info(lab, vm["id"])  # a linked clone: an overlay on the template's disk
            assert disk["full-backing-filename"].endswith(f"{image['id']}/disk")
            assert disk["actual-size"] < 2 * 2**20, disk

        r = c.delete(f"/v1/images/{image['id']}")
        assert r.status_code == 409, r.text
        assert r.json()["users"] == names and "web-1, web-10" in r.json()["detail"]
        assert f"and {CLONES - 10} more" in r.json()["detail"]  # the text names 10, ``users`` all
        r = c.post(f"/v1/images/{image['id']}/template", json={"template": False})
        assert r.status_code == 409 and r.json()["users"] == names

        _delete_vms(c, [vm["id"] for vm in made["items"]])
        r = c.post(f"/v1/images/{image['id']}/template", json={"template": False})
        assert r.status_code == 200 and r.json()["template"] is False


def test_full_clones_and_vm_to_template(lab: Server, cli: Cli) -> None:
    with lab.client() as c:
        source_id, task_id = _create(c, "source", WRITE_MARKER)
        assert wait_task(c, task_id)["state"] == "succeeded"
        wait_console(c, source_id, "NOVACRON-USER-DATA-DONE rc=0")

        r = c.post(f"/v1/vms/{source_id}/clone", json={"name": "linked", "mode": "linked"})
        assert r.status_code == 409 and "template" in r.json()["detail"], r.text

        # of the running source: a block job copies its disk while its guest runs on
        key = {"Idempotency-Key": "clone-live-1"}
        body = {"name": "live-copy", "mode": "full", "user_data": READ_MARKER}
        r = c.post(f"/v1/vms/{source_id}/clone", json=body, headers=key)
        assert r.status_code == 202, r.text
        assert c.post(f"/v1/vms/{source_id}/clone", json=body, headers=key).json() == r.json()
        live_id = r.json()["vm"]["id"]
        task = wait_task(c, r.json()["task_id"], timeout_s=240)
        assert task["state"] == "succeeded", task
        assert task["steps"] == ["validate", "place", "copy_disk", "prepare", "launch", "wait_running"]
        wait_console(c, live_id, "disk says persisted-marker-77")
        assert "backing-filename" not in _disk_info(lab, live_id)  # independent of the image too
        assert c.get(f"/v1/vms/{source_id}").json()["state"] == "running"
        assert c.get(f"/v1/vms/{source_id}").json()["task_state"] is None
        # charged as a create (source and clone: 2 VMs, 2 vCPUs), and audited with its quota decisions
        project = {"project_id": default_project(c)}
        assert (_used(c, project, "vms"), _used(c, project, "vcpus")) == (2, 2)
        audited = c.get("/v1/audit", params={"action": "vm.clone"}).json()["items"]
        # the refused linked clone (409), the clone and its replay
        assert sorted(row["outcome"] for row in audited) == ["failed", "success", "success"], audited

        # of the stopped source, with the CLI: qemu-img convert
        assert _act(c, source_id, "stop", timeout_s=60)["state"] == "stopped"
        ud = lab.state_dir / "read-marker.sh"
        ud.write_text(READ_MARKER)
        cold = cli.ok("vm", "clone", "source", "--name", "cold-copy", "--user-data", str(ud), "--json").json()
        assert cold["state"] == "running"
        wait_console(c, cold["id"], "disk says persisted-marker-77")

        _to_template_and_back(c, cli, source_id)
        _delete_vms(c, [live_id, cold["id"]])


def _to_template_and_back(c: httpx.Client, cli: Cli, source_id: str) -> None:
    """The stopped source becomes a template (and goes); a VM made from it reads the marker."""
    made = cli.ok("vm", "template", "source", "--image-name", "source-tmpl", "--json").json()
    assert made["template"] is True and made["status"] == "active" and made["has_kernel"]
    assert c.get(f"/v1/vms/{source_id}").status_code == 404
    child_id, task_id = _create(c, "from-tmpl", READ_MARKER, image="source-tmpl")
    assert wait_task(c, task_id)["state"] == "succeeded"
    wait_console(c, child_id, "disk says persisted-marker-77")
    r = c.delete(f"/v1/images/{made['id']}")
    assert r.status_code == 409 and r.json()["users"] == ["from-tmpl"]
    _delete_vms(c, [child_id])
    assert c.delete(f"/v1/images/{made['id']}").status_code == 204


def test_clone_refusals(lab: Server) -> None:
    with lab.client() as c:
        r = c.post("/v1/vms/nope/clone", json={"name": "x"})
        assert r.status_code == 404
        r = c.post("/v1/images/test-guest/template", json={"template": "maybe"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.template"
        r = c.post("/v1/images", json={"name": "no-disk-yet", "project_id": default_project(c)})
        r = c.post(f"/v1/images/{r.json()['id']}/template", json={})
        assert r.status_code == 409 and "only an active image" in r.json()["detail"]
        r = c.post("/v1/vms/nope/template", json={"image_name": "t"})
        assert r.status_code == 404
