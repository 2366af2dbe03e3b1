"""Report samples -> contract series; the writer's bounded queue when the store is down.

The store here is a real loopback port nobody listens on (the engines themselves are exercised in
tests/integration/test_metrics_store.py).
"""

from __future__ import annotations

import time
from typing import Any

from novacron.monitoring import remote_write
from novacron.monitoring.blocks import Block, Chunk, encode_chunks
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


def test_load_balancer_samples_take_their_owner_from_the_control_plane_not_the_agent() -> None:
    series = SeriesMap(lambda host_id: "node-1")
    agent_says: dict[str, list[Any]] = {
        "lb-1": [
            ("novacron_lb_listener_requests_total", {"listener_id": "l1", "tenant_id": "t-other"}, 7),
            ("novacron_lb_member_up", {"pool_id": "p1", "member_id": "m1", "host": "x"}, 1.0),
            ("node_cpu_seconds_total", {"pool_id": "p1"}, 3.0),  # not a load-balancer series
            ("novacron_lb_member_up", {"pool_id": "p1", "member_id": "m2"}, "up"),  # not a number
        ],
        "lb-unknown": [("novacron_lb_listener_requests_total", {"listener_id": "l9"}, 1)],
    }
    samples = series.lb_samples("h1", 1_000, agent_says, {"lb-1": ("t1", "p-1")})
    got = {(one.name, tuple(sorted(dict(one.labels).items()))): value for one, _, value in samples}
    owner = (("host_id", "h1"), ("loadbalancer_id", "lb-1"), ("project_id", "p-1"), ("tenant_id", "t1"))
    assert got == {
        (
            "novacron_lb_listener_requests_total",
            tuple(
                sorted((("__name__", "novacron_lb_listener_requests_total"), ("listener_id", "l1"), *owner))
            ),
        ): 7.0,
        (
            "novacron_lb_member_up",
            tuple(
                sorted(
                    (("__name__", "novacron_lb_member_up"), ("member_id", "m1"), ("pool_id", "p1"), *owner)
                )
            ),
        ): 1.0,
    }


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


class _RecordingStore(MetricsStore):
    """A store that keeps the requests it is sent."""

    def __init__(self) -> None:
        super().__init__("external", "http://127.0.0.1:1", "http://127.0.0.1:1/write")
        self.sent: list[bytes] = []

    def send(self, body: bytes) -> None:
        self.sent.append(body)


def test_a_batch_that_cannot_be_encoded_is_dropped_and_writing_goes_on() -> None:
    store = _RecordingStore()
    writer = SeriesWriter(store)
    writer.start()
    try:
        one = remote_write.Series("x", {})
        writer.submit([(one, 1, 10**400)])  # no double holds it: encoding raises OverflowError
        assert writer.flush(5)
        writer.submit([(one, 2, 1.0)])
        assert writer.flush(5)
        assert store.sent == [MetricsStore.prepare([[(one, 2, 1.0)]])]
        assert (writer.rejected, writer.written) == (1, 1)
    finally:
        writer.stop(flush_s=0.1)


def _report(at: float, vms: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {vm: {"time": at, **values} for vm, values in vms.items()}


def test_report_blocks_encode_as_the_same_samples_would_in_order() -> None:
    """A host's reports as columnar blocks give the engine the very bytes that the same samples
    one by one would, across layout changes (a VM's balloon starts reporting, a VM is added)."""
    series = SeriesMap(lambda host_id: "node-1")
    tenancy = {"vm-1": ("t", "p"), "vm-2": ("t", "p"), "vm-3": ("u", "q")}
    first: dict[str, dict[str, Any]] = {
        "vm-1": {"cpu_time_s": 1.0, "guest_mem_total_bytes": None},
        "vm-2": {"rss_bytes": 7},
    }
    second: dict[str, dict[str, Any]] = {
        "vm-1": {"cpu_time_s": 2.0, "guest_mem_total_bytes": 128 << 20},
        "vm-2": {"rss_bytes": 8},
    }
    third = {**second, "vm-3": {"net_rx_bytes": 5}}
    host = series.host_samples("host-1", {"time": 1700000000.0, "load1": 0.5})
    reports = [_report(1700000000.0 + n, r) for n, r in enumerate((first, first, second, second, third))]
    blocks = [series.vm_block("host-1", r, tenancy) for r in reports]
    assert all(isinstance(c, Block) for c in blocks)
    layouts = [c.layout for c in blocks if isinstance(c, Block)]
    assert layouts[0] is layouts[1] and layouts[1] is not layouts[2]
    chunks: list[Chunk] = list(blocks)
    chunks.insert(2, host)
    expected = [s for c in chunks for s in (c.samples() if isinstance(c, Block) else c)]
    assert len(expected) == 2 + 2 + 1 + 3 + 3 + 4
    grouped: dict[remote_write.Series, list[remote_write.Sample]] = {}
    for s in expected:
        grouped.setdefault(s[0], []).append(s)
    # every series' samples in time order, whichever run of blocks they were encoded in
    assert all([s[1] for s in group] == sorted(s[1] for s in group) for group in grouped.values())
    assert encode_chunks(chunks[:2]) == remote_write.encode(expected[:4])
    assert encode_chunks(chunks[3:5]) == remote_write.encode(expected[5:11])
    assert encode_chunks(chunks) == b"".join(
        [remote_write.encode(host), remote_write.encode(expected[:4]), remote_write.encode(expected[5:11])]
        + [remote_write.encode(expected[11:])]
    )
    samples = series.vm_samples("host-1", reports[4], tenancy)
    assert sorted((s[0].labels, s[1], s[2]) for s in samples) == sorted(
        (s[0].labels, s[1], s[2])
        for s in chunks[-1].samples()  # type: ignore[union-attr]
    )


def test_a_clock_outside_the_encodable_years_falls_back_to_plain_samples() -> None:
    series = SeriesMap(lambda host_id: "node-1")
    out = series.vm_block("host-1", _report(5.0, {"vm-1": {"cpu_time_s": 1.0}}), {"vm-1": ("t", "p")})
    assert not isinstance(out, Block)
    assert [(s[1], s[2]) for s in out] == [(5000, 1.0)]
    assert encode_chunks([out]) == remote_write.encode(out)
