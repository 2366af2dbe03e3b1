"""The agent protocol: one frozen request type per host operation, and its JSON form.

The control plane queues an operation as its name (``Request.OP``) and a JSON payload
(``encode``); the agent rebuilds the typed request from them (``parse``) and runs its handler
(``agent/handlers.py``). The payload is the dataclass's ``asdict`` form, rebuilt by type hint as
``network/wire.py`` does for the network state, so it is the JSON both sides exchanged before the
types existed: an older agent reads a newer server's payload and the other way round (keys one
side does not know are ignored; a key left out takes the field's default).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from novacron.lbaas.model import LoadBalancerSpec
from novacron.monitoring.slo.checks import Check
from novacron.network.wire import HostState, from_dict, to_dict
from novacron.virt.base import DiskSource, LiveSize, Nic, VolumeAttachment
from novacron.virt.migration import MigrationSettings, MigrationTarget


class BadRequest(ValueError):
    """An operation the agent does not know, or a payload that does not fit the operation."""


@dataclass(frozen=True)
class Request:
    """A host operation's request; ``OP`` names it on the wire."""

    OP: ClassVar[str] = ""


R = TypeVar("R", bound=type[Request])
#: operation name -> request type
REQUESTS: dict[str, type[Request]] = {}


def operation(op: str) -> Callable[[R], R]:
    """Register a request type under its operation name."""

    def register(cls: R) -> R:
        cls.OP = op
        REQUESTS[op] = cls
        return cls

    return register


def encode(request: Request) -> dict[str, Any]:
    """The request's payload as queued for the agent (JSON)."""
    return to_dict(request)


