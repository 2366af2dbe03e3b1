"""What the agent does for each host operation: one handler per request type (``agent/protocol.py``).

A handler gets the agent, the instance the operation is about, the typed request and a progress
callback (None outside a task), and answers the operation's result (a JSON object). It drives the
host only through the interfaces: ``ComputeDriver`` (a driver refuses what it cannot do with
``NotSupported``) and ``NetworkBackend``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any, TypeVar

from novacron.agent import protocol as p
from novacron.monitoring.slo.checks import run_many
from novacron.virt.base import ComputeDriver, PowerState, Progress
from novacron.virt.consolelog import read_log

if TYPE_CHECKING:
    from novacron.agent.runtime import AgentRuntime

WAIT_POLL_S = 0.1
Result = dict[str, Any] | None
Handler = Callable[["AgentRuntime", str, Any, Progress | None], Awaitable[Result]]
H = TypeVar("H", bound=Handler)
#: request type -> its handler
HANDLERS: dict[type[p.Request], Handler] = {}


def handles(*types: type[p.Request]) -> Callable[[H], H]:
    """Register a handler for the given request types."""

    def register(handler: H) -> H:
        for t in types:
            HANDLERS[t] = handler
        return handler

    return register


async def handle(
    agent: AgentRuntime, instance_id: str, request: p.Request, report: Progress | None
) -> dict[str, Any]:
    """Run ``request``'s handler; an empty result when it answers nothing."""
    return await HANDLERS[type(request)](agent, instance_id, request, report) or {}


# ---- lifecycle --------------------------------------------------------------------------------


@handles(p.Prepare)
async def _prepare(agent: AgentRuntime, instance_id: str, r: p.Prepare, _: Progress | None) -> Result:
    spec = await agent.instance_spec(r.spec)
    if r.secrets.get("vendor_data"):
        spec = replace(spec, vendor_data=r.secrets["vendor_data"])
    await agent.driver.prepare(spec)
    return None


@handles(p.Launch)
async def _launch(agent: AgentRuntime, instance_id: str, r: p.Launch, _: Progress | None) -> Result:
    await agent.driver.launch(await agent.instance_spec(r.spec))
    return None


@handles(p.WaitState)
async def _wait_state(agent: AgentRuntime, instance_id: str, r: p.WaitState, _: Progress | None) -> Result:
    wanted = {PowerState(state) for state in r.wanted}
    deadline = asyncio.get_running_loop().time() + r.timeout_s
    while True:
        power = (await agent.driver.observe(instance_id)).power_state
        if power in wanted:
            return {"power_state": power.value}
        if power == PowerState.CRASHED or asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"the VM is {power.value}, expected {', '.join(sorted(r.wanted))}")
        await asyncio.sleep(WAIT_POLL_S)


@handles(p.Observe)
async def _observe(agent: AgentRuntime, instance_id: str, r: p.Observe, _: Progress | None) -> Result:
    return {"power_state": (await agent.driver.observe(instance_id)).power_state.value}


@handles(p.Shutdown)
async def _shutdown(agent: AgentRuntime, instance_id: str, r: p.Shutdown, _: Progress | None) -> Result:
    return {"clean": await agent.driver.shutdown(instance_id, r.timeout_s)}


@handles(p.PowerOff, p.Reboot, p.Pause, p.Resume, p.Destroy)
async def _power(agent: AgentRuntime, instance_id: str, r: p.Request, _: Progress | None) -> Result:
    d = agent.driver
    actions = {
        p.PowerOff: d.power_off,
        p.Reboot: d.reboot,
        p.Pause: d.pause,
        p.Resume: d.resume,
        p.Destroy: d.destroy,
    }
    await actions[type(r)](instance_id)
    return None


@handles(p.Snapshot)
async def _snapshot(agent: AgentRuntime, instance_id: str, r: p.Snapshot, _: Progress | None) -> Result:
    # flattened where the control plane wants it: straight into the image store when it is this
    # process's, else into a scratch file that is uploaded and then removed
    dest = agent.control.snapshot_dest(r.image_id)
    await agent.driver.snapshot_disk(instance_id, dest)
    await agent.control.snapshot_taken(r.image_id, dest)
    return None


@handles(p.CloneDisk)
async def _clone_disk(
    agent: AgentRuntime, instance_id: str, r: p.CloneDisk, report: Progress | None
) -> Result:
    await agent.driver.clone_disk(r.source_id, instance_id, report, r.snapshot, r.full)
    return None


@handles(p.ConsoleRead)
async def _console_read(
    agent: AgentRuntime, instance_id: str, r: p.ConsoleRead, _: Progress | None
) -> Result:
    data, next_offset = read_log(agent.driver.console_log(instance_id), r.offset, r.tail)
    return {"text": data.decode("utf-8", "replace"), "next_offset": next_offset}


