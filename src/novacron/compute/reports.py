"""What agents tell the control plane every second: host facts, VM power states, metrics.

The control plane keeps each VM's ``state`` equal to what QEMU reports (not what the API last
wrote) and answers with the instances the host should have, so the agent can remove the rest.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from novacron import events
from novacron.compute import placement
from novacron.db.base import Database, new_id, utcnow
from novacron.db.models import VM, Host, HostOperation, Task
from novacron.virt.base import HostFacts
from novacron.virt.nics import VNIC_TRAITS

HISTORY = 3600
#: operations during which the task, not the observer, owns the VM's state (a revert to a disk-only
#: VM snapshot restarts the VM: its task records the state it ends in)
TASK_OWNED = ("creating", "deleting", "migrating", "ha_restarting", "reverting_snapshot")
#: host trait naming the shared storage its VM disks live on (hosts with the same one share disks)
SHARED_STORAGE_TRAIT = "shared-storage:"
#: the agent reports power states; the VM's state is named the same, except for a missing instance
STATE_OF = {
    "running": "running",
    "paused": "paused",
    "stopped": "stopped",
    "crashed": "crashed",
    "absent": "error",
}


@dataclass(frozen=True)
class ReportAnswer:
    #: instances the host should keep (it removes the others)
    keep: set[str]
    #: the host's self-fencing lease, renewed by this answer; 0 when not armed (no HA VM there)
    lease_s: float = 0.0
    #: (tenant_id, project_id) of each kept VM that sent samples, from the database (the control
    #: plane's side only: it labels their series; an agent is never asked who owns a VM)
    tenancy: dict[str, tuple[str, str]] = field(default_factory=dict)


class LiveSamples:
    """The live readout: each VM's per-second samples of the last hour in this process's memory,
    as its agent reported them (the raw-samples endpoint, rebalancing's CPU rates). History lives
    in the metrics store (``monitoring/``)."""

    def __init__(self) -> None:
        self._series: dict[str, deque[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def add(self, vm_id: str, sample: dict[str, Any]) -> None:
        with self._lock:
            self._series.setdefault(vm_id, deque(maxlen=HISTORY)).append(sample)

    def get(self, vm_id: str, since: float | None = None) -> list[dict[str, Any]]:
        with self._lock:
            samples = list(self._series.get(vm_id, ()))
        return [s for s in samples if since is None or s["time"] > since]

    def cpu_cores(self, vm_id: str, window_s: float) -> float | None:
        """Mean CPU use in cores over the last ``window_s`` seconds of samples (the agent's clock),
        or None with fewer than two samples. Walks back from the newest, so it costs the window only."""
        with self._lock:
            series = self._series.get(vm_id)
            if series is None or len(series) < 2:
                return None
            last = first = series[-1]
            for sample in reversed(series):
                first = sample
                if last["time"] - sample["time"] >= window_s:
                    break
        span = float(last["time"]) - float(first["time"])
        if span <= 0:
            return None
        return max(0.0, (float(last["cpu_time_s"]) - float(first["cpu_time_s"])) / span)

    def forget(self, vm_id: str) -> None:
        with self._lock:
            self._series.pop(vm_id, None)


def register_host(db: Database, name: str, driver: str, facts: HostFacts) -> str:
    with db.session() as s:
        host = s.scalar(select(Host).where(Host.name == name))
        if host is None:
            host = Host(id=new_id("host"), name=name, driver=driver)
            s.add(host)
            events.publish(s, "host.registered", "host", host.id, tenant_id=None, name=name)
        host.driver = driver
        host.accelerator = facts.accelerator
        host.cpus = facts.cpus
        host.cpu_model = facts.cpu_model
        host.ram_mb = facts.ram_mb
        host.disk_gb = facts.disk_gb
        host.underlay_ip = facts.underlay_ip or None
        host.last_heartbeat = utcnow()
        # traits of the host's own hardware and storage are what it reports, not what was set by hand
        traits = [t for t in host.traits or [] if not reported_trait(t)]
        traits += facts.nic_traits
        if facts.shared_storage:
            traits.append(SHARED_STORAGE_TRAIT + facts.shared_storage)
        if sorted(traits) != sorted(host.traits or []):
            host.traits = sorted(traits)
            placement.invalidate(s)
        if host.state == "down":
            host_back(s, host)
        s.flush()
        return host.id


def reported_trait(trait: str) -> bool:
    return trait.startswith(SHARED_STORAGE_TRAIT) or trait in VNIC_TRAITS.values()


def host_back(s: Any, host: Host) -> None:
    """A down (maybe fenced) host reports again: it takes VMs again; its VMs show what it observes."""
    host.state = "up"
    host.fenced_at = None
    events.publish(s, "host.up", "host", host.id, tenant_id=None, name=host.name)


def record_state(s: Any, vm: VM, new_state: str, error: str | None = None) -> None:
    if vm.state == new_state:
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


def announce_idle(s: Any, vm: VM, operation: str, error: str | None = None) -> None:
    """Tell clients the VM's operation is over when no state change says so (``task_state`` is not
    an event by itself: a page would keep the VM busy)."""
    events.publish(
        s, "vm.operation_ended", "vm", vm.id, tenant_id=vm.tenant_id, project_id=vm.project_id,
        operation=operation, error=error,
    )  # fmt: skip


def apply_report(
    db: Database,
    live: LiveSamples,
    host_id: str,
    power_states: dict[str, str],
    samples: dict[str, dict[str, Any]],
    age_s: float = 0.0,
    lease_s: float = 0.0,
) -> ReportAnswer:
    """Record a host's observations; answer with the ids of the instances it should keep, and
    the lease it may run VMs under (``lease_s`` when the host holds an HA VM, else 0).

    Runs every second per host: it reads three columns of the host's VMs and loads rows only
    for the VMs whose state changed, so a host of a thousand VMs costs milliseconds.
    """
    # what the agent saw began ``age_s`` ago (its own clock's duration, so host clocks may differ):
    # a state recorded since then (a task finishing) is newer than the observation and stands
    observed_at = utcnow() - timedelta(seconds=age_s)
    with db.session() as s:
        s.execute(update(Host).where(Host.id == host_id).values(last_heartbeat=utcnow()))
        # the one extra read a heartbeat costs: is this a host the HA monitor had declared down?
        if s.scalar(select(Host.state).where(Host.id == host_id)) == "down":
            host = s.get(Host, host_id)
            assert host is not None
            host_back(s, host)
        rows = s.execute(
            select(
                VM.id, VM.state, VM.task_state, VM.state_changed_at, VM.ha, VM.tenant_id, VM.project_id
            ).where(VM.host_id == host_id)
        ).all()
        observed = {row.id: STATE_OF.get(power_states.get(row.id, "absent"), "error") for row in rows}
        changed = [
            row.id
            for row in rows
            if row.task_state not in TASK_OWNED
            and observed[row.id] != row.state
            and (row.state_changed_at is None or row.state_changed_at < observed_at)
        ]
        if changed:
            for vm in s.scalars(select(VM).where(VM.id.in_(changed))):
                if vm.task_state not in TASK_OWNED:
                    record_state(s, vm, observed[vm.id])
        keep = set(observed)
        # a VM being created or moved here may have files before its row names this host; only
        # one this host was given an operation for (another host's agent learns nothing of it)
        keep |= set(
            s.scalars(
                select(Task.resource_id).where(
                    Task.resource_type == "vm",
                    Task.state.in_(("pending", "running")),
                    Task.resource_id.in_(
                        select(HostOperation.instance_id).where(HostOperation.host_id == host_id)
                    ),
                )
            )
        )
        tenancy = {row.id: (row.tenant_id, row.project_id) for row in rows if row.id in samples}
        arriving = [vm_id for vm_id in samples if vm_id in keep and vm_id not in tenancy]
        if arriving:  # created or moved here, its row not yet naming this host
            owners = s.execute(select(VM.id, VM.tenant_id, VM.project_id).where(VM.id.in_(arriving)))
            tenancy.update({row.id: (row.tenant_id, row.project_id) for row in owners})
    for vm_id, sample in samples.items():
        if vm_id in keep:
            live.add(vm_id, sample)
    return ReportAnswer(keep, lease_s if any(row.ha for row in rows) else 0.0, tenancy)
