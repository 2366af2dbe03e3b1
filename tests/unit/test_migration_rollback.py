"""A failed live migration on shared storage never resumes the source over a disk the destination
may have written: the destination runs the guest by itself once the state is in (no ``-S``)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from novacron.compute import hostops, migration
from novacron.tasks.runner import StepFailed

STEPS = migration.MigrateVM.steps


def _task(storage: str, step: str) -> Any:
    params = {"storage": storage, "target_host_id": "host-b", "source_host_id": "host-a"}
    return SimpleNamespace(params=params, step_index=STEPS.index(step), resource_id="vm-1")


@pytest.mark.parametrize(
    ("destination", "ran"),
    [("paused", False), ("absent", False), ("running", True), ("stopped", True), (None, True)],
)
def test_a_shared_rollback_during_the_transfer_asks_the_destination(
    monkeypatch: pytest.MonkeyPatch, destination: str | None, ran: bool
) -> None:
    asked: list[str] = []

    async def call(ctx: Any, host: str, task: Any, request: Any, *args: Any, **kw: Any) -> dict[str, str]:
        asked.append(host)
        if destination is None:  # failure injection: the destination's agent does not answer
            raise StepFailed("host-b does not answer")
        return {"power_state": destination}

    monkeypatch.setattr(hostops, "call", call)
    handler = migration.MigrateVM()
    assert asyncio.run(handler._ran_at_target(None, _task("shared", "transfer"))) is ran  # type: ignore[arg-type]
    assert asked == ["host-b"]


def test_local_storage_and_shared_before_the_transfer_need_no_question(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def call(*args: Any, **kw: Any) -> None:
        raise AssertionError("no agent is asked")

    monkeypatch.setattr(hostops, "call", call)
    handler = migration.MigrateVM()
    cases = [
        ("local", "transfer", False),
        ("shared", "prepare_target", False),
        ("shared", "start_target", True),
    ]
    for storage, step, ran in cases:
        assert asyncio.run(handler._ran_at_target(None, _task(storage, step))) is ran, (storage, step)  # type: ignore[arg-type]
