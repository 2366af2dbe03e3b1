"""Hot-plug into a running guest: time from the API request to what the guest sees, beside raw QMP.

REAL PARTS: QEMU (TCG on machines without KVM) and the test guest of guest/ (Debian kernel,
busybox initramfs; its /init onlines hot-added CPUs and memory, as Debian's udev rule does).

Each guest runs a watcher (its user-data) that prints ``HPSTATE <online CPUs> <MemTotal kB>
<block devices>`` on its serial console whenever one changes (checked every 20 ms); the bench
reads the console log file on this host and stops the clock at the first line showing the change.

Platform (a real ``novacron-server``, its embedded agent): VMs of the ``small`` flavor (1 vCPU,
512 MiB: a ceiling of min(host CPUs, 4) vCPUs and 2,048 MiB), timed from the request:
  (a) volume  POST /v1/volumes/{id}/attach  -> the new virtio disk in /sys/block (then detached)
  (b) vCPU    PATCH /v1/vms/{id} vcpus+1    -> the CPU online (one per VM: the host has 2 cores)
  (c) memory  PATCH /v1/vms/{id} ram_mb+128 -> MemTotal up by the DIMM (onlined)
Raw QMP: a VM started by the QEMU driver (the same command line, with 8 CPU sockets), then only
QMP on its socket: blockdev-add + device_add virtio-blk-pci; device_add of a CPU;
object-add memory-backend-ram + device_add pc-dimm. Timed from the first QMP command.

Run: .venv/bin/python bench/bench_hotplug.py [--runs 3] [--vms 2]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from common import (
    GUEST_OUT,
    Guest,
    Server,
    default_project,
    import_guest_image,
    load,
    machine,
    running_server,
)

from novacron.virt import volumes as vvol
from novacron.virt.base import InstanceSpec, VolumeAttachment
from novacron.virt.qemu import QemuDriver
from novacron.virt.qmp import qmp_call

WATCHER = """#!/bin/sh
( last=""; while true; do
  m=$(sed -n 's/MemTotal: *//p' /proc/meminfo | tr -d ' kB')
  s="$(cat /sys/devices/system/cpu/online) $m $(ls /sys/block | tr '\\n' ,)"
  [ "$s" != "$last" ] && echo "HPSTATE $s" > /dev/console && last="$s"
  sleep 0.02
done ) &
"""
STATE = re.compile(r"HPSTATE (\S+) (\d+) (\S+)")
Seen = tuple[str, int, str]


class Console:
    """The guest's watcher lines in its console log; ``wait`` reads only what came after ``last``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def last(self) -> Seen:
        """The guest's state now; later waits look only at lines written from here on."""
        data = self.path.read_bytes()
        self.offset = len(data)
        cpus, mem, disks = STATE.findall(data.decode(errors="replace"))[-1]
        return cpus, int(mem), disks

    def wait(self, want: Callable[[Seen], bool], timeout_s: float = 120) -> float:
        """The monotonic time at which a new line satisfying ``want`` was first read (every 5 ms)."""
        deadline = time.monotonic() + timeout_s
        with self.path.open("rb") as f:
            while time.monotonic() < deadline:
                f.seek(self.offset)
                for cpus, mem, disks in STATE.findall(f.read().decode(errors="replace")):
                    if want((cpus, int(mem), disks)):
                        return time.monotonic()
                time.sleep(0.005)
        raise TimeoutError(f"the guest never showed the change; last {self.last()}")


