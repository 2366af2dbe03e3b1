"""Report samples -> contract series; the writer's bounded queue when the store is down.

The store here is a real loopback port nobody listens on (the engines themselves are exercised in
tests/integration/test_metrics_store.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from novacron.monitoring import remote_write
from novacron.monitoring.process import free_loopback_port
from novacron.monitoring.series import HOST_SERIES, VM_SERIES, SeriesMap
from novacron.monitoring.store import MetricsStore
from novacron.monitoring.writer import SeriesWriter


def _labels(sample: remote_write.Sample) -> dict[str, str]:
    return dict(sample[0].labels)


def test_vm_samples_follow_the_contract_and_take_tenancy_from_the_control_plane() -> None:
    series = SeriesMap(lambda host_id: "node-1")
    report: dict[str, dict[str, Any]] = {
        "vm-1": {
            "time": 1700000000.25,
            "cpu_time_s": 12.5,
            "rss_bytes": 300 << 20,
            "guest_mem_total_bytes": None,  # the balloon has not reported yet
            "net_rx_bytes": 10,
            "tenant_id": "someone-else",  # an agent's word on tenancy is not taken
            "disk_read_ops": True,  # not a number
        },
        "vm-2": {"time": 1700000000.25, "cpu_time_s": 1.0},  # no row in the database: not written
    }
    out = series.vm_samples("host-1", report, {"vm-1": ("tenant-a", "project-a")})
    assert sorted((s[0].name, s[1], s[2]) for s in out) == [
        ("novacron_vm_network_receive_bytes_total", 1700000000250, 10),
        ("novacron_vm_process_cpu_seconds_total", 1700000000250, 12.5),
        ("novacron_vm_process_resident_memory_bytes", 1700000000250, 300 << 20),
    ]
    assert {tuple(sorted(_labels(s).items())) for s in out} == {
        (
            ("__name__", s[0].name),
            ("host_id", "host-1"),
            ("project_id", "project-a"),
            ("tenant_id", "tenant-a"),
            ("vm_id", "vm-1"),
        )  # fmt: skip
        for s in out
    }
    again = series.vm_samples("host-1", report, {"vm-1": ("tenant-a", "project-a")})
    assert [s[0] for s in again] == [s[0] for s in out]  # one Series object per label set
    assert len(set(VM_SERIES.values())) == len(VM_SERIES)


def test_host_samples_carry_no_tenant_label() -> None:
    series = SeriesMap(lambda host_id: "node-1")
    sample = {"time": 1700000000.0, **{key: 1.0 for key in HOST_SERIES}}
    out = series.host_samples("host-1", sample)
    assert len(out) == len(HOST_SERIES)
    for s in out:
        labels = _labels(s)
        assert labels["host_id"] == "host-1" and labels["host"] == "node-1"
        assert "tenant_id" not in labels
    modes = sorted(_labels(s)["mode"] for s in out if s[0].name == "novacron_host_cpu_seconds_total")
    assert modes == ["idle", "iowait", "steal", "system", "user"]


def test_the_series_cache_is_bounded() -> None:
    series = SeriesMap(lambda host_id: "", max_series=3 * len(VM_SERIES))
    for n in range(10):
        series.vm_samples("h", {f"vm-{n}": {"time": 1.0, "cpu_time_s": 1.0}}, {f"vm-{n}": ("t", "p")})
    assert len(series._vm) <= 3


def test_a_down_store_costs_the_oldest_samples_never_a_wait() -> None:
    store = MetricsStore("external", "http://127.0.0.1:1", f"http://127.0.0.1:{free_loopback_port()}/write")
    writer = SeriesWriter(store, max_pending=10)
    writer.start()
    try:
        one = remote_write.Series("x", {})
        started = time.monotonic()
        for n in range(25):
            writer.submit([(one, n, float(n))])
        assert time.monotonic() - started < 0.5
        deadline = time.monotonic() + 10
        while writer.failures < 2:  # it keeps trying
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert writer.pending <= 10
        assert writer.dropped == 25 - writer.pending
        assert writer.written == 0
    finally:
        writer.stop(flush_s=0.1)


class _EncodingStore(MetricsStore):
    """A store that encodes each batch as remote write would, and keeps what it took."""

    def __init__(self) -> None:
        super().__init__("external", "http://127.0.0.1:1", "http://127.0.0.1:1/write")
        self.taken: list[remote_write.Sample] = []

    def write(self, samples: Iterable[remote_write.Sample]) -> int:
        batch = list(samples)
        remote_write.encode(batch)
        self.taken += batch
        return len(batch)


def test_a_batch_that_cannot_be_encoded_is_dropped_and_writing_goes_on() -> None:
    store = _EncodingStore()
    writer = SeriesWriter(store)
    writer.start()
    try:
        one = remote_write.Series("x", {})
        writer.submit([(one, 1, 10**400)])  # no double holds it: encoding raises OverflowError
        assert writer.flush(5)
        writer.submit([(one, 2, 1.0)])
        assert writer.flush(5)
        assert store.taken == [(one, 2, 1.0)]
        assert (writer.rejected, writer.written) == (1, 1)
    finally:
        writer.stop(flush_s=0.1)
