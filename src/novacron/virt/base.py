"""The hypervisor-driver seam: everything NovaCron asks of a hypervisor on one host.

Two implementations: ``qemu`` (real QEMU processes over QMP) and ``simulated``
(in-memory, only for simulating clusters larger than one machine). Every method
is idempotent, because a task that crashed half-way runs its step again.

Beyond the lifecycle every driver has, a driver may move instances between hosts (``CAN_MIGRATE``)
and back their disks up and restore them (``CAN_BACKUP``); a driver that cannot leaves those
methods as they are here, and they refuse with ``NotSupported`` (as Ganeti's ``hv_base`` does).
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

if TYPE_CHECKING:
    from novacron.virt.cbt import PointInTime
    from novacron.virt.migration import MigrationSettings, MigrationStats, MigrationTarget

#: a long operation's progress callback: called with the detail about once a second, it answers
#: True when the user asked to cancel
Progress = Callable[[dict[str, Any]], Awaitable[bool]]


class PowerState(enum.StrEnum):
    """An instance's power state as the hypervisor reports it."""

    RUNNING = "running"
    PAUSED = "paused"
    SHUTOFF = "stopped"
    CRASHED = "crashed"
    #: no process and no disk: the instance does not exist on this host
    ABSENT = "absent"


class DriverError(Exception):
    """A hypervisor operation failed; ``str(err)`` says what and what to do next."""


class InvalidImage(DriverError):
    """The image file is not a format the driver accepts."""


class NotSupported(DriverError):
    """This driver cannot do what was asked (``str(err)`` names the driver and the operation)."""


@dataclass(frozen=True)
class ImageInfo:
    """What a disk image is: its format and sizes, read from its header."""

    format: str
    virtual_size_bytes: int
    actual_size_bytes: int


@dataclass(frozen=True)
class HostFacts:
    """A host's capacity and capabilities, reported when its agent registers."""

    cpus: int
    cpu_model: str
    cpu_flags: frozenset[str]
    ram_mb: int
    disk_gb: int
    accelerator: str
    #: id of the shared storage holding this host's VM disks ("" when they are local): hosts
    #: reporting the same id reach the same disks, so a VM can restart on any of them
    shared_storage: str = ""
    #: the host's underlay address for VXLAN (NOVACRON_UNDERLAY_IP; "" when not set)
    underlay_ip: str = ""
    #: NIC hardware the host offers to ports (``sriov``, ``dpdk``): host traits the scheduler matches
    nic_traits: tuple[str, ...] = ()


@dataclass(frozen=True)
class Nic:
    """A guest NIC on a tenant network: its port's tap ``device`` is made by the network backend."""

    port_id: str
    mac: str
    device: str
    network_id: str
    vnic_type: str = "normal"
    #: ``direct`` (SR-IOV): the PCI address of the host's virtual function given to the guest
    pci_address: str = ""


@dataclass(frozen=True)
class VolumeAttachment:
    """A volume given to a guest as a virtio disk: where its storage pool keeps it.

    ``driver`` is the pool's (``file``: ``path`` is a qcow2 file that this host reaches, local or on a
    shared filesystem); ``serial`` is what the guest reads as the disk's serial number.
    """

    volume_id: str
    driver: str
    path: str
    serial: str
    #: I/O limits (``iops_total``, ``bps_read``, ... ``compute.volume_limits``): none, unlimited
    limits: dict[str, int] = field(default_factory=dict)
    #: the VM's root disk: the first in the boot order, in place of the image's disk
    boot: bool = False


@dataclass(frozen=True)
class InstanceSpec:
    """Everything needed to build and launch one VM; derived from the VM row and its image."""

    id: str
    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    image_path: Path
    image_format: str
    mac: str
    kernel_path: Path | None = None
    initrd_path: Path | None = None
    kernel_cmdline: str = ""
    user_data: str = ""
    meta_data: dict[str, Any] = field(default_factory=dict)
    #: cloud-init vendor-data: the tenant's secrets as ``write_files`` (never in the VM row)
    vendor_data: str | None = None
    #: one NIC per tenant-network port, in guest order; none: the host's default NIC
    nics: tuple[Nic, ...] = ()
    #: no NIC at all (a DR dry run's VM must not reach production networks)
    isolated: bool = False
    #: ``pc`` or ``q35`` (compute.hardware)
    machine: str = "pc"
    #: ``bios`` (SeaBIOS) or ``uefi`` (OVMF, with the VM's own NVRAM variables)
    firmware: str = "bios"
    secure_boot: bool = False
    #: a virtual TPM 2.0 (swtpm)
    tpm: bool = False
    #: volumes attached to the VM, after its root disk and seed, in attachment order
    volumes: tuple[VolumeAttachment, ...] = ()
    #: live-resize headroom (``-smp maxcpus``, ``-m maxmem``; 0: none, the command line of before)
    max_vcpus: int = 0
    max_ram_mb: int = 0
    #: vCPUs of ``vcpus`` hot-added while it ran: CPU devices on the command line, not ``-smp``
    #: (the boot count sizes devices, e.g. virtio-blk's queues, which a migration must match)
    hot_vcpus: int = 0
    #: memory hot-added while it ran, one DIMM each (MiB, in order): part of ``ram_mb``, and a
    #: migration's destination must have them as the source does (virt/hotplug.py)
    dimms_mb: tuple[int, ...] = ()


