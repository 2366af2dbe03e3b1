"""An in-memory compute driver for simulating hosts and clusters larger than this machine.

Same state machine and idempotency as the QEMU driver, plausible growing counters, and a
configurable host size. Never a stand-in for QEMU in a feature test: it exists for
scheduler and control-plane scale (many hosts, 1,000-VM benchmarks). It does not migrate, back
up or restore: those steps refuse with ``NotSupported`` (``CAN_MIGRATE``/``CAN_BACKUP`` are False).
VM snapshots are SIMULATED: a snapshot records the instance's simulated disk counter and a revert
puts it back, with no disk anywhere, so control-plane scale runs can take, revert and delete them.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from novacron.virt.base import (
    ComputeDriver,
    DriverError,
    HostFacts,
    ImageInfo,
    InstanceSpec,
    InvalidImage,
    MetricsSample,
    Observation,
    PowerState,
)


@dataclass
class _SimInstance:
    spec: InstanceSpec
    state: PowerState = PowerState.SHUTOFF
    pid: int | None = None
    started_at: float = 0.0
    #: accumulated running seconds before the current run
    run_s: float = 0.0
    console: list[str] = field(default_factory=list)
    disk_written: int = 0
    #: simulated snapshots: tag -> (disk_written at the snapshot, RAM included)
    snapshots: dict[str, tuple[int, bool]] = field(default_factory=dict)


class SimulatedDriver(ComputeDriver):
    """Simulated instances in memory: the lifecycle only."""

    name = "simulated"
    #: simulated: no disk is snapshotted (see the module's docstring)
    CAN_SNAPSHOT: ClassVar[bool] = True

    def __init__(
        self,
        cpus: int = 64,
        ram_mb: int = 256 * 1024,
        disk_gb: int = 4096,
        cpu_model: str = "Simulated CPU",
        state_dir: Path | None = None,
        latency_s: float = 0.0,
        host_id: str = "sim",
    ) -> None:
        self.cpus = cpus
        self.ram_mb = ram_mb
        self.disk_gb = disk_gb
        self.cpu_model = cpu_model
        self.state_dir = Path(state_dir) if state_dir else Path(f"/tmp/novacron-sim-{host_id}")
        self.latency_s = latency_s
        self._instances: dict[str, _SimInstance] = {}
        self._next_pid = 10_000

    async def _delay(self) -> None:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)

    def _get(self, instance_id: str) -> _SimInstance:
        inst = self._instances.get(instance_id)
        if inst is None:
            raise DriverError(f"instance {instance_id} does not exist on this simulated host")
        return inst

    def host_facts(self) -> HostFacts:
        return HostFacts(
            cpus=self.cpus,
            cpu_model=self.cpu_model,
            cpu_flags=frozenset({"sse2", "avx2", "vmx"}),
            ram_mb=self.ram_mb,
            disk_gb=self.disk_gb,
            accelerator="none",  # hosts.accelerator is VARCHAR(8): PostgreSQL refuses longer
        )

    def inspect_image(self, path: Path) -> ImageInfo:
        path = Path(path)
        if path.is_file():
            head = path.read_bytes()[:4]
            size = path.stat().st_size
            if head == b"QFI\xfb":
                return ImageInfo("qcow2", size, size)
            if size and size % 512 == 0:
                return ImageInfo("raw", size, size)
            raise InvalidImage(f"image {path.name} is neither raw nor qcow2")
        # images that exist only in the simulation: trust the name
        suffix = path.suffix.lstrip(".") or "raw"
        if suffix not in ("raw", "qcow2", "img"):
            raise InvalidImage(f"image {path.name} is {suffix!r}; only raw or qcow2 images are accepted")
        return ImageInfo("qcow2" if suffix == "qcow2" else "raw", 1 << 30, 1 << 20)

    async def prepare(self, spec: InstanceSpec) -> None:
        await self._delay()
        inst = self._instances.get(spec.id)
        if inst is None:
            self._instances[spec.id] = _SimInstance(spec=spec)
        else:
            inst.spec = spec

    async def launch(self, spec: InstanceSpec) -> None:
        await self._delay()
        inst = self._instances.get(spec.id)
        if inst is None:
            await self.prepare(spec)
            inst = self._instances[spec.id]
        if inst.state in (PowerState.RUNNING, PowerState.PAUSED):
            return
        self._next_pid += 1
        inst.pid = self._next_pid
        inst.state = PowerState.RUNNING
        inst.started_at = time.monotonic()
        inst.console.append(f"NOVACRON-GUEST-UP hostname={spec.name}")
        inst.console.extend(f"user-data: {line}" for line in spec.user_data.splitlines())

    async def observe(self, instance_id: str) -> Observation:
        inst = self._instances.get(instance_id)
        if inst is None:
            return Observation(PowerState.ABSENT)
        if inst.state in (PowerState.RUNNING, PowerState.PAUSED):
            return Observation(inst.state, pid=inst.pid, status=str(inst.state.value))
        return Observation(inst.state)

    def list_instances(self) -> list[str]:
        return sorted(self._instances)

    def pid(self, instance_id: str) -> int | None:
        inst = self._instances.get(instance_id)
        return inst.pid if inst is not None else None

    def _stop(self, inst: _SimInstance, state: PowerState = PowerState.SHUTOFF) -> None:
        if inst.state == PowerState.RUNNING:
            inst.run_s += time.monotonic() - inst.started_at
        inst.state = state
        inst.pid = None

    async def shutdown(self, instance_id: str, timeout_s: float) -> bool:
        await self._delay()
        inst = self._instances.get(instance_id)
        if inst is None or inst.pid is None:
            return True
        clean = inst.state == PowerState.RUNNING  # a paused guest cannot react to ACPI
        self._stop(inst)
        return clean

    async def power_off(self, instance_id: str) -> None:
        await self._delay()
        inst = self._instances.get(instance_id)
        if inst is not None and inst.pid is not None:
            self._stop(inst)

    async def reboot(self, instance_id: str) -> None:
        inst = self._get(instance_id)
        if inst.pid is None:
            raise DriverError(f"instance {instance_id} is not running")
        inst.console.append(f"NOVACRON-GUEST-UP hostname={inst.spec.name}")

    async def pause(self, instance_id: str) -> None:
        inst = self._get(instance_id)
        if inst.pid is None:
            raise DriverError(f"instance {instance_id} is not running")
        if inst.state == PowerState.RUNNING:
            inst.run_s += time.monotonic() - inst.started_at
            inst.state = PowerState.PAUSED

    async def resume(self, instance_id: str) -> None:
        inst = self._get(instance_id)
        if inst.pid is None:
            raise DriverError(f"instance {instance_id} is not running")
        if inst.state == PowerState.PAUSED:
            inst.started_at = time.monotonic()
            inst.state = PowerState.RUNNING

    async def destroy(self, instance_id: str) -> None:
        await self._delay()
        self._instances.pop(instance_id, None)

    async def snapshot_disk(self, instance_id: str, dest: Path) -> ImageInfo:
        inst = self._get(instance_id)
        if inst.pid is not None:
            raise DriverError(f"instance {instance_id} is running; stop it before snapshotting its disk")
        size = inst.spec.disk_gb << 30
        return ImageInfo("qcow2", size, min(size, (1 << 20) + inst.disk_written))

    async def create_snapshot(
        self, instance_id: str, tag: str, memory: bool, quiesce: bool, report: Any = None
    ) -> dict[str, Any]:
        """SIMULATED: records the instance's disk counter under ``tag``."""
        await self._delay()
        inst = self._get(instance_id)
        memory = memory and inst.state == PowerState.RUNNING
        inst.snapshots.setdefault(tag, (inst.disk_written, memory))
        consistency = "memory" if memory else "crash" if inst.state == PowerState.RUNNING else "application"
        return {
            "consistency": consistency,
            "vm_state_bytes": inst.spec.ram_mb << 20 if memory else 0,
            "simulated": True,
        }

    async def revert_snapshot(self, instance_id: str, tag: str, report: Any = None) -> dict[str, Any]:
        """SIMULATED: puts the recorded disk counter back."""
        await self._delay()
        inst = self._get(instance_id)
        if tag not in inst.snapshots:
            raise DriverError(f"instance {instance_id} has no snapshot {tag} on this simulated host")
        inst.disk_written, memory = inst.snapshots[tag]
        running = inst.state == PowerState.RUNNING
        return {"restarted": running and not memory, "memory": running and memory, "bitmaps_dropped": []}

    async def delete_snapshot(self, instance_id: str, tag: str) -> None:
        """SIMULATED: forgets ``tag``."""
        await self._delay()
        self._get(instance_id).snapshots.pop(tag, None)

    def _run_seconds(self, inst: _SimInstance) -> float:
        extra = time.monotonic() - inst.started_at if inst.state == PowerState.RUNNING else 0.0
        return inst.run_s + extra

    async def sample(self, instance_id: str) -> MetricsSample | None:
        inst = self._instances.get(instance_id)
        if inst is None or inst.pid is None:
            return None
        t = self._run_seconds(inst)
        # a per-instance load level between 5 % and 65 % of its vCPUs, stable across calls
        seed = int(hashlib.sha256(instance_id.encode()).hexdigest()[:8], 16)
        load = 0.05 + (seed % 60) / 100
        inst.disk_written = int(t * 40_000 * load)
        vcpu_time_s = t * inst.spec.vcpus * load
        ram = inst.spec.ram_mb * (1 << 20)
        # the guest's kernel keeps ~5 % of its RAM; it uses more the busier it is; a third of what
        # is available is page cache (available but not free)
        guest_total = int(ram * 0.95)
        guest_available = int(guest_total * (0.8 - load))
        return MetricsSample(
            time=time.time(),
            # the emulator's own threads (I/O, main loop) add a tenth to the guest's CPU
            cpu_time_s=vcpu_time_s * 1.1,
            rss_bytes=int(ram * min(1.0, 0.3 + load)),
            disk_read_bytes=int(t * 100_000 * load),
            disk_write_bytes=inst.disk_written,
            disk_read_ops=int(t * 25 * load),
            disk_write_ops=int(t * 10 * load),
            net_rx_bytes=int(t * 20_000 * load),
            net_tx_bytes=int(t * 10_000 * load),
            vcpu_time_s=vcpu_time_s,
            guest_mem_total_bytes=guest_total,
            guest_mem_available_bytes=guest_available,
            guest_mem_free_bytes=guest_available * 2 // 3,
        )

    def console_socket(self, instance_id: str) -> Path:
        return self.state_dir / f"{instance_id}.ser"

    def vnc_socket(self, instance_id: str) -> Path:
        """Never listened on: a simulated VM has no screen, so its graphical console is unavailable."""
        return self.state_dir / f"{instance_id}.vnc"

    def console_log(self, instance_id: str) -> Path:
        """Written on demand so that log readers work the same as with QEMU."""
        inst = self._get(instance_id)
        path = self.state_dir / f"{instance_id}.console.log"
        os.makedirs(self.state_dir, exist_ok=True)
        path.write_text("".join(line + "\n" for line in inst.console))
        return path
