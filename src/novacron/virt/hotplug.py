"""Live resize of a running QEMU guest: headroom on its command line, CPU and memory hot-add,
and its root disk grown online.

A VM started with headroom (``spec.max_vcpus``, ``spec.max_ram_mb``) runs with
``-smp N,maxcpus=M`` (one CPU per socket: socket ``k`` is vCPU ``k``) and
``-m B,slots=S,maxmem=X``. Neither adds a PCI device (CPUs and DIMMs are plugged through ACPI),
so the guest's PCI slots, and the names of its NICs, stay what they were. A vCPU hot-added while
it runs is a CPU device (``hot_vcpus`` of them), memory one ``pc-dimm`` per grow (backed by
``memory-backend-ram``, ``dimms_mb``): ``N`` and ``B`` stay the boot figures, because devices
are sized by them (virtio-blk takes one queue per boot vCPU) and a migration's destination must
match the source's devices exactly. So the command line built again from the spec (a migration's
destination, a restart of the same process) has the very devices the running guest has.

The guest onlines what it gets (Linux leaves hot-added memory and CPUs offline unless a udev
rule or ``memhp_default_state=online`` says otherwise; the test guest's /init does it).
Each step looks at what is plugged first, so a resize that ran half-way runs again safely.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from novacron.private import write_private
from novacron.virt.base import DriverError, InstanceSpec, LiveSize

if TYPE_CHECKING:
    from novacron.virt.qemu import QemuDriver

#: how many times the memory of one VM can grow while it runs (each grow is one DIMM slot)
SLOTS = 8
MIB = 1 << 20
#: the root disk's format node (virt/cmdline.py)
ROOT_NODE = "vda-disk"


def smp(spec: InstanceSpec) -> str:
    """``-smp``: the boot vCPUs, and the ceiling CPUs can be hot-added up to, one per socket
    (kept once reached: a migration's destination must have the topology the source booted with)."""
    boot = max(1, spec.vcpus - spec.hot_vcpus)
    if not spec.max_vcpus:
        return str(boot)
    most = max(spec.vcpus, spec.max_vcpus)
    return f"{boot},maxcpus={most},sockets={most},cores=1,threads=1"


def _cpu(model: str, socket: int) -> list[str]:
    return ["-device", f"{model},id=hpcpu{socket},socket-id={socket},core-id=0,thread-id=0"]


def cpu_args(spec: InstanceSpec, model: str) -> list[str]:
    """The hot-added vCPUs as CPU devices (``model``: QEMU's type, e.g. ``max-x86_64-cpu``)."""
    boot = max(1, spec.vcpus - spec.hot_vcpus)
    return [arg for k in range(boot, spec.vcpus) for arg in _cpu(model, k)]


def boot_ram_mb(spec: InstanceSpec) -> int:
    """The memory the machine is started with: the total less the hot-added DIMMs."""
    return max(16, spec.ram_mb - sum(spec.dimms_mb))


def memory(spec: InstanceSpec) -> str:
    """``-m``: the boot memory, and DIMM slots up to ``maxmem`` when the VM has headroom."""
    boot = boot_ram_mb(spec)
    if spec.max_ram_mb > boot:
        return f"{boot},slots={SLOTS},maxmem={spec.max_ram_mb}M"
    return str(boot)


def _dimm(n: int, size_mb: int) -> list[str]:
    return [
        "-object",
        f"memory-backend-ram,id=hpmem{n},size={size_mb}M",
        "-device",
        f"pc-dimm,id=hpdimm{n},memdev=hpmem{n}",
    ]


def dimm_args(spec: InstanceSpec) -> list[str]:
    """The hot-added DIMMs, as devices of the command line (not PCI: no slot moves)."""
    return [arg for n, size in enumerate(spec.dimms_mb) for arg in _dimm(n, size)]


async def resize(drv: QemuDriver, i: str, target: LiveSize) -> None:
    """Bring the running instance up to ``target``; then its launch command line says the same,
    so a restart of the process (``reboot``) keeps the new size."""
    if drv.pid(i) is None:
        raise DriverError(f"instance {i} is not running")
    added = await _add_cpus(drv, i, target.vcpus)
    for n, size_mb in enumerate(target.dimms_mb):
        await _add_dimm(drv, i, n, size_mb)
    if target.disk_bytes:
        await _grow_root(drv, i, target.disk_bytes)
    _record(drv, i, target, added)


async def _add_cpus(drv: QemuDriver, i: str, vcpus: int) -> list[str]:
    """Plug CPUs into the free sockets, in order, until the guest has ``vcpus``; their devices."""
    slots: list[dict[str, Any]] = await drv.qmp(i, "query-hotpluggable-cpus")
    present = sum(1 for s in slots if s.get("qom-path"))
    free = sorted(
        (s for s in slots if not s.get("qom-path")), key=lambda s: int(s["props"].get("socket-id", 0))
    )
    missing = vcpus - present
    if missing > len(free):
        raise DriverError(
            f"instance {i} can have {present + len(free)} vCPUs at most while it runs, not {vcpus}"
        )
    added: list[str] = []
    for slot in free[: max(0, missing)]:
        socket = int(slot["props"]["socket-id"])
        await drv.qmp(i, "device_add", {"driver": slot["type"], "id": f"hpcpu{socket}", **slot["props"]})
        added += _cpu(slot["type"], socket)
    return added


async def _add_dimm(drv: QemuDriver, i: str, n: int, size_mb: int) -> None:
    devices: list[dict[str, Any]] = await drv.qmp(i, "query-memory-devices")
    if any(d.get("data", {}).get("id") == f"hpdimm{n}" for d in devices):
        return
    objects: list[dict[str, Any]] = await drv.qmp(i, "qom-list", {"path": "/objects"})
    if not any(o.get("name") == f"hpmem{n}" for o in objects):  # a previous try may have made it
        await drv.qmp(
            i, "object-add", {"qom-type": "memory-backend-ram", "id": f"hpmem{n}", "size": size_mb * MIB}
        )
    await drv.qmp(i, "device_add", {"driver": "pc-dimm", "id": f"hpdimm{n}", "memdev": f"hpmem{n}"})


async def _grow_root(drv: QemuDriver, i: str, size_bytes: int) -> None:
    """``block_resize`` of the root disk (never a shrink): the guest's virtio-blk sees the new size."""
    for dev in await drv.qmp(i, "query-block"):
        if dev.get("device") == "vda":
            size = int(dev.get("inserted", {}).get("image", {}).get("virtual-size", 0))
            if size < size_bytes:
                await drv.qmp(i, "block_resize", {"node-name": ROOT_NODE, "size": size_bytes})
            return
    raise DriverError(f"instance {i} has no root disk vda")


def _record(drv: QemuDriver, i: str, target: LiveSize, cpus: list[str]) -> None:
    """The launch command line with the new CPU devices and DIMMs, for a restart of the same
    process: the same command line a migration's destination gets from the resized spec."""
    launch = drv.instance_dir(i) / "launch.json"
    data = json.loads(launch.read_text())
    argv: list[str] = data["argv"]
    new = [*cpus]
    for n, size_mb in enumerate(target.dimms_mb):
        if f"pc-dimm,id=hpdimm{n},memdev=hpmem{n}" not in argv:
            new += _dimm(n, size_mb)
    kernel = argv.index("-kernel") if "-kernel" in argv else len(argv)
    argv[kernel:kernel] = new
    write_private(launch, json.dumps(data, indent=1))