@dataclass(frozen=True)
class LiveSize:
    """What a running instance is grown to: its vCPUs, its hot-added DIMMs (MiB), its root disk."""

    vcpus: int
    dimms_mb: tuple[int, ...] = ()
    disk_bytes: int = 0


@dataclass(frozen=True)
class DiskSource:
    """Where a cold migration's source serves a stopped instance's disk (``serve_disk``)."""

    host: str
    port: int
    size: int
    #: a UEFI VM's variable store, served right after the disk (0: none)
    nvram_size: int = 0
    #: a vTPM's state file, served after those (0: none)
    tpm_size: int = 0
    #: the files of the volumes asked for, served last, in the order asked
    volume_sizes: tuple[int, ...] = ()


@dataclass(frozen=True)
class BackupView:
    """What a backup asks of the disk's point-in-time view (``ComputeDriver.backup_view``)."""

    snapshot_id: str
    #: the previous backup, whose change tracking gives the chunks changed since (None: a full one)
    parent_id: str | None
    #: the chunk store's chunk size: one bit of change tracking per chunk
    chunk_size: int
    #: read the whole disk even when the parent's change tracking is usable
    full: bool = False
    #: the VM's attached volumes: each is a disk of the backup too, in the same point in time
    volumes: tuple[VolumeAttachment, ...] = ()


@dataclass(frozen=True)
class Observation:
    """An instance's observed power state (and why, when it is not running)."""

    power_state: PowerState
    pid: int | None = None
    #: the raw QMP ``query-status`` answer, when there is a process
    status: str | None = None


@dataclass(frozen=True)
class MetricsSample:
    """One resource sample of an instance: CPU time, memory, disk and NIC counters.

    ``cpu_time_s`` and ``rss_bytes`` are the hypervisor process's (emulation and I/O threads
    included); ``vcpu_time_s`` is the guest's own CPU (its vCPU threads) and the ``guest_mem_*``
    figures are memory as the guest sees it (virtio-balloon statistics), None until the guest has
    reported them (no balloon driver in the guest, or not booted that far yet).
    """

    time: float
    cpu_time_s: float
    rss_bytes: int
    disk_read_bytes: int
    disk_write_bytes: int
    disk_read_ops: int
    disk_write_ops: int
    net_rx_bytes: int
    net_tx_bytes: int
    vcpu_time_s: float
    guest_mem_total_bytes: int | None = None
    guest_mem_available_bytes: int | None = None
    guest_mem_free_bytes: int | None = None

    def as_dict(self) -> dict[str, float | int]:
        """The sample as plain JSON numbers, as agents report it: a figure not known is left out."""
        return {key: value for key, value in self.__dict__.items() if value is not None}


