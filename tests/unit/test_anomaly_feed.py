"""The anomaly feed's rates (counter resets, gaps, moves, out-of-order samples) and its scoring:
score series labelled with the VM's tenancy, one event per VM per interval, a deleted VM forgotten."""

from __future__ import annotations

import random
from typing import Any

import pytest

from novacron.monitoring.anomaly_feed import AnomalyFeed, RateDeriver
from novacron.monitoring.remote_write import Sample
from novacron.monitoring.series import ANOMALY_SCORE

T0 = 1_700_000_000.0
CPU = "novacron_vm_cpu_seconds_total"
PROCESS_CPU = "novacron_vm_process_cpu_seconds_total"
RX = "novacron_vm_network_receive_bytes_total"
MEM = "novacron_vm_guest_memory_available_bytes"


def rates(deriver: RateDeriver, samples: list[dict[str, Any]], host: str = "h1") -> list[dict[str, float]]:
    return [{name: v for name, _t, v in deriver.derive("vm-1", host, s)} for s in samples]


def test_counters_become_per_second_rates_and_gauges_stay_values() -> None:
    deriver = RateDeriver()
    got = rates(
        deriver,
        [
            {"time": T0, "vcpu_time_s": 10.0, "net_rx_bytes": 1000, "guest_mem_available_bytes": 5e8},
            {"time": T0 + 2, "vcpu_time_s": 11.0, "net_rx_bytes": 5000, "guest_mem_available_bytes": 4e8},
        ],
    )
    assert got[0] == {MEM: 5e8}  # no rate from one sample
    assert got[1] == {CPU: 0.5, RX: 2000.0, MEM: 4e8}


def test_a_rate_is_the_mean_over_a_step_and_a_gauge_is_taken_once_a_step() -> None:
    deriver = RateDeriver(step_s=10)
    cpu = [0.0, 1.0, 1.5, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 5.0, 5.5]  # one sample a second
    got = rates(
        deriver,
        [{"time": T0 + i, "vcpu_time_s": v, "guest_mem_available_bytes": 1e8 + i} for i, v in enumerate(cpu)],
    )
    assert got[0] == {MEM: 1e8} and got[10] == {CPU: 0.5, MEM: 1e8 + 10}
    assert all(g == {} for g in got[1:10]) and got[11] == {}
    assert deriver.max_gap_s == 60


def test_the_process_cpu_is_scored_when_there_is_no_vcpu_time() -> None:
    got = rates(RateDeriver(), [{"time": T0, "cpu_time_s": 1.0}, {"time": T0 + 1, "cpu_time_s": 1.25}])
    assert got == [{}, {PROCESS_CPU: 0.25}]


def test_a_counter_reset_gives_no_rate_and_the_next_sample_counts_from_it() -> None:
    got = rates(
        RateDeriver(),
        [{"time": T0 + i, "vcpu_time_s": v} for i, v in enumerate([100.0, 101.0, 0.5, 1.0, None])],
    )
    assert got == [{}, {CPU: 1.0}, {}, {CPU: 0.5}, {}]


def test_a_gap_gives_no_rate_and_missing_or_bad_samples_are_skipped() -> None:
    deriver = RateDeriver(max_gap_s=10)
    got = rates(
        deriver,
        [
            {"time": T0, "vcpu_time_s": 1.0},
            {"time": T0 + 30, "vcpu_time_s": 2.0},  # after a 30 s gap
            {"time": T0 + 31, "vcpu_time_s": 3.0},
            {"time": T0 + 30.5, "vcpu_time_s": 2.5},  # out of order: ignored
            {"time": T0 + 31, "vcpu_time_s": 9.0},  # repeated timestamp: ignored
            {"time": None, "vcpu_time_s": 9.0},
            {"time": T0 + 32, "vcpu_time_s": "4"},
            {"time": T0 + 33, "vcpu_time_s": 5.0},
        ],
    )
    assert got == [{}, {}, {CPU: 1.0}, {}, {}, {}, {}, {CPU: 1.0}]


