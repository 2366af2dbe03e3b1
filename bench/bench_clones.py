"""Clones: N VMs from a template (linked clones) against N full clones, each to all running.

Platform: a real ``novacron-server`` (QEMU driver, TCG on this machine). The template is the test
guest (kernel + initrd of guest/out) with a disk holding ``--data-mib`` MiB of written data (a
qcow2 of the guest disk, filled with ``qemu-io write``), marked as a template.

- linked: ``POST /v1/vms`` N times from the template (flavor tiny), as ``novacron vm create
  --count N`` does; the clock runs from the first POST until every create task succeeded (the
  task ends when QEMU reports the guest running) and every console log shows
  ``NOVACRON-GUEST-UP``.
- full: one VM made from the template and stopped is the source; ``POST /v1/vms/{id}/clone``
  (mode full) N times, clocked the same way (each clone's disk is a ``qemu-img convert`` of the
  source's whole chain, then it boots).

Disk bytes: the blocks each clone's ``disk.qcow2`` takes on the file system (``st_blocks``), summed,
measured once all run; the template's own disk is printed apart (linked clones share it).

Run: .venv/bin/python bench/bench_clones.py [--count N] [--data-mib M]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from common import GUEST_OUT, Server, default_project, load, machine, running_server

NEEDLE = b"NOVACRON-GUEST-UP"
TIMEOUT_S = 900.0


def template_disk(work: Path, data_mib: int) -> Path:
    """The guest's disk with ``data_mib`` MiB written: what each full clone copies."""
    disk = work / "template.qcow2"
    subprocess.run(
        ["qemu-img", "convert", "-O", "qcow2", str(GUEST_OUT / "disk.qcow2"), str(disk)], check=True
    )
    subprocess.run(["qemu-img", "resize", "-q", str(disk), f"{data_mib + 64}M"], check=True)
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", f"write -P 0x5a 1M {data_mib}M", str(disk)],
        check=True,
        capture_output=True,
    )
    return disk


def upload_template(c: httpx.Client, disk: Path, project: str) -> str:
    cmdline = (GUEST_OUT / "cmdline").read_text().strip()
    r = c.post("/v1/images", json={"name": "bench-tmpl", "kernel_cmdline": cmdline, "project_id": project})
    r.raise_for_status()
    image_id = str(r.json()["id"])
    for part, path in (
        ("kernel", GUEST_OUT / "vmlinux"),
        ("initrd", GUEST_OUT / "initrd.img"),
        ("file", disk),
    ):
        r = c.put(
            f"/v1/images/{image_id}/{part}",
            content=path.read_bytes(),
            headers={"Content-Type": "application/octet-stream"},
        )
        r.raise_for_status()
    c.post(f"/v1/images/{image_id}/template", json={"template": True}).raise_for_status()
    return image_id


def wait_all(srv: Server, c: httpx.Client, accepted: list[dict[str, object]]) -> float:
    """Until every task succeeded and every guest printed its first console line; returns when
    every disk was ready (every task past its ``prepare`` step: copied or overlaid)."""
    pending = {str(a["task_id"]): str(a["vm"]["id"]) for a in accepted}  # type: ignore[index]
    vms = set(pending.values())
    unready = set(pending)
    disks_ready = 0.0
    deadline = time.monotonic() + TIMEOUT_S
    while pending or vms:
        if time.monotonic() > deadline:
            for vm_id in vms:  # what the late guests did say, and what the platform thinks of them
                log = srv.state_dir / "instances" / vm_id / "console.log"
                tail = log.read_bytes()[-300:] if log.exists() else b"(no console log)"
                print(vm_id, c.get(f"/v1/vms/{vm_id}").json()["state"], tail.decode(errors="replace"))
            raise TimeoutError(f"not all running after {TIMEOUT_S} s: tasks {pending}, consoles {vms}")
        for task_id in list(pending):
            task = c.get(f"/v1/tasks/{task_id}").json()
            if task["state"] == "succeeded" or task.get("current_step") in ("launch", "wait_running"):
                unready.discard(task_id)
            if task["state"] == "succeeded":
                del pending[task_id]
            elif task["state"] in ("failed", "rolled_back"):
                raise RuntimeError(f"task {task_id} {task['state']}: {task.get('error')}")
        if not unready and not disks_ready:
            disks_ready = time.monotonic()
        for vm_id in list(vms):
            log = srv.state_dir / "instances" / vm_id / "console.log"
            if log.exists() and NEEDLE in log.read_bytes():
                vms.discard(vm_id)
        time.sleep(0.1)
    return disks_ready