class ComputeDriver(abc.ABC):
    """One host's hypervisor, as the agent drives it."""

    name: str
    #: the live and cold migration steps below are implemented
    CAN_MIGRATE: ClassVar[bool] = False
    #: the backup and restore steps below are implemented
    CAN_BACKUP: ClassVar[bool] = False
    #: the VM snapshot steps below are implemented
    CAN_SNAPSHOT: ClassVar[bool] = False

    def refuse(self, what: str) -> NoReturn:
        """Raise ``NotSupported``: this driver cannot ``what`` (``migrate``, ``back VMs up``, ...)."""
        raise NotSupported(f"the {self.name} driver cannot {what}")

    @abc.abstractmethod
    def host_facts(self) -> HostFacts:
        """The host's capacity and capabilities as this driver sees them."""

    @abc.abstractmethod
    def inspect_image(self, path: Path) -> ImageInfo:
        """Validate an image file; raise ``InvalidImage`` for anything but raw or qcow2."""

    @abc.abstractmethod
    async def prepare(self, spec: InstanceSpec) -> None:
        """Create the instance disk (an overlay on the image) and the cloud-init seed."""

    @abc.abstractmethod
    async def launch(self, spec: InstanceSpec) -> None:
        """Start the instance; a no-op when it already runs."""

    @abc.abstractmethod
    async def observe(self, instance_id: str) -> Observation:
        """The instance's power state now (``absent`` when the hypervisor has no such instance)."""

    @abc.abstractmethod
    def list_instances(self) -> list[str]:
        """Ids of every instance with files or a process on this host."""

    @abc.abstractmethod
    async def shutdown(self, instance_id: str, timeout_s: float) -> bool:
        """ACPI power-off, then force after ``timeout_s``. True when the guest went down cleanly."""

    @abc.abstractmethod
    async def power_off(self, instance_id: str) -> None:
        """Stop the instance at once, like pulling the plug."""

    @abc.abstractmethod
    async def reboot(self, instance_id: str) -> None:
        """Restart the instance."""

    @abc.abstractmethod
    async def pause(self, instance_id: str) -> None:
        """Freeze the instance's vCPUs; its memory stays."""

    @abc.abstractmethod
    async def resume(self, instance_id: str) -> None:
        """Run a paused instance again."""

    @abc.abstractmethod
    async def destroy(self, instance_id: str) -> None:
        """Kill the process and remove every disk, socket and file of the instance."""

    async def forget(self, instance_id: str) -> None:
        """Remove the instance from this host but keep a disk on shared storage (the VM moved)."""
        await self.destroy(instance_id)

    @abc.abstractmethod
    async def snapshot_disk(self, instance_id: str, dest: Path) -> ImageInfo:
        """Flatten a stopped instance's disk into a standalone qcow2 at ``dest``."""

    @abc.abstractmethod
    async def sample(self, instance_id: str) -> MetricsSample | None:
        """Resource counters of a running instance, or None when it is not running."""

    @abc.abstractmethod
    def console_socket(self, instance_id: str) -> Path:
        """A unix stream socket carrying the serial console (one client at a time)."""

    @abc.abstractmethod
    def console_log(self, instance_id: str) -> Path:
        """Everything the guest wrote on its serial console, kept across restarts."""

    async def guest_info(self, instance_id: str) -> dict[str, Any] | None:
        """What the guest's own agent says about it (``virt/guestagent.info``); None without one."""
        return None

    def vnc_socket(self, instance_id: str) -> Path:
        """A unix stream socket serving the instance's screen as VNC (RFB), when it has one."""
        self.refuse("show a graphical console")

    def pid(self, instance_id: str) -> int | None:
        """The pid of the instance's running process (or the simulation's), None when it is not running."""
        self.refuse("tell an instance's process")

    # ---- volumes (hot-plug into a running instance; see novacron.virt.volumes) -------------------

    async def attach_volume(self, instance_id: str, volume: VolumeAttachment) -> None:
        """Plug ``volume`` into the running instance as a new virtio disk (a no-op when it is there)."""
        self.refuse("hot-plug volumes")

    async def detach_volume(self, instance_id: str, volume_id: str, timeout_s: float) -> None:
        """Unplug the volume, waiting up to ``timeout_s`` for the guest to release it."""
        self.refuse("hot-plug volumes")

    async def extend_volume(self, instance_id: str, volume_id: str, size_bytes: int) -> None:
        """Grow an attached volume of the running instance; the guest sees its new size."""
        self.refuse("extend volumes online")

    async def set_volume_limits(self, instance_id: str, volume: VolumeAttachment) -> None:
        """Give an attached volume of the running instance ``volume.limits`` now."""
        self.refuse("limit volume I/O")

    async def snapshot_volume(self, instance_id: str, volume_id: str, name: str, delete: bool) -> None:
        """Take (``delete``: drop) the snapshot ``name`` of an attached volume of the running instance."""
        self.refuse("snapshot attached volumes")

    async def resize_live(self, instance_id: str, target: LiveSize) -> None:
        """Hot-add vCPUs and memory DIMMs and grow the root disk of the running instance up to
        ``target`` (what is there already is kept: a second call does nothing)."""
        self.refuse("resize a running VM")

    # ---- live and cold migration (CAN_MIGRATE; see novacron.virt.migration and coldmove) ----

    async def migration_storage(self, instance_id: str, volumes: tuple[str, ...] = ()) -> dict[str, Any]:
        """Source: where the instance's disk and volumes (those it runs with, and the files
        ``volumes``) live, for the destination to compare."""
        self.refuse("migrate")

    def choose_migration_storage(self, instance_id: str, requested: str, source: dict[str, Any]) -> str:
        """Destination: ``shared`` when it reaches the source's disk, else ``local`` (or refuses)."""
        self.refuse("migrate")

    def choose_volume_storage(self, source: dict[str, Any]) -> dict[str, str]:
        """Destination: per volume path of the source, ``shared`` (reached here) or ``local`` (copied)."""
        self.refuse("migrate")

    def drop_volume_copies(self, paths: list[str]) -> list[str]:
        """Remove this host's copies of volumes that moved to another host; the paths removed."""
        self.refuse("migrate")

    async def migrate_receive(
        self, spec: InstanceSpec, host: str, storage: str, copy_volumes: dict[str, int] | None = None
    ) -> MigrationTarget:
        """Destination step 1: wait paused for the incoming state (the disks to copy exported)."""
        self.refuse("migrate")

    async def migrate_send(
        self,
        instance_id: str,
        target: MigrationTarget,
        settings: MigrationSettings | None = None,
        report: Progress | None = None,
    ) -> MigrationStats:
        """Source step: move the disk (``local``) and the running state; the source ends paused."""
        self.refuse("migrate")

    async def migrate_finish(self, instance_id: str, storage: str = "local") -> float:
        """Destination step 2: run the guest; returns the wall-clock time it ran again."""
        self.refuse("migrate")

    async def serve_disk(
        self, instance_id: str, host: str, volumes: tuple[str, ...] = (), disk: bool = True
    ) -> DiskSource:
        """Cold migration, source: serve the stopped instance's disk (unless not ``disk``) once, on
        ``host``, then the files of ``volumes``, which the destination does not reach."""
        self.refuse("migrate")

    async def fetch_disk(
        self,
        spec: InstanceSpec,
        source: DiskSource,
        report: Progress | None = None,
        volume_ids: tuple[str, ...] = (),
    ) -> dict[str, str]:
        """Cold migration, destination: pull the disk ``source`` serves and make it the instance's;
        the volumes ``volume_ids`` served after it land in this host's volumes dir (id -> path)."""
        self.refuse("migrate")

    # ---- backup and restore (CAN_BACKUP; see novacron.virt.cbt, novacron.backup) ---------------

    def disk_path(self, instance_id: str) -> Path:
        """The instance's disk file on this host (where a restore writes it)."""
        self.refuse("back VMs up")

    def scratch_dir(self, instance_id: str) -> Path:
        """A directory of the instance's own for a backup's or restore's working files."""
        self.refuse("back VMs up")

    def backup_view(
        self, instance_id: str, view: BackupView, report: Progress | None = None
    ) -> AbstractAsyncContextManager[list[PointInTime]]:
        """The disks (root disk, then ``view.volumes``) as they are now, all at one point in time,
        readable while the body of the ``async with`` reads them (running or stopped); with change
        tracking since ``view.parent_id`` where the driver has it."""
        self.refuse("back VMs up")

    async def commit_backup(
        self, instance_id: str, snapshot_id: str, chunk_size: int, volumes: tuple[VolumeAttachment, ...] = ()
    ) -> None:
        """The backup is stored: its change tracking becomes the one the next backup starts from."""
        self.refuse("back VMs up")

    async def discard_backup(
        self, instance_id: str, snapshot_id: str, volumes: tuple[VolumeAttachment, ...] = ()
    ) -> None:
        """The backup failed: drop its change tracking (the parent's still covers every change)."""
        self.refuse("back VMs up")

    async def stream_backing(
        self, instance_id: str, speed_bytes: int, report: Progress | None = None
    ) -> None:
        """Copy into the running instance's disk everything it still reads from its backing file."""
        self.refuse("back VMs up")

    # ---- VM snapshots (CAN_SNAPSHOT; see novacron.virt.snapshots) ---------------------------------

    async def create_snapshot(
        self, instance_id: str, tag: str, memory: bool, quiesce: bool, report: Progress | None = None
    ) -> dict[str, Any]:
        """Take snapshot ``tag`` of the instance's disk (running or stopped), with its RAM when
        ``memory`` (running only); freeze the guest's filesystems first when ``quiesce`` and it has
        an agent. Answers ``consistency`` (crash, application, memory) and ``vm_state_bytes``."""
        self.refuse("snapshot VMs")

    async def revert_snapshot(
        self, instance_id: str, tag: str, report: Progress | None = None
    ) -> dict[str, Any]:
        """Make the disk what it was at ``tag``; a running guest resumes at a RAM snapshot's point,
        or restarts on the reverted disk. Answers ``restarted``, ``memory``, ``bitmaps_dropped``."""
        self.refuse("snapshot VMs")

    async def delete_snapshot(self, instance_id: str, tag: str) -> None:
        """Delete snapshot ``tag`` (running or stopped); the other snapshots keep their data."""
        self.refuse("snapshot VMs")

    async def clone_disk(
        self,
        source_id: str,
        instance_id: str,
        report: Progress | None = None,
        snapshot: str | None = None,
        full: bool = False,
    ) -> None:
        """Write a full, standalone copy of instance ``source_id``'s disk as ``instance_id``'s disk:
        of a stopped source from its file, of a running one through a block job (the guest runs on).
        With ``snapshot`` (one of the source's VM snapshots): a linked clone of that snapshot, or
        with ``full`` a standalone copy of what the snapshot holds."""
        self.refuse("clone disks")
