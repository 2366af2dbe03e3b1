"""The QEMU driver: real VMs, daemonized QEMU processes controlled over QMP.

Per instance:
  instances_dir/<id>/disk.qcow2   qcow2 overlay on the image (grown to disk_gb)
  instances_dir/<id>/seed.iso     NoCloud seed (label ``cidata``)
  instances_dir/<id>/nvram.fd     a UEFI VM's own firmware variables (beside the disk: see firmware.py)
  instances_dir/<id>/console.log  everything the guest wrote on its serial console (appended)
  instances_dir/.snapbases/<snapshot id>.qcow2  a VM snapshot written out for its linked clones (snapclone.py)
  instances_dir/<id>/qemu.log     QEMU's own stderr (launch errors)
  run_dir/<key>.qmp .ser .pid     QMP socket, serial-console socket, pidfile (short paths)
  run_dir/<key>.vnc               the graphical console: QEMU's VNC server on a unix socket only

QEMU runs with ``-daemonize`` in its own session, so it outlives the agent; a new driver
object re-attaches through the pidfile and the QMP socket with no state of its own.
With ``-no-reboot`` a guest-initiated reboot makes QEMU exit; ``reboot()`` therefore resets
the machine in place with QMP ``system_reset`` (see there).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from novacron.private import mkdir_private
from novacron.virt import (
    blockstream,
    clonedisk,
    cmdline,
    coldmove,
    firmware,
    guestagent,
    hotplug,
    images,
    migration,
    netdev,
    nics,
    procs,
    sampling,
    snapclone,
    snapshots,
    volmove,
    volumes,
)
from novacron.virt.accel import choose_accelerator, kvm_probe
from novacron.virt.base import (
    BackupView,
    ComputeDriver,
    DiskSource,
    DriverError,
    HostFacts,
    ImageInfo,
    InstanceSpec,
    LiveSize,
    MetricsSample,
    Observation,
    PowerState,
    Progress,
    VolumeAttachment,
)
from novacron.virt.cidata import render_meta_data, write_cidata_iso
from novacron.virt.migration import MigrationSettings, MigrationStats, MigrationTarget
from novacron.virt.netdev import argv_taps
from novacron.virt.qmp import QmpUnavailable, qmp_call, qmp_session
from novacron.virt.tpm import stop_swtpm

if TYPE_CHECKING:
    from novacron.virt.cbt import PointInTime

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: QMP query-status -> power state
_STATUS = {
    "running": PowerState.RUNNING,
    "paused": PowerState.PAUSED,
    "suspended": PowerState.PAUSED,
    "prelaunch": PowerState.PAUSED,
    "inmigrate": PowerState.PAUSED,
    "postmigrate": PowerState.PAUSED,
    "finish-migrate": PowerState.PAUSED,
    "save-vm": PowerState.PAUSED,
    "restore-vm": PowerState.PAUSED,
    "debug": PowerState.PAUSED,
    "colo": PowerState.RUNNING,
    "shutdown": PowerState.SHUTOFF,
    "internal-error": PowerState.CRASHED,
    "io-error": PowerState.CRASHED,
    "guest-panicked": PowerState.CRASHED,
    "watchdog": PowerState.CRASHED,
}
UNIX_PATH_MAX = 107


class QemuDriver(ComputeDriver):
    """Real VMs: daemonized QEMU processes over QMP; migrates, backs up and restores."""

    name = "qemu"
    CAN_MIGRATE: ClassVar[bool] = True
    CAN_BACKUP: ClassVar[bool] = True
    CAN_SNAPSHOT: ClassVar[bool] = True

    def __init__(  # noqa: PLR0913 (the host's settings, each with its default, passed by keyword)
        self,
        instances_dir: Path,
        run_dir: Path,
        accelerator: str = "auto",
        bridge: str | None = "novacron0",
        qemu_binary: str = "qemu-system-x86_64",
        tap_salt: str = "",
        shared_dir: Path | None = None,
        sriov_vfs: tuple[str, ...] = (),
        vhost_user_dir: Path | None = None,
    ) -> None:
        self.instances_dir = Path(instances_dir)
        #: disks live here (``<id>/disk.qcow2``) when set: storage that other hosts reach too
        self.shared_dir = Path(shared_dir) if shared_dir else None
        self.tap_salt = tap_salt
        #: this host's SR-IOV virtual functions (PCI addresses) that ``direct`` ports may get
        self.sriov_vfs = sriov_vfs
        #: where this host's DPDK switch keeps its vhost-user sockets
        self.vhost_user_dir = vhost_user_dir
        self.run_dir = Path(run_dir)
        self.bridge = bridge
        self.qemu_binary = qemu_binary
        self.accelerator = choose_accelerator(accelerator, probe=lambda: kvm_probe(qemu_binary))
        if len(str(self.run_dir)) + 16 + 5 > UNIX_PATH_MAX:
            raise DriverError(
                f"run_dir {self.run_dir} is too long for unix socket paths ({UNIX_PATH_MAX} bytes max); "
                f"use a shorter state directory"
            )
        mkdir_private(self.instances_dir)
        mkdir_private(self.run_dir)
        self.storage_id = procs.shared_storage_id(self.shared_dir) if self.shared_dir else ""
        #: instance id -> the taps its QEMU opened (known from its command line)
        self.taps: dict[str, list[str]] = {}
        self._sampler = sampling.Sampler()

    # ---- paths -------------------------------------------------------------------------------

    @staticmethod
    def _check_id(instance_id: str) -> str:
        if not _SAFE_ID.match(instance_id):
            raise DriverError(f"invalid instance id {instance_id!r} (letters, digits, '-', '_', '.'; <= 64)")
        return instance_id

    def _key(self, instance_id: str) -> str:
        """Short, stable name of the run files (16 hex of sha256 of the id)."""
        return hashlib.sha256(self._check_id(instance_id).encode()).hexdigest()[:16]

    def instance_dir(self, instance_id: str) -> Path:
        return self.instances_dir / self._check_id(instance_id)

    def disk_path(self, instance_id: str) -> Path:
        if self.shared_dir is not None:
            return self.shared_dir / self._check_id(instance_id) / "disk.qcow2"
        return self.instance_dir(instance_id) / "disk.qcow2"

    def nvram_path(self, instance_id: str) -> Path:
        """A UEFI VM's variable store: with the disk, so shared storage holds it too."""
        return self.disk_path(instance_id).parent / firmware.NVRAM_NAME

    def seed_path(self, instance_id: str) -> Path:
        return self.instance_dir(instance_id) / "seed.iso"

    def qmp_socket(self, instance_id: str) -> Path:
        return self.run_dir / f"{self._key(instance_id)}.qmp"

    def pidfile(self, instance_id: str) -> Path:
        return self.run_dir / f"{self._key(instance_id)}.pid"

    def console_socket(self, instance_id: str) -> Path:
        return self.run_dir / f"{self._key(instance_id)}.ser"

    def console_log(self, instance_id: str) -> Path:
        return self.instance_dir(instance_id) / "console.log"

    def vnc_socket(self, instance_id: str) -> Path:
        """QEMU's VNC server of the instance's VGA screen: a unix socket in the private run_dir,
        never a TCP port, reached only through the console relay."""
        return self.run_dir / f"{self._key(instance_id)}.vnc"

    def run_files(self, i: str) -> tuple[Path, ...]:  # its sockets and pidfile in run_dir
        sockets = (self.qmp_socket(i), self.console_socket(i), self.vnc_socket(i), self.qga_socket(i))
        return (*sockets, self.pidfile(i))

    def qga_socket(self, instance_id: str) -> Path:
        """The guest agent's channel (``org.qemu.guest_agent.0``): backups freeze filesystems through it."""
        return self.run_dir / f"{self._key(instance_id)}.qga"

    async def guest_info(self, instance_id: str) -> dict[str, Any] | None:
        """Asked only while a guest agent holds the channel (QEMU's chardev frontend is open then):
        a guest without one costs a QMP query, never a wait."""
        for dev in await self.qmp(instance_id, "query-chardev"):
            if dev.get("label") == "qga0" and dev.get("frontend-open"):
                return await guestagent.info(self.qga_socket(instance_id))
        return None

    def tpm_files(self, instance_id: str) -> tuple[Path, Path, Path, Path]:
        """A vTPM's state dir, control socket, swtpm pidfile and log (virt/tpm.py)."""
        key, idir = self._key(instance_id), self.instance_dir(instance_id)
        return idir / "tpm", self.run_dir / f"{key}.tpm", self.run_dir / f"{key}.tpmpid", idir / "swtpm.log"

    def tap_name(self, instance_id: str) -> str | None:
        return netdev.tap_name(instance_id, self.tap_salt) if self.bridge else None

    def pid(self, instance_id: str) -> int | None:
        """The pid of the instance's live QEMU process, or None."""
        return procs.live_pid(self.pidfile(instance_id))

    # ---- host and images ---------------------------------------------------------------------

    def host_facts(self) -> HostFacts:
        return replace(
            procs.host_facts(self.instances_dir, self.accelerator),
            shared_storage=self.storage_id,
            nic_traits=nics.host_nic_traits(self.sriov_vfs, self.vhost_user_dir),
        )

    def inspect_image(self, path: Path) -> ImageInfo:
        return images.inspect_image(path)

    # ---- lifecycle ---------------------------------------------------------------------------

    async def prepare(self, spec: InstanceSpec) -> None:
        mkdir_private(self.instance_dir(spec.id))
        disk = self.disk_path(spec.id)
        mkdir_private(disk.parent)
        stopped = self.pid(spec.id) is None
        if not any(v.boot for v in spec.volumes):  # a boot volume is the root disk: no local one
            await images.prepare_disk(
                disk, spec, rebase=self.shared_dir is not None and stopped, resize=stopped
            )
        await asyncio.to_thread(firmware.ensure_nvram, spec, self.nvram_path(spec.id))
        await self.write_seed(spec)

    async def write_seed(self, spec: InstanceSpec) -> None:
        """The instance's NoCloud seed ISO (meta-data, user-data, network-config), mode 0600:
        user-data often carries passwords and keys."""
        mkdir_private(self.instance_dir(spec.id))
        meta = dict(spec.meta_data)
        network_config = meta.pop("network-config", None) or meta.pop("network_config", None)
        if network_config is not None and not isinstance(network_config, str):
            network_config = json.dumps(network_config)
        await asyncio.to_thread(
            write_cidata_iso,
            self.seed_path(spec.id),
            render_meta_data(meta, spec.id, spec.name),
            spec.user_data,
            network_config,
            spec.vendor_data,
        )
        os.chmod(self.seed_path(spec.id), 0o600)

    def _argv(self, spec: InstanceSpec) -> list[str]:
        return cmdline.argv(self, spec)

    async def launch(self, spec: InstanceSpec) -> None:
        i = spec.id
        if self.pid(i) is not None:
            return
        rooted = self.disk_path(i).exists() or any(v.boot for v in spec.volumes)
        if not rooted or not self.seed_path(i).exists():
            await self.prepare(spec)
        await asyncio.to_thread(firmware.ensure_nvram, spec, self.nvram_path(i))
        for mac in [spec.mac, *(nic.mac for nic in spec.nics)]:
            if not re.fullmatch(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}", mac):
                raise DriverError(f"invalid MAC address {mac!r}")
        await self._start(i, self._launch_argv(spec))

    def _launch_argv(self, spec: InstanceSpec) -> list[str]:
        """The command line of a start now: ``direct`` NICs get a virtual function no running VM has."""
        if any(n.vnic_type == "direct" for n in spec.nics):
            spec = replace(spec, nics=tuple(nics.assign_vfs(spec.nics, self._free_vfs())))
        return self._argv(spec)

    def _free_vfs(self) -> list[str]:
        """This host's virtual functions that no running QEMU has (read from their command lines)."""
        taken: set[str] = set()
        for launch in self.instances_dir.glob("*/launch.json"):
            if self.pid(launch.parent.name) is None:
                continue
            argv = json.loads(launch.read_text()).get("argv", [])
            taken.update(a.split("host=", 1)[1].split(",")[0] for a in argv if a.startswith("vfio-pci,host="))
        return [vf for vf in self.sriov_vfs if vf not in taken]

    async def _start(self, i: str, argv: list[str]) -> None:
        await cmdline.start(self, i, argv)

    async def start_argv(self, instance_id: str, argv: list[str]) -> None:
        """Start the instance with a command line it ran before (launch.json): reboot, revert."""
        await self._start(instance_id, argv)

    async def create_snapshot(
        self, instance_id: str, tag: str, memory: bool, quiesce: bool, report: Progress | None = None
    ) -> dict[str, Any]:
        return await snapshots.create(self, instance_id, tag, memory, quiesce, report)

    async def revert_snapshot(
        self, instance_id: str, tag: str, report: Progress | None = None
    ) -> dict[str, Any]:
        return await snapshots.revert(self, instance_id, tag, report)

    async def delete_snapshot(self, instance_id: str, tag: str) -> None:
        await snapshots.delete(self, instance_id, tag)

    # ---- volumes, migration, backup, restore: the seam's steps, each in its module --------------

    async def attach_volume(self, instance_id: str, volume: VolumeAttachment) -> None:
        await volumes.attach(self, instance_id, volume)

    async def detach_volume(self, instance_id: str, volume_id: str, timeout_s: float) -> None:
        await volumes.detach(self, instance_id, volume_id, timeout_s)

    async def extend_volume(self, instance_id: str, volume_id: str, size_bytes: int) -> None:
        await volumes.extend(self, instance_id, volume_id, size_bytes)

    async def set_volume_limits(self, instance_id: str, volume: VolumeAttachment) -> None:
        await volumes.set_limits(self, instance_id, volume)

    async def resize_live(self, instance_id: str, target: LiveSize) -> None:
        await hotplug.resize(self, instance_id, target)

    async def snapshot_volume(self, instance_id: str, volume_id: str, name: str, delete: bool) -> None:
        await volumes.snapshot(self, instance_id, volume_id, name, delete)

    async def migration_storage(self, instance_id: str, volumes: tuple[str, ...] = ()) -> dict[str, Any]:
        return await migration.storage_of(self, instance_id, volumes)

    def choose_migration_storage(self, instance_id: str, requested: str, source: dict[str, Any]) -> str:
        return migration.choose_storage(self, instance_id, requested, source)

    def choose_volume_storage(self, source: dict[str, Any]) -> dict[str, str]:
        return volmove.choose(self, source.get("volumes", {}))

    def drop_volume_copies(self, paths: list[str]) -> list[str]:
        return volmove.drop(self, paths)

    async def migrate_receive(
        self,
        spec: InstanceSpec,
        host: str = "127.0.0.1",
        storage: str = "local",
        copy_volumes: dict[str, int] | None = None,
    ) -> MigrationTarget:
        return await migration.receive(self, spec, host, storage, copy_volumes)

    async def migrate_send(
        self,
        instance_id: str,
        target: MigrationTarget,
        settings: MigrationSettings | None = None,
        report: Progress | None = None,
        timeout_s: float = 3600.0,
    ) -> MigrationStats:
        return await migration.send(self, instance_id, target, settings, report, timeout_s)

    async def migrate_finish(self, instance_id: str, storage: str = "local") -> float:
        return await migration.finish(self, instance_id, storage)

    async def serve_disk(
        self, instance_id: str, host: str, volumes: tuple[str, ...] = (), disk: bool = True
    ) -> DiskSource:
        return await coldmove.serve_disk(self, instance_id, host, volumes, disk)

    async def fetch_disk(
        self,
        spec: InstanceSpec,
        source: DiskSource,
        report: Progress | None = None,
        volume_ids: tuple[str, ...] = (),
    ) -> dict[str, str]:
        return await coldmove.fetch_disk(self, spec, source, report, volume_ids)

    def scratch_dir(self, instance_id: str) -> Path:
        return self.instance_dir(instance_id)

    def backup_view(
        self, instance_id: str, view: BackupView, report: Progress | None = None
    ) -> AbstractAsyncContextManager[list[PointInTime]]:
        from novacron.virt import cbt  # libnbd: only on hosts that back VMs up

        return cbt.backup_view(self, instance_id, view, report)

    async def commit_backup(
        self, instance_id: str, snapshot_id: str, chunk_size: int, volumes: tuple[VolumeAttachment, ...] = ()
    ) -> None:
        from novacron.virt import cbt

        await cbt.commit(self, instance_id, snapshot_id, chunk_size, volumes)

    async def discard_backup(
        self, instance_id: str, snapshot_id: str, volumes: tuple[VolumeAttachment, ...] = ()
    ) -> None:
        from novacron.virt import cbt

        await cbt.discard(self, instance_id, snapshot_id, volumes)

    async def stream_backing(
        self, instance_id: str, speed_bytes: int, report: Progress | None = None
    ) -> None:
        await blockstream.stream(self, instance_id, speed_bytes, report)

    async def _qmp(self, instance_id: str, command: str, args: dict[str, Any] | None = None) -> Any:
        return await qmp_call(self.qmp_socket(instance_id), command, args)

    async def qmp(self, instance_id: str, command: str, args: dict[str, Any] | None = None) -> Any:
        """Run any QMP command on a running instance (for backup, migration, diagnostics)."""
        if self.pid(instance_id) is None:
            raise DriverError(f"instance {instance_id} is not running")
        return await self._qmp(instance_id, command, args)

    async def observe(self, instance_id: str) -> Observation:
        pid = self.pid(instance_id)
        if pid is None:
            if self.instance_dir(instance_id).exists():
                return Observation(PowerState.SHUTOFF)
            return Observation(PowerState.ABSENT)
        try:  # every second for every VM, as the sample: the lean session
            async with qmp_session(self.qmp_socket(instance_id), timeout_s=5.0) as qmp:
                res = await qmp.execute("query-status")
        except QmpUnavailable:
            if self.pid(instance_id) is None:  # exited while we asked
                return await self.observe(instance_id)
            # alive but the monitor is busy with another client: it still runs
            return Observation(PowerState.RUNNING, pid=pid, status=None)
        status = str(res.get("status", "")) if isinstance(res, dict) else ""
        return Observation(_STATUS.get(status, PowerState.RUNNING), pid=pid, status=status)

    def list_instances(self) -> list[str]:
        if not self.instances_dir.is_dir():
            return []
        return sorted(p.name for p in self.instances_dir.iterdir() if p.is_dir() and _SAFE_ID.match(p.name))

    async def _wait_exit(self, instance_id: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.pid(instance_id) is None:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)

    def _signal(self, instance_id: str, sig: signal.Signals) -> None:
        pid = self.pid(instance_id)  # verified against the cmdline, so never a recycled pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    async def shutdown(self, instance_id: str, timeout_s: float) -> bool:
        if self.pid(instance_id) is None:
            return True
        with contextlib.suppress(QmpUnavailable):
            await self._qmp(instance_id, "system_powerdown")
        if await self._wait_exit(instance_id, timeout_s):
            return True
        await self.power_off(instance_id)
        return False

    async def power_off(self, instance_id: str) -> None:
        try:
            await self._power_off(instance_id)
        finally:  # swtpm ends with QEMU's connection; one whose QEMU never connected is ended here
            stop_swtpm(self.tpm_files(instance_id)[2])

    async def _power_off(self, instance_id: str) -> None:
        if self.pid(instance_id) is None:
            return
        with contextlib.suppress(DriverError):
            await qmp_call(self.qmp_socket(instance_id), "quit", timeout_s=3.0)
        if await self._wait_exit(instance_id, 5.0):
            return
        self._signal(instance_id, signal.SIGTERM)
        if await self._wait_exit(instance_id, 5.0):
            return
        self._signal(instance_id, signal.SIGKILL)
        if not await self._wait_exit(instance_id, 10.0):
            raise DriverError(f"QEMU of instance {instance_id} survived SIGKILL")

    async def reboot(self, instance_id: str) -> None:
        """Cold restart: the QEMU process is ended and started again with the same command line.

        Under ``-no-reboot`` QEMU turns every reset into an exit: QMP ``system_reset`` included,
        and switching the reboot action to ``reset`` for the request is not enough, because
        SeaBIOS resets the machine once more on a warm boot. A reboot from inside the guest
        likewise ends the process (the agent sees the VM stopped and starts it if it should run).
        """
        if self.pid(instance_id) is None:
            raise DriverError(f"instance {instance_id} is not running")
        launch = self.instance_dir(instance_id) / "launch.json"
        argv = json.loads(launch.read_text())["argv"]
        await self.power_off(instance_id)
        await self._start(instance_id, argv)

    async def pause(self, instance_id: str) -> None:
        await self.qmp(instance_id, "stop")

    async def resume(self, instance_id: str) -> None:
        await self.qmp(instance_id, "cont")

    async def destroy(self, instance_id: str) -> None:
        base = await asyncio.to_thread(snapclone.base_of, self.disk_path(instance_id))
        await self.forget(instance_id)
        if self.shared_dir is not None:
            await asyncio.to_thread(shutil.rmtree, self.disk_path(instance_id).parent, True)
        await snapclone.reclaim(base)  # its last linked clone gone: the snapshot's base goes too

    async def forget(self, instance_id: str) -> None:
        await self.power_off(instance_id)
        self.taps.pop(instance_id, None)
        self._sampler.forget(instance_id)
        tap = netdev.tap_name(instance_id, self.tap_salt)
        await asyncio.to_thread(netdev.delete_link, tap)  # pyroute2 runs its own loop: not in ours
        for run_file in self.run_files(instance_id):
            run_file.unlink(missing_ok=True)
        idir = self.instance_dir(instance_id)
        if idir.exists():
            await asyncio.to_thread(shutil.rmtree, idir, True)

    async def snapshot_disk(self, instance_id: str, dest: Path) -> ImageInfo:
        if self.pid(instance_id) is not None:
            raise DriverError(f"instance {instance_id} is running; stop it before snapshotting its disk")
        disk = self.disk_path(instance_id)
        if not disk.exists():
            raise DriverError(f"instance {instance_id} has no disk on this host")
        return await images.flatten(disk, Path(dest))

    async def clone_disk(
        self,
        source_id: str,
        instance_id: str,
        report: Progress | None = None,
        snapshot: str | None = None,
        full: bool = False,
    ) -> None:
        if snapshot is not None and not full:
            await snapclone.linked(self, self._check_id(source_id), snapshot, self._check_id(instance_id))
            return
        await clonedisk.clone(self, self._check_id(source_id), self._check_id(instance_id), report, snapshot)

    def _instance_taps(self, instance_id: str) -> list[str]:
        """Every tap of the instance (one per port, or the default one), for its traffic counters."""
        if instance_id not in self.taps:
            try:
                argv = json.loads((self.instance_dir(instance_id) / "launch.json").read_text())["argv"]
            except (OSError, ValueError, KeyError):
                default = self.tap_name(instance_id)
                return [default] if default else []
            self.taps[instance_id] = argv_taps(argv)
        return self.taps[instance_id]

    async def sample(self, instance_id: str) -> MetricsSample | None:
        pid = self.pid(instance_id)
        if pid is None:
            return None
        taps = self._instance_taps(instance_id)
        return await self._sampler.sample(self.qmp_socket(instance_id), instance_id, pid, taps)