def _wait_task(c: httpx.Client, task_id: str) -> None:
    deadline = time.monotonic() + 180
    while (task := c.get(f"/v1/tasks/{task_id}").json())["state"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, task
        time.sleep(0.05)
    assert task["state"] == "succeeded", task


def _settled(c: httpx.Client, vm: str) -> dict[str, int]:
    deadline = time.monotonic() + 120
    while (got := c.get(f"/v1/vms/{vm}").json())["task_state"] is not None:
        assert time.monotonic() < deadline, got
        time.sleep(0.05)
    assert got["error"] is None, got
    return dict(got)


def anything(_: Seen) -> bool:
    return True


def more_disks(before: str) -> Callable[[Seen], bool]:
    return lambda s: len(s[2]) > len(before)


def same_disks(before: str) -> Callable[[Seen], bool]:
    return lambda s: s[2] == before


def more_cpus(vcpus: int) -> Callable[[Seen], bool]:
    return lambda s: _ncpus(s[0]) > vcpus


def more_memory(kb: int) -> Callable[[Seen], bool]:
    """MemTotal up by (nearly all of) a 128 MiB DIMM: it is online."""
    return lambda s: s[1] >= kb + 120 * 1024


def _ncpus(cpus: str) -> int:
    return sum(
        int(b) - int(a) + 1
        for a, _, b in (r.partition("-") if "-" in r else (r, "", r) for r in cpus.split(","))
    )


def platform(srv: Server, runs: int, nvms: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"volume": [], "vcpu": [], "memory": []}
    with srv.client() as c:
        c.timeout = httpx.Timeout(60)
        import_guest_image(c, guest_of())
        project = default_project(c)
        vms = []
        for n in range(nvms):
            body = {
                "name": f"hp{n}",
                "image": "test-guest",
                "flavor": "small",
                "project_id": project,
                "user_data": WATCHER,
            }
            r = c.post("/v1/vms", json=body)
            assert r.status_code == 202, r.text
            vms.append((r.json()["vm"]["id"], r.json()["task_id"]))
        consoles = []
        for vm, task in vms:
            _wait_task(c, task)
            con = Console(srv.state_dir / "instances" / vm / "console.log")
            con.wait(anything)
            consoles.append(con)
        vm0, con0 = vms[0][0], consoles[0]
        for i in range(runs):  # (a) a volume, attached then detached again
            r = c.post("/v1/volumes", json={"name": f"v{i}", "size_gb": 1, "project_id": project})
            _wait_task(c, r.json()["task_id"])
            vid, before = r.json()["volume"]["id"], con0.last()[2]
            t0 = time.monotonic()
            r = c.post(f"/v1/volumes/{vid}/attach", json={"vm": vm0})
            assert r.status_code == 202, r.text
            out["volume"].append(con0.wait(more_disks(before)) - t0)
            _wait_task(c, r.json()["task_id"])
            _wait_task(c, c.post(f"/v1/volumes/{vid}/detach").json()["task_id"])
            con0.wait(same_disks(before))
        for (vm, _), con in zip(vms, consoles, strict=True):  # (b) one vCPU per VM
            vcpus = _ncpus(con.last()[0])
            t0 = time.monotonic()
            r = c.patch(f"/v1/vms/{vm}", json={"vcpus": vcpus + 1})
            assert r.status_code == 200, r.text
            out["vcpu"].append(con.wait(more_cpus(vcpus)) - t0)
            _settled(c, vm)
        for _ in range(runs):  # (c) 128 MiB at a time
            ram, mem = _settled(c, vm0)["ram_mb"], con0.last()[1]
            t0 = time.monotonic()
            r = c.patch(f"/v1/vms/{vm0}", json={"ram_mb": ram + 128})
            assert r.status_code == 200, r.text
            out["memory"].append(con0.wait(more_memory(mem)) - t0)
        _settled(c, vm0)
    return out


def guest_of() -> Guest:
    return Guest(
        kernel=GUEST_OUT / "vmlinux", initrd=GUEST_OUT / "initrd.img", disk=GUEST_OUT / "disk.qcow2",
        cmdline=(GUEST_OUT / "cmdline").read_text().strip(), efi_kernel=GUEST_OUT / "vmlinuz",
    )  # fmt: skip


async def raw(runs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"volume": [], "vcpu": [], "memory": []}
    base = Path(tempfile.mkdtemp(prefix="nchp", dir="/tmp"))
    drv = QemuDriver(base / "i", base / "r", bridge=None)
    iid = "raw-" + secrets.token_hex(3)
    spec = InstanceSpec(
        id=iid, name="raw", vcpus=1, ram_mb=512, disk_gb=1, image_path=GUEST_OUT / "disk.qcow2",
        image_format="qcow2", mac="52:54:00:00:aa:01", kernel_path=GUEST_OUT / "vmlinux",
        initrd_path=GUEST_OUT / "initrd.img", kernel_cmdline=(GUEST_OUT / "cmdline").read_text().strip(),
        user_data=WATCHER, max_vcpus=8, max_ram_mb=2048,
    )  # fmt: skip
    sock = drv.qmp_socket(iid)
    try:
        await drv.launch(spec)
        con = Console(drv.console_log(iid))
        await asyncio.to_thread(con.wait, anything)
        for i in range(runs):
            path = base / f"v{i}.qcow2"
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "1G"], check=True)
            vol = VolumeAttachment(f"vol-raw{i}", "file", str(path), f"raw{i}")
            before = con.last()[2]
            t0 = time.monotonic()
            await qmp_call(sock, "blockdev-add", vvol.blockdev(vol))
            await qmp_call(sock, "device_add", vvol.device(vol))
            out["volume"].append(await asyncio.to_thread(con.wait, more_disks(before)) - t0)
            await drv.detach_volume(iid, vol.volume_id, 60)
            await asyncio.to_thread(con.wait, same_disks(before))
        slots = await qmp_call(sock, "query-hotpluggable-cpus")
        free = sorted((s for s in slots if not s.get("qom-path")), key=lambda s: s["props"]["socket-id"])
        for slot in free[:runs]:
            vcpus = _ncpus(con.last()[0])
            t0 = time.monotonic()
            await qmp_call(
                sock,
                "device_add",
                {"driver": slot["type"], "id": f"c{slot['props']['socket-id']}", **slot["props"]},
            )
            out["vcpu"].append(await asyncio.to_thread(con.wait, more_cpus(vcpus)) - t0)
        for i in range(runs):
            mem = con.last()[1]
            t0 = time.monotonic()
            await qmp_call(
                sock, "object-add", {"qom-type": "memory-backend-ram", "id": f"m{i}", "size": 128 << 20}
            )
            await qmp_call(sock, "device_add", {"driver": "pc-dimm", "id": f"d{i}", "memdev": f"m{i}"})
            out["memory"].append(await asyncio.to_thread(con.wait, more_memory(mem)) - t0)
    finally:
        await drv.destroy(iid)
        shutil.rmtree(base, ignore_errors=True)
    return out


def _fmt(samples: list[float]) -> str:
    if not samples:
        return "-"
    ms = [s * 1000 for s in samples]
    return f"median {statistics.median(ms):7.0f} ms  min {min(ms):7.0f}  max {max(ms):7.0f}  n={len(ms)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--vms", type=int, default=2, help="platform VMs (one vCPU hot-add each)")
    args = parser.parse_args()
    print(f"bench_hotplug: {machine()}")
    print(f"start: {load()}")
    with running_server() as srv:
        plat = platform(srv, args.runs, args.vms)
    print(f"after platform: {load()}")
    by_hand = asyncio.run(raw(args.runs))
    print(f"end: {load()}")
    for what, label in (
        ("volume", "(a) volume visible"),
        ("vcpu", "(b) vCPU online"),
        ("memory", "(c) memory online"),
    ):
        print(f"{label:22s} platform: {_fmt(plat[what])}")
        print(f"{'':22s} raw QMP:  {_fmt(by_hand[what])}")


if __name__ == "__main__":
    main()