def disk_bytes(srv: Server, accepted: list[dict[str, object]]) -> int:
    total = 0
    for a in accepted:
        disk = srv.state_dir / "instances" / str(a["vm"]["id"]) / "disk.qcow2"  # type: ignore[index]
        total += disk.stat().st_blocks * 512
    return total


def delete_all(c: httpx.Client, accepted: list[dict[str, object]]) -> None:
    tasks = [c.delete(f"/v1/vms/{a['vm']['id']}").json()["task_id"] for a in accepted]  # type: ignore[index]
    for task_id in tasks:
        while c.get(f"/v1/tasks/{task_id}").json()["state"] not in ("succeeded", "failed"):
            time.sleep(0.2)


def run(
    srv: Server, c: httpx.Client, image_id: str, project: str, count: int, mode: str
) -> tuple[float, float, int]:
    """(seconds to all disks ready, to all running, disk bytes of the clones) for ``count``
    clones of ``mode``."""
    source = None
    if mode == "full":
        r = c.post(
            "/v1/vms", json={"name": "source", "image": image_id, "flavor": "tiny", "project_id": project}
        )
        r.raise_for_status()
        wait_all(srv, c, [r.json()])
        source = r.json()["vm"]["id"]
        task = c.post(f"/v1/vms/{source}/actions/stop", json={"force": True}).json()["task_id"]
        while c.get(f"/v1/tasks/{task}").json()["state"] != "succeeded":
            time.sleep(0.1)
    t0 = time.monotonic()
    accepted = []
    for i in range(1, count + 1):
        if source is None:
            body = {"name": f"linked-{i}", "image": image_id, "flavor": "tiny", "project_id": project}
            r = c.post("/v1/vms", json=body)
        else:
            r = c.post(f"/v1/vms/{source}/clone", json={"name": f"full-{i}", "mode": "full"})
        r.raise_for_status()
        accepted.append(r.json())
    disks_ready = wait_all(srv, c, accepted) - t0
    elapsed = time.monotonic() - t0
    used = disk_bytes(srv, accepted)
    delete_all(c, accepted)
    if source is not None:
        held = c.get(f"/v1/vms/{source}").json()["task_state"]
        assert held is None, f"the source is still held ({held}) after its clones copied its disk"
        delete_all(c, [{"vm": {"id": source}}])
    return disks_ready, elapsed, used


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--data-mib", type=int, default=48)
    args = ap.parse_args()
    print(f"machine: {machine()}; load before: {load()}")
    with tempfile.TemporaryDirectory(prefix="ncclone") as work, running_server() as srv, srv.client() as c:
        c.timeout = httpx.Timeout(120)
        project = default_project(c)
        for host in c.get("/v1/hosts").json()["items"]:  # 2 cores: room for N one-vCPU guests
            c.patch(f"/v1/hosts/{host['id']}", json={"cpu_allocation_ratio": 16}).raise_for_status()
        disk = template_disk(Path(work), args.data_mib)
        image_id = upload_template(c, disk, project)
        tmpl_bytes = (srv.state_dir / "images" / image_id / "disk").stat().st_blocks * 512
        print(f"template: {args.data_mib} MiB written, its disk takes {tmpl_bytes / 2**20:.1f} MiB")
        for mode in ("linked", "full"):
            ready, elapsed, used = run(srv, c, image_id, project, args.count, mode)
            print(
                f"{mode:6}: {args.count} clones: all disks ready in {ready:5.1f} s, "
                f"all running in {elapsed:5.1f} s; "
                f"their disks take {used / 2**20:8.1f} MiB ({used / args.count / 2**20:.2f} MiB each)"
            )
    print(f"load after: {load()}")


if __name__ == "__main__":
    main()
