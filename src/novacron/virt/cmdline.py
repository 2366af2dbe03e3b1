"""The QEMU driver's command line and process start.

``argv`` builds the whole command line of an instance from its spec: the order of the devices is
part of the guest's view (PCI slots decide NIC names), so new devices go after the existing ones.
``start`` runs it daemonized: the ports' taps must exist first (the host's network sync makes
them), swtpm before QEMU, and every file QEMU leaves is made private to the node's account.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from novacron.private import private_tree, touch_private, write_private
from novacron.virt import firmware, hotplug, netdev, nics, sampling, volumes
from novacron.virt.base import DriverError, InstanceSpec
from novacron.virt.netdev import argv_taps
from novacron.virt.tpm import TPMDEV, start_swtpm, tpm_argv

if TYPE_CHECKING:
    from novacron.virt.qemu import QemuDriver

#: how long a launch waits for its ports' taps (made by the host's network_sync)
PORT_WAIT_S = 60.0


def argv(drv: QemuDriver, spec: InstanceSpec) -> list[str]:
    """The QEMU command line of the instance (its disks, consoles, NICs, devices, firmware)."""
    i = spec.id

    def opt(p: Path) -> str:  # a path inside a QEMU option string: commas are doubled
        return str(p).replace(",", ",,")

    name = re.sub(r"[^A-Za-z0-9_.-]", "-", spec.name or i)[:64]
    cpu = "host" if drv.accelerator == "kvm" else "max"
    argv = [
        drv.qemu_binary,
        "-name",
        f"{name},process=nc-{i[:10]}",
        *firmware.machine_args(spec, drv.accelerator, drv.nvram_path(i)),
        "-cpu",
        cpu,
        # headroom for CPUs and memory hot-added while it runs (no PCI device: slots stay)
        "-smp",
        hotplug.smp(spec),
        "-m",
        hotplug.memory(spec),
        "-nodefaults",
        "-no-reboot",
        "-display",
        "none",
        "-no-user-config",
        # a guest kernel panic pauses the VM with status guest-panicked (observed as CRASHED)
        "-device",
        "pvpanic",
        "-action",
        "panic=pause",
        "-daemonize",
        "-pidfile",
        str(drv.pidfile(i)),
        "-qmp",
        f"unix:{opt(drv.qmp_socket(i))},server=on,wait=off",
        "-chardev",
        f"socket,id=ser0,path={opt(drv.console_socket(i))},server=on,wait=off,"
        f"logfile={opt(drv.console_log(i))},logappend=on",
        "-serial",
        "chardev:ser0",
        *_root_disk(drv, spec),
        "-drive",
        f"file={opt(drv.seed_path(i))},if=none,id=vdb,format=raw,readonly=on",
        "-device",
        "virtio-blk-pci,drive=vdb,id=vdb-dev",
        # qemu-guest-agent's channel, when the guest runs one: application-consistent backups
        "-chardev",
        f"socket,id=qga0,path={opt(drv.qga_socket(i))},server=on,wait=off",
        "-device",
        "virtio-serial-pci,id=vser0",
        "-device",
        "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
    ]
    argv += nics.vm_nic_args(spec, drv.tap_name(i), drv.vhost_user_dir)
    # the guest reports its own memory through the balloon's statistics; last, so the PCI slots
    # of the devices above stay where they were before VMs had it (their NICs keep their names)
    argv += sampling.BALLOON_ARGS
    argv += tpm_argv(spec, drv.tpm_files(i)[1])
    # graphical console: a VGA after the devices above (their PCI slots stay), VNC on a unix socket
    argv += ["-device", "VGA,id=vga0", "-vnc", f"unix:{opt(drv.vnc_socket(i))}"]
    argv += volumes.argv(
        tuple(v for v in spec.volumes if not v.boot), drv.run_dir
    )  # after every fixed device: hot-plugs take the next slots
    # CPUs and memory hot-added while it ran (a migration's destination has them as the source)
    argv += hotplug.cpu_args(spec, f"{cpu}-x86_64-cpu") + hotplug.dimm_args(spec)
    if spec.kernel_path:
        argv += ["-kernel", str(spec.kernel_path)]
        if spec.initrd_path:
            argv += ["-initrd", str(spec.initrd_path)]
        argv += ["-append", spec.kernel_cmdline or "console=ttyS0"]
    return argv


def _root_disk(drv: QemuDriver, spec: InstanceSpec) -> list[str]:
    """The root disk: the image's copy, or a boot volume in its place (same slot, bootindex 1)."""
    if boot := tuple(v for v in spec.volumes if v.boot):
        return volumes.argv(boot, drv.run_dir)
    disk = str(drv.disk_path(spec.id)).replace(",", ",,")
    return [
        "-drive",
        f"file={disk},if=none,id=vda,node-name=vda-disk,format=qcow2,cache=writeback,discard=unmap",
        "-device",
        "virtio-blk-pci,drive=vda,id=vda-dev,bootindex=1",
    ]


async def start(drv: QemuDriver, i: str, argv: list[str]) -> None:
    """Start the daemonized QEMU of ``argv``: its ports' taps first, then swtpm, then QEMU; private files."""
    default = drv.tap_name(i)
    ports = [t for t in argv_taps(argv) if t != default]
    if ports:
        # the host's network_sync, queued with the placement, may still be running
        deadline = time.monotonic() + PORT_WAIT_S
        for device in ports:
            while not await asyncio.to_thread(netdev.link_exists, device):
                if time.monotonic() > deadline:
                    # a guest started without it would boot with a dead NIC
                    raise DriverError(
                        f"the tap {device} of a port of instance {i} does not exist on this host: "
                        "its network was not synced here before the launch"
                    )
                await asyncio.sleep(0.2)
    elif default and drv.bridge:
        await asyncio.to_thread(netdev.ensure_tap, default, drv.bridge)
    for p in drv.run_files(i):
        p.unlink(missing_ok=True)
    if TPMDEV in argv:  # swtpm first: QEMU connects to it as it starts
        await start_swtpm(*drv.tpm_files(i))
    idir = drv.instance_dir(i)
    write_private(idir / "launch.json", json.dumps({"argv": argv, "time": time.time()}, indent=1))
    drv.taps[i] = argv_taps(argv)
    log = idir / "qemu.log"
    # QEMU appends to these and keeps the mode it finds: make them private first
    touch_private(log)
    touch_private(drv.console_log(i))
    with open(log, "ab") as err:
        err.write(f"--- launch {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
        err.flush()
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=err,
            cwd=str(idir),
            start_new_session=True,
        )
        rc = await asyncio.wait_for(proc.wait(), 120)
    if rc != 0:
        tail = log.read_text(errors="replace").splitlines()[-5:]
        raise DriverError(f"QEMU failed to start instance {i} (exit {rc}): {' | '.join(tail)}")
    if drv.pid(i) is None:
        raise DriverError(f"QEMU for instance {i} exited right after start; see {log}")
    # QEMU's -daemonize sets umask 027 for what it makes afterwards (sockets, pidfile), and a
    # caller's umask may be wider than the node's 077: make them private to this account
    await asyncio.to_thread(private_tree, idir)
    for p in drv.run_files(i):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(p, 0o600)
