"""Agent report samples -> labelled series, exactly as the metric contract names them.

A VM's series carry ``vm_id``, ``tenant_id``, ``project_id`` and ``host_id``. The tenancy labels
come from the control plane's database (``apply_report`` reads them with the host's VM rows), never
from the agent: a host's agent is trusted with its own VMs' numbers, not with who owns them, and
every tenant query is scoped by these labels. Host series carry ``host_id`` and ``host`` and no
tenant label, so no tenant query can reach them.

One :class:`~novacron.monitoring.remote_write.Series` object is kept per label set (their labels
encoded once); the cache is dropped whole when it outgrows ``max_series``, which costs one
re-encoding of the live series and nothing else. A host's VM samples become one columnar
:class:`~novacron.monitoring.blocks.Block` per report (``vm_block``), laid out as the host's last
report was unless its VMs, their owners or which values are numbers changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import compress
from typing import Any

from novacron.monitoring.blocks import Block, Layout, stamp
from novacron.monitoring.remote_write import Sample, Series

#: report sample key (agent -> control plane, per VM) -> series name
VM_SERIES: dict[str, str] = {
    "cpu_time_s": "novacron_vm_process_cpu_seconds_total",
    "vcpu_time_s": "novacron_vm_cpu_seconds_total",
    "rss_bytes": "novacron_vm_process_resident_memory_bytes",
    "guest_mem_total_bytes": "novacron_vm_guest_memory_total_bytes",
    "guest_mem_available_bytes": "novacron_vm_guest_memory_available_bytes",
    "guest_mem_free_bytes": "novacron_vm_guest_memory_free_bytes",
    "disk_read_bytes": "novacron_vm_disk_read_bytes_total",
    "disk_write_bytes": "novacron_vm_disk_written_bytes_total",
    "disk_read_ops": "novacron_vm_disk_reads_total",
    "disk_write_ops": "novacron_vm_disk_writes_total",
    "net_rx_bytes": "novacron_vm_network_receive_bytes_total",
    "net_tx_bytes": "novacron_vm_network_transmit_bytes_total",
}

_VM_KEYS = tuple(VM_SERIES)

#: the anomaly detector's score of a VM series (``monitoring/anomaly_feed.py``), labelled like the
#: VM's series plus ``metric``, the name of the series scored
ANOMALY_SCORE = "novacron_anomaly_score"

#: CPU modes of ``novacron_host_cpu_seconds_total``; the host sample's key is ``cpu_<mode>_s``
HOST_CPU_MODES = ("user", "system", "idle", "iowait", "steal")

#: host sample key -> (series name, extra labels)
HOST_SERIES: dict[str, tuple[str, dict[str, str]]] = {
    "cpus": ("novacron_host_cpus", {}),
    **{f"cpu_{mode}_s": ("novacron_host_cpu_seconds_total", {"mode": mode}) for mode in HOST_CPU_MODES},
    "memory_total_bytes": ("novacron_host_memory_total_bytes", {}),
    "memory_available_bytes": ("novacron_host_memory_available_bytes", {}),
    "load1": ("novacron_host_load1", {}),
    "load5": ("novacron_host_load5", {}),
    "load15": ("novacron_host_load15", {}),
    "disk_read_bytes": ("novacron_host_disk_read_bytes_total", {}),
    "disk_write_bytes": ("novacron_host_disk_written_bytes_total", {}),
    "net_rx_bytes": ("novacron_host_network_receive_bytes_total", {}),
    "net_tx_bytes": ("novacron_host_network_transmit_bytes_total", {}),
    "fs_size_bytes": ("novacron_host_filesystem_size_bytes", {}),
    "fs_avail_bytes": ("novacron_host_filesystem_avail_bytes", {}),
    "qemu_processes": ("novacron_host_qemu_processes", {}),
}

#: the agent names load-balancer series with this prefix and these labels (``lbaas/exporter.py``)
LB_PREFIX = "novacron_lb_"
LB_LABELS = frozenset({"listener_id", "pool_id", "member_id", "code", "rule"})

#: (tenant_id, project_id) of a VM, as the control plane's database says
Tenancy = tuple[str, str]
_NUMBERS = frozenset((int, float))


def _millis(sample: Mapping[str, Any]) -> int | None:
    """The sample's ``time`` (unix s, the agent's clock) in ms; None when it has none."""
    t = sample.get("time")
    return int(t * 1000) if type(t) in _NUMBERS and t > 0 else None  # type: ignore[operator]


class SeriesMap:
    """Turns a host's report into samples of the contract's series.

    ``host_name`` answers a host id's name (the ``host`` label; read once per host).
    """

    def __init__(self, host_name: Callable[[str], str], max_series: int = 500_000) -> None:
        self.host_name = host_name
        self.max_series = max_series
        self._vm: dict[tuple[str, str, str, str], list[tuple[str, Series]]] = {}
        self._host: dict[str, list[tuple[str, Series]]] = {}
        self._layouts: dict[str, Layout] = {}
        self._count = 0

    def vm_block(
        self, host_id: str, samples: Mapping[str, Mapping[str, Any]], tenancy: Mapping[str, Tenancy]
    ) -> Block | list[Sample]:
        """The samples of the VMs the database places in a tenancy, as one block (as a list of
        samples when a VM's clock is outside 1971-2109); what ``vm_samples`` gives, in bulk."""
        ids = tuple(samples)
        rows = [samples[vm_id] for vm_id in ids]
        times = [row.get("time") for row in rows]
        flat = [row.get(k) for row in rows for k in _VM_KEYS]
        key = (ids, tuple(map(tenancy.get, ids)), tuple(map(type, times)), tuple(map(type, flat)))
        layout = self._layouts.get(host_id)
        if layout is None or layout.key != key:
            layout = self._layout(host_id, key, times, flat)
        millis = [int(t * 1000) for t in compress(times, layout.vm_mask)]  # type: ignore[operator]
        stamps = [stamp(ms) for ms in millis]
        if None in stamps:
            return self.vm_samples(host_id, samples, tenancy)
        return Block(layout, list(compress(flat, layout.mask)), millis, stamps)  # type: ignore[arg-type]

    def _layout(self, host_id: str, key: tuple[Any, ...], times: list[Any], flat: list[Any]) -> Layout:
        ids, owners = key[0], key[1]
        series: list[Series] = []
        mask: list[bool] = []
        counts: list[int] = []
        vm_mask: list[bool] = []
        width = len(_VM_KEYS)
        for n, (vm_id, owner, t) in enumerate(zip(ids, owners, times, strict=True)):
            kept = owner is not None and type(t) in _NUMBERS and t > 0
            vm_mask.append(kept)
            picked = [kept and type(v) in _NUMBERS for v in flat[n * width : (n + 1) * width]]
            mask += picked
            if kept:
                vm_key = (vm_id, host_id, owner[0], owner[1])
                row = self._vm.get(vm_key) or self._vm_series(vm_key)
                chosen = [one for (_, one), p in zip(row, picked, strict=True) if p]
                series += chosen
                counts.append(len(chosen))
        layout = self._layouts[host_id] = Layout(host_id, key, series, mask, counts, vm_mask)
        return layout

    def vm_samples(
        self, host_id: str, samples: Mapping[str, Mapping[str, Any]], tenancy: Mapping[str, Tenancy]
    ) -> list[Sample]:
        """Samples of the VMs the database places in a tenancy; keys a sample lacks (or holds None
        for, like guest memory before the balloon reports) are left out."""
        out: list[Sample] = []
        for vm_id, sample in samples.items():
            owner = tenancy.get(vm_id)
            ms = _millis(sample)
            if owner is None or ms is None:
                continue
            key = (vm_id, host_id, owner[0], owner[1])
            series = self._vm.get(key)
            if series is None:
                series = self._vm_series(key)
            out += [(one, ms, v) for name, one in series if type(v := sample.get(name)) in _NUMBERS]  # type: ignore[misc]
        return out

    def host_samples(self, host_id: str, sample: Mapping[str, Any]) -> list[Sample]:
        """Samples of the host series (no tenant label)."""
        ms = _millis(sample)
        if ms is None:
            return []
        series = self._host.get(host_id)
        if series is None:
            self._make_room(len(HOST_SERIES))
            labels = {"host_id": host_id, "host": self.host_name(host_id)}
            series = self._host[host_id] = [
                (key, Series(name, {**labels, **extra})) for key, (name, extra) in HOST_SERIES.items()
            ]
        return [(one, ms, float(sample[key])) for key, one in series if type(sample.get(key)) in _NUMBERS]

    def lb_samples(
        self, host_id: str, ms: int, lb_samples: Mapping[str, Sequence[Any]], tenancy: Mapping[str, Tenancy]
    ) -> list[Sample]:
        """Samples of the load balancers the database places in a tenancy (``lb_samples``: load
        balancer id -> the agent's ``(series, labels, value)`` from ``lbaas/exporter.py``); the
        agent's labels are the platform's ids of listeners, pools and members, the owner's are the
        database's, and a load balancer the database does not know is left out."""
        out: list[Sample] = []
        for lb_id, samples in lb_samples.items():
            owner = tenancy.get(lb_id)
            if owner is None:
                continue
            owned = {"tenant_id": owner[0], "project_id": owner[1], "host_id": host_id}
            for series, labels, value in samples:
                if not (isinstance(series, str) and series.startswith(LB_PREFIX) and type(value) in _NUMBERS):
                    continue
                kept = {k: str(v) for k, v in labels.items() if k in LB_LABELS}
                out.append((Series(series, {**kept, **owned, "loadbalancer_id": lb_id}), ms, float(value)))
        return out

    def _vm_series(self, key: tuple[str, str, str, str]) -> list[tuple[str, Series]]:
        self._make_room(len(VM_SERIES))
        vm_id, host_id, tenant_id, project_id = key
        labels = {"vm_id": vm_id, "host_id": host_id, "tenant_id": tenant_id, "project_id": project_id}
        series = self._vm[key] = [(k, Series(name, labels)) for k, name in VM_SERIES.items()]
        return series

    def _make_room(self, n: int) -> None:
        if self._count + n > self.max_series:
            self._vm.clear()
            self._host.clear()
            self._layouts.clear()
            self._count = 0
        self._count += n