@handles(p.ConsoleAttach)
async def _console_attach(
    agent: AgentRuntime, instance_id: str, r: p.ConsoleAttach, _: Progress | None
) -> Result:
    session = r.secrets.get("session") or r.session
    if not session:
        raise p.BadRequest("the payload of operation 'console_attach' names no session")
    if r.kind not in ("serial", "vnc"):
        raise p.BadRequest(f"unknown console kind {r.kind!r} (serial or vnc)")
    await agent.console_attach(instance_id, session, r.relay_url, r.kind)
    return None


# ---- volumes (the driver refuses when it cannot hot-plug) ----------------------------------------


@handles(p.VolumeAttach)
async def _volume_attach(
    agent: AgentRuntime, instance_id: str, r: p.VolumeAttach, _: Progress | None
) -> Result:
    await agent.driver.attach_volume(instance_id, r.volume)
    return None


@handles(p.VolumeDetach)
async def _volume_detach(
    agent: AgentRuntime, instance_id: str, r: p.VolumeDetach, _: Progress | None
) -> Result:
    await agent.driver.detach_volume(instance_id, r.volume_id, r.timeout_s)
    return None


@handles(p.VolumeExtend)
async def _volume_extend(
    agent: AgentRuntime, instance_id: str, r: p.VolumeExtend, _: Progress | None
) -> Result:
    await agent.driver.extend_volume(instance_id, r.volume_id, r.size_bytes)
    return None


@handles(p.VolumeLimits)
async def _volume_limits(
    agent: AgentRuntime, instance_id: str, r: p.VolumeLimits, _: Progress | None
) -> Result:
    await agent.driver.set_volume_limits(instance_id, r.volume)
    return None


@handles(p.VolumeSnapshot)
async def _volume_snapshot(
    agent: AgentRuntime, instance_id: str, r: p.VolumeSnapshot, _: Progress | None
) -> Result:
    await agent.driver.snapshot_volume(instance_id, r.volume_id, r.name, r.delete)
    return None


# ---- VM snapshots (the driver refuses when it cannot snapshot) ----------------------------------


@handles(p.VmSnapshotCreate)
async def _vm_snapshot_create(
    agent: AgentRuntime, instance_id: str, r: p.VmSnapshotCreate, report: Progress | None
) -> Result:
    return await agent.driver.create_snapshot(instance_id, r.tag, r.memory, r.quiesce, report)


@handles(p.VmSnapshotRevert)
async def _vm_snapshot_revert(
    agent: AgentRuntime, instance_id: str, r: p.VmSnapshotRevert, report: Progress | None
) -> Result:
    return await agent.driver.revert_snapshot(instance_id, r.tag, report)


@handles(p.VmSnapshotDelete)
async def _vm_snapshot_delete(
    agent: AgentRuntime, instance_id: str, r: p.VmSnapshotDelete, _: Progress | None
) -> Result:
    await agent.driver.delete_snapshot(instance_id, r.tag)
    return None


@handles(p.ResizeLive)
async def _resize_live(agent: AgentRuntime, instance_id: str, r: p.ResizeLive, _: Progress | None) -> Result:
    await agent.driver.resize_live(instance_id, r.target)
    return None


# ---- migration (the driver refuses when it cannot migrate) --------------------------------------


def _mover(agent: AgentRuntime) -> ComputeDriver:
    """The host's driver, when it migrates: a driver that cannot refuses every step of a move."""
    if not agent.driver.CAN_MIGRATE:
        agent.driver.refuse("migrate")
    return agent.driver


@handles(p.MigrateSourceDisk)
async def _source_disk(
    agent: AgentRuntime, instance_id: str, r: p.MigrateSourceDisk, _: Progress | None
) -> Result:
    return await _mover(agent).migration_storage(instance_id, r.volumes)


@handles(p.MigrateStorage)
async def _storage(agent: AgentRuntime, instance_id: str, r: p.MigrateStorage, _: Progress | None) -> Result:
    driver = _mover(agent)
    return {
        "storage": driver.choose_migration_storage(instance_id, r.storage, r.source),
        "volumes": driver.choose_volume_storage(r.source),
    }


@handles(p.MigrateReceive)
async def _receive(agent: AgentRuntime, instance_id: str, r: p.MigrateReceive, _: Progress | None) -> Result:
    driver = _mover(agent)
    spec = await agent.instance_spec(r.spec)
    return asdict(await driver.migrate_receive(spec, agent.migration_address, r.storage, r.copy_volumes))


@handles(p.MigrateDropVolumes)
async def _drop_volumes(
    agent: AgentRuntime, instance_id: str, r: p.MigrateDropVolumes, _: Progress | None
) -> Result:
    return {"removed": _mover(agent).drop_volume_copies(list(r.paths))}


