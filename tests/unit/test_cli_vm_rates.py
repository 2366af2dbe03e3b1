"""``novacron vm metrics`` shows rates per second, not the counters since boot (issue 17, item 10)."""

from __future__ import annotations

from novacron.cli.vmmetrics import rates, summary


def _sample(t: float, cpu: float, read: int, rx: int) -> dict[str, float | int]:
    return {
        "time": t, "cpu_time_s": cpu * 2, "vcpu_time_s": cpu, "rss_bytes": 300 << 20,
        "disk_read_bytes": read, "disk_write_bytes": 0, "disk_read_ops": read // 4096,
        "disk_write_ops": 0, "net_rx_bytes": rx, "net_tx_bytes": 0,
        "guest_mem_total_bytes": 256 << 20, "guest_mem_available_bytes": 200 << 20,
    }  # fmt: skip


def test_each_row_is_the_change_per_second_between_two_samples() -> None:
    samples = [_sample(100, 50.0, 1 << 30, 0), _sample(102, 50.5, (1 << 30) + 2 * 4096, 2000),
               _sample(103, 51.5, (1 << 30) + 2 * 4096, 3000)]  # fmt: skip
    rows = rates(samples)
    assert len(rows) == 2
    first = rows[0]
    assert first["time"] == 102 and first["window_s"] == 2
    assert first["guest_cpu_percent"] == 25.0 and first["qemu_cpu_percent"] == 50.0
    assert first["disk_read_bytes_per_s"] == 4096 and first["disk_read_ops_per_s"] == 1
    assert first["net_rx_bytes_per_s"] == 1000
    assert first["guest_mem_used_bytes"] == 56 << 20 and first["qemu_rss_bytes"] == 300 << 20
    assert rows[1]["guest_cpu_percent"] == 100.0 and rows[1]["disk_read_bytes_per_s"] == 0
    avg = summary(rows)
    assert avg["window_s"] == 3 and avg["guest_cpu_percent"] == 50.0 and avg["net_rx_bytes_per_s"] == 1000


def test_a_counter_that_went_down_gives_no_rate() -> None:
    """The VM restarted between two samples: its counters began again from zero."""
    rows = rates([_sample(10, 80.0, 5000, 9000), _sample(11, 0.5, 100, 10)])
    assert rows[0]["guest_cpu_percent"] is None and rows[0]["net_rx_bytes_per_s"] is None
    assert summary(rows)["guest_cpu_percent"] is None
    assert rates([_sample(10, 1, 1, 1)]) == []