def test_a_vm_on_another_host_starts_again_and_a_forgotten_vm_too() -> None:
    deriver = RateDeriver()
    assert rates(deriver, [{"time": T0, "vcpu_time_s": 1.0}]) == [{}]
    assert rates(deriver, [{"time": T0 + 1, "vcpu_time_s": 2.0}], host="h2") == [{}]
    assert rates(deriver, [{"time": T0 + 2, "vcpu_time_s": 3.0}], host="h2") == [{CPU: 1.0}]
    deriver.forget("vm-1")
    assert len(deriver) == 0
    assert rates(deriver, [{"time": T0 + 3, "vcpu_time_s": 4.0}], host="h2") == [{}]


class Sink:
    def __init__(self) -> None:
        self.samples: list[Sample] = []

    def __call__(self, samples: list[Sample]) -> None:
        self.samples += samples


def busy_then_spike(feed: AnomalyFeed, vm: str, tenancy: tuple[str, str], n: int, spike_at: int) -> list[Any]:
    """``n`` 1 s samples of a VM using ~0.05 cores, then 0.95 cores from ``spike_at``: the anomalies."""
    rng = random.Random(vm)
    cpu = 0.0
    found = []
    for i in range(n):
        cpu += 0.95 if i >= spike_at else 0.05 + rng.random() * 0.02
        report = {vm: {"time": T0 + i, "vcpu_time_s": cpu}}
        found += feed.score("host-1", report, {vm: tenancy})
    return found


def test_scores_are_series_with_the_vms_tenancy_and_a_spike_is_one_event() -> None:
    sink = Sink()
    feed = AnomalyFeed(sink, None, threshold=0.5, learning_seconds=60, event_interval_s=3600, step_s=1)
    found = busy_then_spike(feed, "vm-a", ("tenant-a", "project-a"), 300, spike_at=250)
    assert len(found) == 1
    anomaly = found[0]
    assert (anomaly.vm_id, anomaly.tenant_id, anomaly.project_id, anomaly.metric) == (
        "vm-a",
        "tenant-a",
        "project-a",
        CPU,
    )
    assert anomaly.value == pytest.approx(0.95) and anomaly.score >= 0.5
    series = {s.labels for s, _ms, _v in sink.samples}
    assert series == {
        (
            ("__name__", ANOMALY_SCORE),
            ("host_id", "host-1"),
            ("metric", CPU),
            ("project_id", "project-a"),
            ("tenant_id", "tenant-a"),
            ("vm_id", "vm-a"),
        )
    }
    scores = [(ms, v) for _s, ms, v in sink.samples]
    assert len(scores) == 299 and all(0.0 <= v <= 1.0 for _ms, v in scores)
    assert max(scores, key=lambda x: x[1])[0] == int((T0 + 250) * 1000)
    assert all(v == 0.0 for ms, v in scores if ms < (T0 + 60) * 1000)  # still learning


def test_events_of_one_vm_are_rate_limited_and_a_deleted_vm_is_forgotten() -> None:
    feed = AnomalyFeed(Sink(), None, threshold=0.5, learning_seconds=60, event_interval_s=3600)
    assert len(busy_then_spike(feed, "vm-a", ("t", "p"), 300, spike_at=250)) == 1
    feed.rates.forget("vm-a")  # its counters start again; its detector remembers the spike's level
    assert busy_then_spike(feed, "vm-a", ("t", "p"), 300, spike_at=250) == []  # within the interval
    feed.forget_vm("vm-a")
    feed.start()
    try:
        assert feed.flush(5)
    finally:
        feed.stop()
    assert len(feed.monitor) == 0 and len(feed.rates) == 0
    assert len(busy_then_spike(feed, "vm-a", ("t", "p"), 300, spike_at=250)) == 1  # a new VM's


def test_vms_without_tenancy_are_not_scored() -> None:
    sink = Sink()
    feed = AnomalyFeed(sink, None, threshold=0.5, learning_seconds=0)
    feed.score("h", {"vm-x": {"time": T0, "vcpu_time_s": 1.0}, "vm-y": {"time": T0, "vcpu_time_s": 1.0}}, {})
    feed.score("h", {"vm-x": {"time": T0 + 1, "vcpu_time_s": 2.0}}, {})
    assert sink.samples == [] and len(feed.monitor) == 0
