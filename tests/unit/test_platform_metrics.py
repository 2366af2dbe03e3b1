"""The platform's instruments: what a backup, a task and a request add, and labels kept bounded."""

from __future__ import annotations

from prometheus_client import generate_latest

from novacron.monitoring.platform import PlatformMetrics


def _lines(metrics: PlatformMetrics) -> set[str]:
    return set(generate_latest(metrics.registry).decode().splitlines())


def test_backups_add_their_bytes_and_duration_under_known_modes_only() -> None:
    metrics = PlatformMetrics()
    metrics.backup_finished("full", "s3", bytes_read=4 << 20, bytes_uploaded=1 << 20, seconds=2.5)
    metrics.backup_finished("incremental", "s3", bytes_read=1024, bytes_uploaded=0, seconds=0.5)
    metrics.backup_finished("zzz-from-an-agent", "local", bytes_read=1, bytes_uploaded=1, seconds=1)
    lines = _lines(metrics)
    assert 'novacron_backup_read_bytes_total{mode="full",target_type="s3"} 4.194304e+06' in lines
    assert 'novacron_backup_uploaded_bytes_total{mode="full",target_type="s3"} 1.048576e+06' in lines
    assert 'novacron_backup_duration_seconds_count{mode="incremental",target_type="s3"} 1.0' in lines
    assert 'novacron_backup_read_bytes_total{mode="other",target_type="local"} 1.0' in lines
    assert not any("zzz" in line for line in lines)
    assert not any("_created" in line for line in lines)


def test_tasks_and_requests() -> None:
    metrics = PlatformMetrics()
    metrics.task_finished("vm.create", "failed", 3.0)
    metrics.observe_request("BREW", "/v1/vms", 405, 0.001)
    lines = _lines(metrics)
    assert 'novacron_tasks_total{kind="vm.create",outcome="failed"} 1.0' in lines
    assert 'novacron_task_duration_seconds_bucket{kind="vm.create",le="5.0",outcome="failed"} 1.0' in lines
    assert 'novacron_api_requests_total{method="other",route="/v1/vms",status="405"} 1.0' in lines
