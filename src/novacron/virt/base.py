"""The hypervisor-driver seam: everything NovaCron asks of a hypervisor on one host.

Two implementations: ``qemu`` (real QEMU processes over QMP) and ``simulated``
(in-memory, only for simulating clusters larger than one machine). Every method
is idempotent, because a task that crashed half-way runs its step again.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class PowerState(enum.StrEnum):
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


@dataclass(frozen=True)
class ImageInfo:
    format: str
    virtual_size_bytes: int
    actual_size_bytes: int


@dataclass(frozen=True)
class HostFacts:
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
    #: one NIC per tenant-network port, in guest order; none: the host's default NIC
    nics: tuple[Nic, ...] = ()
    #: no NIC at all (a DR dry run's VM must not reach production networks)
    isolated: bool = False


@dataclass(frozen=True)
class Observation:
    power_state: PowerState
    pid: int | None = None
    #: the raw QMP ``query-status`` answer, when there is a process
    status: str | None = None


@dataclass(frozen=True)
class MetricsSample:
    time: float
    cpu_time_s: float
    rss_bytes: int
    disk_read_bytes: int
    disk_write_bytes: int
    disk_read_ops: int
    disk_write_ops: int
    net_rx_bytes: int
    net_tx_bytes: int

    def as_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


class ComputeDriver(abc.ABC):
    name: str

    @abc.abstractmethod
    def host_facts(self) -> HostFacts: ...

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
    async def observe(self, instance_id: str) -> Observation: ...

    @abc.abstractmethod
    def list_instances(self) -> list[str]:
        """Ids of every instance with files or a process on this host."""

    @abc.abstractmethod
    async def shutdown(self, instance_id: str, timeout_s: float) -> bool:
        """ACPI power-off, then force after ``timeout_s``. True when the guest went down cleanly."""

    @abc.abstractmethod
    async def power_off(self, instance_id: str) -> None: ...

    @abc.abstractmethod
    async def reboot(self, instance_id: str) -> None: ...

    @abc.abstractmethod
    async def pause(self, instance_id: str) -> None: ...

    @abc.abstractmethod
    async def resume(self, instance_id: str) -> None: ...

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
