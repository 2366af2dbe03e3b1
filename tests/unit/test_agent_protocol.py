"""The agent protocol: typed requests whose JSON is what both sides exchanged before the types."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from novacron.agent import protocol
from novacron.agent.handlers import HANDLERS
from novacron.agent.protocol import BadRequest, parse
from novacron.agent.runtime import AgentRuntime
from novacron.virt.base import DiskSource, NotSupported
from novacron.virt.migration import MigrationSettings, MigrationTarget
from novacron.virt.simulated import SimulatedDriver

SPEC: dict[str, Any] = {
    "id": "vm-1", "name": "web", "vcpus": 1, "ram_mb": 256, "disk_gb": 1, "image_id": "img-1",
    "image_sha256": "ab" * 32, "image_format": "qcow2", "has_kernel": False, "has_initrd": False,
    "kernel_cmdline": "", "mac": "52:54:00:00:00:01", "user_data": "", "meta_data": {"instance-id": "vm-1"},
    "nics": [{"port_id": "p1", "mac": "52:54:00:00:00:02", "device": "tp1", "network_id": "n1",
              "vnic_type": "normal"}],
}  # fmt: skip


def test_every_operation_has_a_request_type_and_a_handler() -> None:
    assert len(protocol.REQUESTS) == 44
    assert set(HANDLERS) == set(protocol.REQUESTS.values())
    assert all(op == cls.OP for op, cls in protocol.REQUESTS.items())


def test_payloads_of_before_the_types_parse_and_encode_back() -> None:
    """What a server sent before the request types is read as it was meant (and encodes to a
    payload with the same values: a key left out then is there now with its default)."""
    target = {"host": "10.0.0.2", "ram_port": 4000, "nbd_port": 4001, "storage": "local"}
    settings = {"max_downtime_ms": 300, "max_bandwidth_bps": None, "auto_converge": True}
    before: dict[str, dict[str, Any]] = {
        "migrate_receive": {"spec": SPEC, "storage": "shared"},
        "migrate_send": {"target": target, "settings": settings},
        "migrate_fetch_disk": {"spec": SPEC, "source": {"host": "10.0.0.1", "port": 5000, "size": 123}},
        "backup_disk": {"snapshot_id": "s2", "parent_id": "s1", "immutable_until": None, "full": False,
                        "secrets": {"tenant_id": "t", "chunk_size": 4096}},
        "wait_state": {"wanted": ["running"], "timeout_s": 120.0},
        "console_read": {"offset": 10},
    }  # fmt: skip
    for op, payload in before.items():
        again = json.loads(json.dumps(protocol.encode(parse(op, payload))))  # as queued: JSON
        expected = {k: v for k, v in payload.items() if k != "spec"}
        if op == "migrate_fetch_disk":  # a source without NVRAM, as every one was before UEFI
            expected["source"] = {**expected["source"], "nvram_size": 0, "tpm_size": 0, "volume_sizes": []}
        if op == "migrate_send":  # a VM without volumes to copy, as every one was before volumes
            expected["target"] = {**expected["target"], "volumes": {}, "root": True}  # and a root disk
        assert {k: again[k] for k in payload if k != "spec"} == expected
        if "spec" in payload:
            assert {k: again["spec"][k] for k in SPEC if k != "nics"} == {
                k: v for k, v in SPEC.items() if k != "nics"
            }
            assert again["spec"]["nics"] == [{**SPEC["nics"][0], "pci_address": ""}]
    receive = parse("migrate_receive", before["migrate_receive"])
    assert isinstance(receive, protocol.MigrateReceive)
    assert receive.spec.nics[0].device == "tp1" and receive.storage == "shared"
    send = parse("migrate_send", before["migrate_send"])
    assert isinstance(send, protocol.MigrateSend)
    assert send.target == MigrationTarget("10.0.0.2", 4000, 4001, "local")
    assert send.settings == MigrationSettings(300, None, True)
    fetch = parse("migrate_fetch_disk", before["migrate_fetch_disk"])
    assert isinstance(fetch, protocol.MigrateFetchDisk) and fetch.source == DiskSource("10.0.0.1", 5000, 123)
    assert parse("console_read", {"offset": 10}) == protocol.ConsoleRead(10, None)
    assert parse("shutdown", {}) == protocol.Shutdown(60.0)


def test_a_bad_payload_or_an_unknown_operation_is_refused_clearly() -> None:
    with pytest.raises(BadRequest, match="unknown operation 'frobnicate'"):
        parse("frobnicate", {})
    with pytest.raises(BadRequest, match="'snapshot' lacks image_id"):
        parse("snapshot", {})
    with pytest.raises(BadRequest, match="'backup_disk' lacks secrets, snapshot_id"):
        parse("backup_disk", {"parent_id": "s1"})
    with pytest.raises(BadRequest, match="'prepare' does not fit"):
        parse("prepare", {"spec": {"id": "vm-1"}})
    with pytest.raises(BadRequest, match="'wait_state' does not fit"):
        parse("wait_state", {"wanted": ["running"], "timeout_s": "soon"})


def test_the_simulated_driver_refuses_migration_and_backup_clearly(tmp_path: Path) -> None:
    """It cannot move or back up a VM: each step says so, naming the driver, and nothing else runs."""
    driver = SimulatedDriver(state_dir=tmp_path)
    assert not driver.CAN_MIGRATE and not driver.CAN_BACKUP
    runtime = AgentRuntime(driver, None)  # type: ignore[arg-type]
    migrate, backup = "the simulated driver cannot migrate", "the simulated driver cannot back VMs up"
    refused: dict[str, tuple[dict[str, Any], str]] = {
        "migrate_source_disk": ({}, migrate),
        "migrate_forget": ({}, migrate),
        "migrate_serve_disk": ({}, migrate),
        "backup_disk": ({"snapshot_id": "s1", "secrets": {"chunk_size": 4096}}, backup),
        "restore_disk": ({"snapshot_id": "s1", "size": 1, "secrets": {}}, backup),
        "stop_restore_source": ({}, backup),
    }
    for op, (payload, message) in refused.items():
        with pytest.raises(NotSupported) as caught:
            asyncio.run(runtime.execute(op, "vm-1", payload))
        assert str(caught.value) == message, op
    with pytest.raises(NotSupported, match="the simulated driver cannot back VMs up"):
        driver.scratch_dir("vm-1")
    with pytest.raises(NotSupported, match="the simulated driver cannot migrate"):
        asyncio.run(driver.migrate_finish("vm-1"))
