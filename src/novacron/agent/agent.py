"""The node agent: registers its host, heartbeats, and keeps each VM's record true to QEMU.

Every second it observes each VM assigned to its host through the driver (QMP
``query-status`` and process liveness), writes the observed state when it
changed, destroys instances nobody owns any more, and samples resource counters
into an in-memory hour of history per VM.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

from sqlalchemy import select

from novacron import events
from novacron.db.base import new_id, utcnow
from novacron.db.models import VM, Host, Task
from novacron.virt.base import ComputeDriver, MetricsSample, PowerState

if TYPE_CHECKING:
    from novacron.context import Context

log = logging.getLogger(__name__)
HISTORY = 3600
#: operations during which the task, not the observer, owns the VM's state
TASK_OWNED = ("creating", "deleting")


def observed_state(power: PowerState) -> str:
    return {
        PowerState.RUNNING: "running",
        PowerState.PAUSED: "paused",
        PowerState.SHUTOFF: "stopped",
        PowerState.CRASHED: "crashed",
        PowerState.ABSENT: "error",
    }[power]


class NodeAgent:
    def __init__(self, ctx: Context, driver: ComputeDriver, host_name: str) -> None:
        self.ctx = ctx
        self.driver = driver
        self.host_name = host_name
        self.host_id: str | None = None
        self.metrics: dict[str, deque[MetricsSample]] = {}
        self._stopping = False

    def register(self) -> str:
        facts = self.driver.host_facts()
        with self.ctx.db.session() as s:
            host = s.scalar(select(Host).where(Host.name == self.host_name))
            if host is None:
                host = Host(id=new_id("host"), name=self.host_name, driver=self.driver.name)
                s.add(host)
                events.publish(s, "host.registered", "host", host.id, tenant_id=None, name=self.host_name)
            host.driver = self.driver.name
            host.accelerator = facts.accelerator
            host.cpus = facts.cpus
            host.cpu_model = facts.cpu_model
            host.ram_mb = facts.ram_mb
            host.disk_gb = facts.disk_gb
            host.last_heartbeat = utcnow()
            if host.state == "down":
                host.state = "up"
            s.flush()
            self.host_id = host.id
        return self.host_id

    async def run_forever(self) -> None:
        if self.host_id is None:
            self.register()
        while not self._stopping:
            started = asyncio.get_running_loop().time()
            try:
                await self.reconcile_once()
            except Exception:
                log.exception("agent reconcile failed")
            elapsed = asyncio.get_running_loop().time() - started
            await asyncio.sleep(max(0.05, self.ctx.settings.metrics_interval_s - elapsed))

    def stop(self) -> None:
        self._stopping = True

    async def reconcile_once(self) -> None:
        with self.ctx.db.session() as s:
            host = s.get(Host, self.host_id)
            if host is not None:
                host.last_heartbeat = utcnow()
            vms = list(s.scalars(select(VM).where(VM.host_id == self.host_id)))
            owned = {vm.id for vm in vms}
            # a VM being created may have files before its row names this host
            owned |= set(
                s.scalars(
                    select(Task.resource_id).where(
                        Task.resource_type == "vm", Task.state.in_(("pending", "running"))
                    )
                )
            )
            snapshot = [(vm.id, vm.state, vm.task_state) for vm in vms]
        for instance_id in self.driver.list_instances():
            if instance_id not in owned:
                log.warning("destroying orphan instance %s (no VM owns it)", instance_id)
                await self.driver.destroy(instance_id)
                self.metrics.pop(instance_id, None)
        for vm_id, state, task_state in snapshot:
            if task_state in TASK_OWNED:
                continue
            observation = await self.driver.observe(vm_id)
            new_state = observed_state(observation.power_state)
            if new_state != state:
                self.record_state(vm_id, new_state)
            if observation.power_state in (PowerState.RUNNING, PowerState.PAUSED):
                sample = await self.driver.sample(vm_id)
                if sample is not None:
                    self.metrics.setdefault(vm_id, deque(maxlen=HISTORY)).append(sample)

    def record_state(self, vm_id: str, new_state: str, error: str | None = None) -> None:
        with self.ctx.db.session() as s:
            vm = s.get(VM, vm_id)
            if vm is None or vm.state == new_state:
                return
            old = vm.state
            vm.state = new_state
            vm.state_changed_at = utcnow()
            if new_state == "error":
                vm.error = error or "The instance's disk and process are gone from its host."
            events.publish(
                s,
                "vm.state_changed",
                "vm",
                vm.id,
                tenant_id=vm.tenant_id,
                project_id=vm.project_id,
                old=old,
                new=new_state,
            )