@handles(p.MigrateSend)
async def _send(agent: AgentRuntime, instance_id: str, r: p.MigrateSend, report: Progress | None) -> Result:
    return (await _mover(agent).migrate_send(instance_id, r.target, r.settings, report)).as_dict()


@handles(p.MigrateFinish)
async def _finish(agent: AgentRuntime, instance_id: str, r: p.MigrateFinish, _: Progress | None) -> Result:
    return {"resumed_at": await _mover(agent).migrate_finish(instance_id, r.storage)}


@handles(p.MigrateForget)
async def _forget(agent: AgentRuntime, instance_id: str, r: p.MigrateForget, _: Progress | None) -> Result:
    await _mover(agent).forget(instance_id)
    return None


@handles(p.MigrateServeDisk)
async def _serve(agent: AgentRuntime, instance_id: str, r: p.MigrateServeDisk, _: Progress | None) -> Result:
    return asdict(await _mover(agent).serve_disk(instance_id, agent.migration_address, r.volumes, r.disk))


@handles(p.MigrateFetchDisk)
async def _fetch(
    agent: AgentRuntime, instance_id: str, r: p.MigrateFetchDisk, report: Progress | None
) -> Result:
    driver = _mover(agent)
    return await driver.fetch_disk(await agent.instance_spec(r.spec), r.source, report, r.volume_ids)


# ---- backup and restore (novacron.backup: the driver refuses when it cannot) --------------------


@handles(p.BackupDisk)
async def _backup(agent: AgentRuntime, instance_id: str, r: p.BackupDisk, report: Progress | None) -> Result:
    from novacron.backup import agentops

    return await agentops.backup_disk(agent.driver, instance_id, r, report)


@handles(p.RestoreDisk)
async def _restore(
    agent: AgentRuntime, instance_id: str, r: p.RestoreDisk, report: Progress | None
) -> Result:
    from novacron.backup import agentops

    return await agentops.restore_disk(agent.driver, instance_id, r, report)


@handles(p.WaitConsole)
async def _wait_console(
    agent: AgentRuntime, instance_id: str, r: p.WaitConsole, report: Progress | None
) -> Result:
    from novacron.backup import agentops

    return await agentops.wait_console(agent.driver, instance_id, r, report)


@handles(p.InstantRestoreDisk)
async def _instant_restore(
    agent: AgentRuntime, instance_id: str, r: p.InstantRestoreDisk, report: Progress | None
) -> Result:
    from novacron.backup import instant

    return await instant.instant_restore_disk(agent.driver, instance_id, r, report)


@handles(p.StreamDisk)
async def _stream(agent: AgentRuntime, instance_id: str, r: p.StreamDisk, report: Progress | None) -> Result:
    from novacron.backup import instant

    return await instant.stream_disk(agent.driver, instance_id, r, report)


@handles(p.StopRestoreSource)
async def _stop_source(
    agent: AgentRuntime, instance_id: str, r: p.StopRestoreSource, _: Progress | None
) -> Result:
    from novacron.backup import agentops, instant

    instant.stop_source(agentops.backer(agent.driver), instance_id)
    return None


# ---- probes -----------------------------------------------------------------------------------


@handles(p.ProbeRun)
async def _probe_run(agent: AgentRuntime, instance_id: str, r: p.ProbeRun, _: Progress | None) -> Result:
    outcomes = await asyncio.to_thread(run_many, [(c.netns, c.check) for c in r.checks])
    return {"outcomes": [asdict(o) for o in outcomes]}


# ---- network ----------------------------------------------------------------------------------


@handles(p.NetworkSync)
async def _network_sync(
    agent: AgentRuntime, instance_id: str, r: p.NetworkSync, _: Progress | None
) -> Result:
    return await agent.network_sync(r.state, r.generation)


# ---- load balancers (agent/lbaas.py) ----------------------------------------------------------


@handles(p.LbApply)
async def _lb_apply(agent: AgentRuntime, instance_id: str, r: p.LbApply, _: Progress | None) -> Result:
    from novacron.agent import lbaas

    return await lbaas.apply(agent, r)


@handles(p.LbRemove)
async def _lb_remove(agent: AgentRuntime, instance_id: str, r: p.LbRemove, _: Progress | None) -> Result:
    from novacron.agent import lbaas

    return await lbaas.remove(agent, r)


@handles(p.LbStatus)
async def _lb_status(agent: AgentRuntime, instance_id: str, r: p.LbStatus, _: Progress | None) -> Result:
    from novacron.agent import lbaas

    return await lbaas.status(agent, r)


@handles(p.LbChallenge)
async def _lb_challenge(
    agent: AgentRuntime, instance_id: str, r: p.LbChallenge, _: Progress | None
) -> Result:
    from novacron.agent import lbaas

    return await lbaas.challenge(agent, r)
