"""A host's report touches its own VMs only: what it is told to keep and whose samples it may set."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from novacron.compute.reports import LiveSamples, apply_report
from novacron.db.base import Database
from novacron.db.migrate import upgrade
from novacron.db.models import Host, HostOperation, Task


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path}/nc.db")
    upgrade(database)
    yield database
    database.engine.dispose()


def test_another_hosts_vm_in_creation_is_not_in_a_report_answer(db: Database) -> None:
    """A VM being created on host A: host B's agent was told to keep it (learning the id of every
    VM being created anywhere) and could set its metrics. Only A is, now."""
    with db.session() as s:
        for name in ("host-a", "host-b"):
            s.add(Host(id=name, name=name, driver="qemu", accelerator="tcg", cpus=4, ram_mb=4096))
        s.flush()
        s.add(Task(id="task-1", kind="create_vm", resource_type="vm", resource_id="vm-1", state="running"))
        s.add(HostOperation(id="op-1", host_id="host-a", task_id="task-1", op="prepare", instance_id="vm-1"))
    metrics = LiveSamples()

    answer_b = apply_report(db, metrics, "host-b", {}, {"vm-1": {"cpu": 99.0}})
    assert "vm-1" not in answer_b.keep
    assert metrics.get("vm-1") == []

    answer_a = apply_report(db, metrics, "host-a", {}, {"vm-1": {"cpu": 1.0}})
    assert "vm-1" in answer_a.keep
    assert [m["cpu"] for m in metrics.get("vm-1")] == [1.0]


@pytest.mark.parametrize("fraction", ["half", float("nan"), float("inf"), [1], None])
def test_progress_with_a_bad_fraction_is_no_error(db: Database, fraction: object) -> None:
    """``float(detail["fraction"])`` raised on text or a list, and ``int()`` on NaN: the agent's
    progress call was a 500. Now such a fraction counts as 0."""
    from types import SimpleNamespace

    from novacron.compute import hostops

    with db.session() as s:
        s.add(Host(id="host-a", name="host-a", driver="qemu", accelerator="tcg", cpus=4, ram_mb=4096))
        s.flush()
        s.add(
            Task(id="t1", kind="k", resource_type="vm", resource_id="vm-1", state="running", steps=["a", "b"])
        )
        s.add(
            HostOperation(
                id="op-1", host_id="host-a", task_id="t1", op="x", instance_id="vm-1", state="running"
            )
        )
    ctx: Any = SimpleNamespace(db=db)
    assert hostops.progress(ctx, "host-a", "op-1", {"fraction": fraction}) is False
    with db.session() as s:
        assert s.get(Task, "t1").progress == 0  # type: ignore[union-attr]
    assert hostops.progress(ctx, "host-a", "op-1", {"fraction": 0.5}) is False
    with db.session() as s:
        assert s.get(Task, "t1").progress == 25  # type: ignore[union-attr]
