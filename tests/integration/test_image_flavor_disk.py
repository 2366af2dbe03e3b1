"""An image's virtual size is a number in its header: it must fit the flavor's disk, and never
sizes what a VM is charged. Hostile qcow2 files (naming host files) are refused at upload.

Real server, real qemu-img images (a 1 PiB qcow2 is a few hundred KiB on disk).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx

from tests.conftest import Guest, Server, require, tenant_user, wait_task
from tests.integration.shared_server import server
from tests.integration.test_vm_lifecycle import _act

__all__ = ["server"]  # the module-scoped server its tests share


PIB = 1 << 50


def _image(c: httpx.Client, pid: str, name: str, parts: dict[str, Path]) -> httpx.Response:
    r = c.post("/v1/images", json={"name": name, "project_id": pid, "kernel_cmdline": "console=ttyS0"})
    assert r.status_code == 201, r.text
    for part, path in parts.items():
        r = c.put(
            f"/v1/images/{r.json()['id']}/{part}",
            content=path.read_bytes(),
            headers={"Content-Type": "application/octet-stream"},
        )
    return r


def _qcow2(path: Path, size: str, *opts: str) -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", *opts, str(path), size], check=True)
    return path


def _disk_used(c: httpx.Client, pid: str) -> int:
    node = c.get("/v1/quota", params={"project_id": pid}).json()
    return next((r["used"] for r in node["resources"] if r["resource"] == "disk_gb"), 0)


def test_image_must_fit_the_flavor_disk_and_vms_are_charged_the_flavor(
    server: Server, guest: Guest, tmp_path: Path
) -> None:
    require(shutil.which("qemu-img") is not None, "qemu-img")
    huge = _qcow2(tmp_path / "huge.qcow2", "1P")
    three = tmp_path / "three.qcow2"
    shutil.copyfile(guest.disk, three)
    subprocess.run(["qemu-img", "resize", "-q", "-f", "qcow2", str(three), "3G"], check=True)
    with server.client() as admin:
        tenant, pid = tenant_user(admin, server, "diskprobe")
        r = _image(tenant, pid, "huge", {"file": huge})
        assert r.status_code == 200 and r.json()["virtual_size_bytes"] == PIB, r.text
        r = _image(tenant, pid, "three", {"kernel": guest.kernel, "initrd": guest.initrd, "file": three})
        assert r.status_code == 200 and r.json()["virtual_size_bytes"] == 3 << 30, r.text

        for image, flavor, disk in (("huge", "tiny", 1), ("huge", "large", 40), ("three", "tiny", 1)):
            r = tenant.post("/v1/vms", json={"name": f"{image}-{flavor}", "project_id": pid,
                                             "image": image, "flavor": flavor})  # fmt: skip
            assert r.status_code == 422, r.text
            assert [e["field"] for e in r.json()["errors"]] == ["body.flavor"], r.text
            detail = r.json()["detail"]
            assert (
                f"{disk} GiB disk" in detail
                and f"{-(-(PIB if image == 'huge' else 3 << 30) >> 30)} GiB" in detail
            )
        assert tenant.get("/v1/vms").json()["items"] == [] and _disk_used(tenant, pid) == 0

        # a flavor with no disk would take the image's size: not for tenants
        nodisk = {"name": "nodisk", "vcpus": 1, "ram_mb": 128, "disk_gb": 0}
        assert admin.post("/v1/flavors", json=nodisk).status_code == 201
        r = tenant.post("/v1/vms", json={"name": "z", "project_id": pid, "image": "huge", "flavor": "nodisk"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.flavor", r.text

        # an image that fits: the VM's disk, and its charge, are the flavor's
        r = tenant.post(
            "/v1/vms", json={"name": "fits", "project_id": pid, "image": "three", "flavor": "small"}
        )
        assert r.status_code == 202, r.text
        vm = r.json()["vm"]
        assert vm["disk_gb"] == 4 and _disk_used(tenant, pid) == 4
        assert wait_task(tenant, r.json()["task_id"])["state"] == "succeeded"
        # nor does a resize shrink it: a smaller flavor is refused with both sizes
        # powered off at once: the guest may still be booting (an ACPI request would wait out its
        # 60 s timeout), and what is tested is the resize, not a clean shutdown
        assert _act(tenant, vm["id"], "stop", force=True)["state"] == "stopped"
        r = tenant.patch(f"/v1/vms/{vm['id']}", json={"flavor": "tiny"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.flavor", r.text
        assert "1 GiB disk" in r.json()["detail"] and "4 GiB" in r.json()["detail"]
        assert tenant.get(f"/v1/vms/{vm['id']}").json()["disk_gb"] == 4 and _disk_used(tenant, pid) == 4


def test_uploads_naming_host_files_are_refused(server: Server, tmp_path: Path) -> None:
    """A tenant's qcow2 whose backing file, ``json:`` backing or external data file names a file of
    the host (here the platform's own database) is refused, and never becomes an image."""
    require(shutil.which("qemu-img") is not None, "qemu-img")
    db = server.state_dir / "novacron.db"
    spec = json.dumps({"driver": "raw", "file": {"driver": "file", "filename": str(db)}})
    data = tmp_path / "data.raw"
    hostile = {
        "backing": _qcow2(tmp_path / "b.qcow2", "1M", "-u", "-b", str(db), "-F", "raw"),
        "json": _qcow2(tmp_path / "j.qcow2", "1M", "-u", "-b", f"json:{spec}", "-F", "raw"),
        "datafile": _qcow2(tmp_path / "d.qcow2", "1M", "-o", f"data_file={data},data_file_raw=on"),
    }
    with server.client() as admin:
        tenant, pid = tenant_user(admin, server, "fileprobe")
        for name, path in hostile.items():
            r = _image(tenant, pid, name, {"file": path})
            assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body", r.text
            image = tenant.get("/v1/images", params={"name": name}).json()["items"][0]
            assert image["status"] == "queued" and image["virtual_size_bytes"] == 0, image