def parse(op: str, payload: dict[str, Any]) -> Request:
    """The typed request for ``op``; ``BadRequest`` for an unknown operation or an unfit payload."""
    cls = REQUESTS.get(op)
    if cls is None:
        raise BadRequest(f"unknown operation {op!r}")
    required = {
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    if missing := sorted(required - set(payload)):
        raise BadRequest(f"the payload of operation {op!r} lacks {', '.join(missing)}")
    try:
        return from_dict(cls, payload)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise BadRequest(f"the payload of operation {op!r} does not fit its request: {exc}") from exc


@dataclass(frozen=True)
class VmSpec:
    """An instance spec as the agent receives it: the image by id (the agent finds or fetches its files)."""

    id: str
    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    image_id: str
    image_format: str
    mac: str
    image_sha256: str | None = None
    has_kernel: bool = False
    has_initrd: bool = False
    kernel_cmdline: str = ""
    user_data: str = ""
    meta_data: dict[str, Any] = field(default_factory=dict)
    nics: tuple[Nic, ...] = ()
    isolated: bool = False
    #: ``pc`` or ``q35`` (compute.hardware)
    machine: str = "pc"
    #: ``bios`` (SeaBIOS) or ``uefi`` (OVMF, with the VM's own NVRAM variables)
    firmware: str = "bios"
    secure_boot: bool = False
    #: a virtual TPM 2.0 (swtpm)
    tpm: bool = False
    volumes: tuple[VolumeAttachment, ...] = ()
    max_vcpus: int = 0
    max_ram_mb: int = 0
    hot_vcpus: int = 0
    dimms_mb: tuple[int, ...] = ()


def vm_spec(payload: dict[str, Any]) -> VmSpec:
    """The ``spec`` of a payload built by ``compute.spec.spec_payload``."""
    return from_dict(VmSpec, payload["spec"])


# ---- lifecycle --------------------------------------------------------------------------------


@operation("prepare")
@dataclass(frozen=True)
class Prepare(Request):
    """Create the instance's disk and seed; ``secrets["vendor_data"]``: the cloud-config that writes
    the tenant's secrets into the guest (sealed while it waits, ``identity/kms_secrets.py``)."""

    spec: VmSpec
    secrets: dict[str, str] = field(default_factory=dict)


@operation("launch")
@dataclass(frozen=True)
class Launch(Request):
    """Start the instance (a no-op when it runs)."""

    spec: VmSpec


@operation("wait_state")
@dataclass(frozen=True)
class WaitState(Request):
    """Wait until the instance is in one of the ``wanted`` power states."""

    wanted: tuple[str, ...]
    timeout_s: float = 120.0


@operation("observe")
@dataclass(frozen=True)
class Observe(Request):
    """The instance's power state."""


@operation("shutdown")
@dataclass(frozen=True)
class Shutdown(Request):
    """ACPI power-off, forced after ``timeout_s``."""

    timeout_s: float = 60.0


@operation("power_off")
@dataclass(frozen=True)
class PowerOff(Request):
    """Stop the instance at once."""


@operation("reboot")
@dataclass(frozen=True)
class Reboot(Request):
    """Reset the running instance."""


@operation("pause")
@dataclass(frozen=True)
class Pause(Request):
    """Pause the running instance."""


@operation("resume")
@dataclass(frozen=True)
class Resume(Request):
    """Resume the paused instance."""


@operation("destroy")
@dataclass(frozen=True)
class Destroy(Request):
    """Remove the instance and every file of it from the host."""


@operation("snapshot")
@dataclass(frozen=True)
class Snapshot(Request):
    """Flatten the stopped instance's disk into the image ``image_id``."""

    image_id: str


@operation("clone_disk")
@dataclass(frozen=True)
class CloneDisk(Request):
    """Write a full copy of instance ``source_id``'s disk (stopped or running) as this one's disk,
    or with ``snapshot`` a linked clone of that VM snapshot of it (``full``: a standalone copy of it)."""

    source_id: str
    snapshot: str | None = None
    full: bool = False


@operation("console_read")
@dataclass(frozen=True)
class ConsoleRead(Request):
    """Read the console log from ``offset`` (or its last ``tail`` bytes)."""

    offset: int = 0
    tail: int | None = None


@operation("console_attach")
@dataclass(frozen=True)
class ConsoleAttach(Request):
    """Join a console to a user's console session (``secrets["session"]``) on a relay: the serial
    port (``kind`` "serial") or the screen's VNC socket ("vnc")."""

    secrets: dict[str, str] = field(default_factory=dict)
    relay_url: str | None = None
    kind: str = "serial"
    #: where servers before sealed secrets put the session
    session: str = ""


# ---- volumes ----------------------------------------------------------------------------------


@operation("volume_attach")
@dataclass(frozen=True)
class VolumeAttach(Request):
    """Hot-plug a volume into the running instance."""

    volume: VolumeAttachment


@operation("volume_detach")
@dataclass(frozen=True)
class VolumeDetach(Request):
    """Hot-unplug a volume from the running instance (the guest must let it go)."""

    volume_id: str
    timeout_s: float = 60.0


@operation("volume_extend")
@dataclass(frozen=True)
class VolumeExtend(Request):
    """Grow an attached volume of the running instance to ``size_bytes``."""

    volume_id: str
    size_bytes: int


@operation("volume_limits")
@dataclass(frozen=True)
class VolumeLimits(Request):
    """Give an attached volume of the running instance the limits of ``volume`` now."""

    volume: VolumeAttachment


@operation("volume_snapshot")
@dataclass(frozen=True)
class VolumeSnapshot(Request):
    """Take (``delete``: drop) the internal snapshot ``name`` of an attached volume of a running instance."""

    volume_id: str
    name: str
    delete: bool = False


# ---- VM snapshots (virt/snapshots.py) ------------------------------------------------------------


@operation("vm_snapshot_create")
@dataclass(frozen=True)
class VmSnapshotCreate(Request):
    """Take snapshot ``tag`` of the instance's disk (with its RAM when ``memory``)."""

    tag: str
    memory: bool = False
    quiesce: bool = True


@operation("vm_snapshot_revert")
@dataclass(frozen=True)
class VmSnapshotRevert(Request):
    """Revert the instance to snapshot ``tag``."""

    tag: str


@operation("vm_snapshot_delete")
@dataclass(frozen=True)
class VmSnapshotDelete(Request):
    """Delete snapshot ``tag`` of the instance's disk."""

    tag: str


@operation("resize_live")
@dataclass(frozen=True)
class ResizeLive(Request):
    """Hot-add vCPUs and memory and grow the root disk of the running instance (compute.live_resize)."""

    target: LiveSize


# ---- migration --------------------------------------------------------------------------------


@operation("migrate_source_disk")
@dataclass(frozen=True)
class MigrateSourceDisk(Request):
    """Source: where the instance's disk lives (and its volumes: those it runs with, and the files
    ``volumes`` of the volume rows, which a stopped VM may not have started with yet)."""

    volumes: tuple[str, ...] = ()


@operation("migrate_storage")
@dataclass(frozen=True)
class MigrateStorage(Request):
    """Destination: the storage mode, given the ``source``'s answer to ``migrate_source_disk``."""

    storage: str
    source: dict[str, Any]


@operation("migrate_receive")
@dataclass(frozen=True)
class MigrateReceive(Request):
    """Destination: wait paused for the incoming instance."""

    spec: VmSpec
    storage: str = "local"
    #: the volumes it does not reach, to copy: volume id -> virtual size in bytes
    copy_volumes: dict[str, int] = field(default_factory=dict)


@operation("migrate_send")
@dataclass(frozen=True)
class MigrateSend(Request):
    """Source: send the running instance to ``target``."""

    target: MigrationTarget
    settings: MigrationSettings = MigrationSettings()


@operation("migrate_finish")
@dataclass(frozen=True)
class MigrateFinish(Request):
    """Destination: run the instance that arrived."""

    storage: str = "local"


@operation("migrate_forget")
@dataclass(frozen=True)
class MigrateForget(Request):
    """Remove the instance that left, keeping its disk on shared storage."""


@operation("migrate_drop_volumes")
@dataclass(frozen=True)
class MigrateDropVolumes(Request):
    """Remove this host's copies of volumes that were copied to another host (or half-copied here)."""

    paths: tuple[str, ...]


@operation("migrate_serve_disk")
@dataclass(frozen=True)
class MigrateServeDisk(Request):
    """Cold migration, source: serve the stopped instance's disk (unless not ``disk``: shared
    storage), then the files of ``volumes``."""

    volumes: tuple[str, ...] = ()
    disk: bool = True


@operation("migrate_fetch_disk")
@dataclass(frozen=True)
class MigrateFetchDisk(Request):
    """Cold migration, destination: fetch the disk the ``source`` serves, then the volumes
    ``volume_ids`` (in the order served); answers id -> the volume's new path."""

    spec: VmSpec
    source: DiskSource
    volume_ids: tuple[str, ...] = ()


# ---- backup and restore -----------------------------------------------------------------------


@operation("backup_disk")
@dataclass(frozen=True)
class BackupDisk(Request):
    """Back the instance's disk up into the chunk store the ``secrets`` open."""

    snapshot_id: str
    secrets: dict[str, Any]
    parent_id: str | None = None
    full: bool = False
    #: the store refuses to delete the snapshot before then (s since the epoch)
    immutable_until: float | None = None
    #: the instance's attached volumes: disks of the same snapshot, at the same point in time
    volumes: tuple[VolumeAttachment, ...] = ()


@operation("restore_disk")
@dataclass(frozen=True)
class RestoreDisk(Request):
    """Write a snapshot's disks as the stopped instance's disk and volumes."""

    snapshot_id: str
    size: int
    secrets: dict[str, Any]
    #: volumes to write, each from the snapshot's disk named at the same place in ``sources``
    volumes: tuple[VolumeAttachment, ...] = ()
    sources: tuple[str, ...] = ()
    #: whether the snapshot holds a root disk ``vda`` to write (a boot-from-volume VM's has not)
    root: bool = True


@operation("instant_restore_disk")
@dataclass(frozen=True)
class InstantRestoreDisk(Request):
    """Make the stopped instance's disk an overlay of the snapshot, served from the store."""

    snapshot_id: str
    size: int
    secrets: dict[str, Any]


@operation("stream_disk")
@dataclass(frozen=True)
class StreamDisk(Request):
    """Copy the rest of an instant restore's snapshot into the disk (at most ``speed_bytes``/s)."""

    snapshot_id: str
    size: int
    secrets: dict[str, Any]
    speed_bytes: int = 0


@operation("stop_restore_source")
@dataclass(frozen=True)
class StopRestoreSource(Request):
    """Stop serving an instant restore's snapshot."""


@operation("wait_console")
@dataclass(frozen=True)
class WaitConsole(Request):
    """Wait until the instance prints ``needle`` on its console."""

    needle: str
    timeout_s: float = 120.0


# ---- probes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeCheck:
    """One synthetic check and the network namespace on this host it runs from."""

    netns: str
    check: Check


@operation("probe_run")
@dataclass(frozen=True)
class ProbeRun(Request):
    """Run synthetic checks, each inside its tenant network's namespace (``monitoring/slo``)."""

    checks: tuple[ProbeCheck, ...]


# ---- network ----------------------------------------------------------------------------------


@operation("network_sync")
@dataclass(frozen=True)
class NetworkSync(Request):
    """Make the host's datapath match ``state``; ``generation`` orders the pushes."""

    state: HostState
    generation: int = 0


# ---- load balancers ---------------------------------------------------------------------------


@operation("lb_apply")
@dataclass(frozen=True)
class LbApply(Request):
    """Run (start or reload) one load balancer's HAProxy, and for ACTIVE_STANDBY this host's
    amphora's keepalived, in the namespace of leg ``leg_id`` with this desired state.
    ``secrets`` (``{"certificates": {tls_container_ref: PEM bundle}}``) waits sealed in the
    database; ``wait_namespace_s``: the network sync creating the namespace may land after this."""

    spec: LoadBalancerSpec
    leg_id: str
    amphora_id: str | None = None
    secrets: dict[str, Any] = field(default_factory=dict)
    wait_namespace_s: float = 30.0


@operation("lb_remove")
@dataclass(frozen=True)
class LbRemove(Request):
    """Stop a load balancer's HAProxy (and keepalived) on this host and forget its files."""

    loadbalancer_id: str
    leg_id: str


@operation("lb_status")
@dataclass(frozen=True)
class LbStatus(Request):
    """Read a load balancer's member health and VRRP state on this host."""

    loadbalancer_id: str


@operation("lb_challenge")
@dataclass(frozen=True)
class LbChallenge(Request):
    """Answer (or, with ``key_authorization`` None, stop answering) an ACME HTTP-01 challenge on a
    load balancer's HTTP listeners, at run time."""

    loadbalancer_id: str
    token: str
    key_authorization: str | None = None
