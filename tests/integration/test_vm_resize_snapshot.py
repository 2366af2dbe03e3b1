"""Offline resize and disk snapshots of a stopped VM, on real QEMU."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Guest, Server, default_project, import_guest_image, wait_console, wait_task
from tests.integration.test_quota_api import _set_limits, _used
from tests.integration.test_vm_lifecycle import _act, _create

WRITE_MARKER = "#!/bin/sh\nprintf persisted-marker-77 > /dev/vda\nsync\n"
READ_MARKER = '#!/bin/sh\necho "disk says $(head -c 19 /dev/vda)"\n'


def _qemu_argv(server: Server) -> list[str]:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and b"qemu-system" in argv[0] and str(server.state_dir).encode() in b" ".join(argv):
            return [a.decode() for a in argv]
    raise AssertionError("no QEMU process of this server")


def test_resize_then_snapshot_carries_the_disk(server: Server, guest: Guest) -> None:
    with server.client() as c:
        import_guest_image(c, guest)
        vm_id, task_id = _create(c, "orig", WRITE_MARKER)
        assert wait_task(c, task_id)["state"] == "succeeded"
        wait_console(c, vm_id, "NOVACRON-USER-DATA-DONE rc=0")

        # a running VM only grows (tests/integration/test_live_resize.py): a shrink waits for a stop
        r = c.patch(f"/v1/vms/{vm_id}", json={"ram_mb": 64})
        assert r.status_code == 409 and "stop the VM first" in r.json()["detail"], r.text

        assert _act(c, vm_id, "stop", timeout_s=60)["state"] == "stopped"
        r = c.get(f"/v1/vms/{vm_id}")
        etag = r.headers["etag"]
        r = c.patch(f"/v1/vms/{vm_id}", json={"vcpus": 2, "ram_mb": 256}, headers={"If-Match": etag})
        assert r.status_code == 200, r.text
        assert (r.json()["vcpus"], r.json()["ram_mb"]) == (2, 256)
        stale = c.patch(f"/v1/vms/{vm_id}", json={"vcpus": 1}, headers={"If-Match": etag})
        assert stale.status_code == 412
        assert stale.headers["content-type"].startswith("application/problem+json")

        r = c.post(f"/v1/vms/{vm_id}/snapshot", json={"image_name": "orig-snap"})
        assert r.status_code == 202, r.text
        assert wait_task(c, r.json()["task_id"])["state"] == "succeeded"
        snap = c.get(f"/v1/images/{r.json()['image_id']}").json()
        assert snap["status"] == "active" and snap["disk_format"] == "qcow2" and snap["has_kernel"]
        # the snapshot holds one of its project's snapshots quota: at a limit of one, the next is refused
        project = default_project(c)
        assert _used(c, {"project_id": project}, "snapshots") == 1
        _set_limits(c, {"project_id": project}, {"snapshots": 1})
        r = c.post(f"/v1/vms/{vm_id}/snapshot", json={"image_name": "orig-snap-2"})
        assert r.status_code == 403 and r.json()["policy"]["resource"] == "snapshots", r.text
        assert (r.json()["policy"]["used"], r.json()["policy"]["limit"]) == (1, 1)
        _set_limits(c, {"project_id": project}, {"snapshots": None})

        assert _act(c, vm_id, "start")["state"] == "running"
        argv = _qemu_argv(server)
        assert argv[argv.index("-smp") + 1].split(",")[0] in ("2", "cpus=2")
        assert argv[argv.index("-m") + 1].startswith("256")

        clone_id, task_id = _create(c, "clone", READ_MARKER, image="orig-snap")
        assert wait_task(c, task_id)["state"] == "succeeded"
        wait_console(c, clone_id, "disk says persisted-marker-77")

        # deleting the snapshot gives its quota back (its clone goes first: it backs it)
        r = c.delete(f"/v1/vms/{clone_id}")
        assert wait_task(c, r.json()["task_id"])["state"] == "succeeded"
        assert c.delete(f"/v1/images/{snap['id']}").status_code == 204
        assert _used(c, {"project_id": project}, "snapshots") == 0
