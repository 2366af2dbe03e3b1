"""What a host's agent asks of the control plane: register, report, claim operations, answer
them, show their progress, and send back the disk of a snapshot taken on its host.

Every call is made with a node credential (``node.user_id`` is the host's id). Each runs its own
short transactions, so a long-polling claim or a streamed upload holds no database session.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from sqlalchemy import select

from novacron.compute import guestinfo, hostops, reports, storage
from novacron.compute.images import receive_upload
from novacron.db.models import HostOperation, Image
from novacron.errors import Conflict, InvalidInput, NotFound
from novacron.identity.principal import Principal
from novacron.lbaas import bans as lb_bans
from novacron.lbaas import failover as lb_failover
from novacron.lbaas import health as lb_health
from novacron.monitoring import tracing
from novacron.virt.base import HostFacts

if TYPE_CHECKING:
    from novacron.context import Context


def register(ctx: Context, node: Principal, driver: str, facts: HostFacts) -> str:
    """Record the host's driver and facts (its row on first contact); what its agent had claimed
    before it restarted is offered again."""
    host_id = reports.register_host(ctx.db, node.username, driver, facts)
    hostops.requeue_unanswered(ctx, host_id)
    return host_id


def report(  # noqa: PLR0913 - what one report carries
    ctx: Context,
    node: Principal,
    power_states: dict[str, str],
    samples: dict[str, dict[str, Any]],
    age_s: float,
    host_sample: dict[str, Any] | None = None,
    lb: dict[str, Any] | None = None,
) -> reports.ReportAnswer:
    """Record the host's observations; the answer renews its self-fencing lease (``reports``)."""
    answer = record_report(ctx, node.user_id, power_states, samples, age_s, host_sample, lb or {})
    ctx.platform_metrics.heartbeat(node.user_id, node.username)
    return answer


def record_report(  # noqa: PLR0913 - what one report carries
    ctx: Context,
    host_id: str,
    power_states: dict[str, str],
    samples: dict[str, dict[str, Any]],
    age_s: float,
    host_sample: dict[str, Any] | None,
    lb: dict[str, Any],
) -> reports.ReportAnswer:
    """Apply a host's report (states, live samples) and queue its metrics for the store, labelled
    with the tenancy the database gives its VMs; the store being down never delays the answer.
    ``lb``: its load balancers' ``lb_health`` ({lb id: {"<pool>/<member>": UP|DOWN|MAINT|NO_CHECK}},
    taken in by ``lbaas.health``), their ``lb_metrics`` (to the store) and the guard's ``lb_bans``
    (agent/lbaas.py); and the guests' ``guest_info`` and the host's ``dhcp_leases``
    (compute/guestinfo.py)."""
    answer = reports.apply_report(
        ctx.db, ctx.live_samples, host_id, power_states, samples, age_s, lease_s=ctx.settings.ha_lease_s
    )
    if ctx.monitoring is not None:
        ctx.monitoring.record(host_id, samples, answer.tenancy, host_sample)
    if lb.get("lb_health") or lb.get("lb_metrics") or lb.get("lb_bans"):
        _record_lb(ctx, host_id, lb)
    if lb.get("guest_info") or lb.get("dhcp_leases"):
        with ctx.db.session() as session:  # what changed only (agent/guestinfo.py)
            guestinfo.record_agent(session, answer.keep, lb.get("guest_info") or {})
            guestinfo.record_leases(session, lb.get("dhcp_leases") or {})
    return answer


def _record_lb(ctx: Context, host_id: str, lb: dict[str, Any]) -> None:
    """The host's load balancers' member health (statuses and events, ``lbaas.health``), the
    guard's bans (events, ``lbaas.bans``) and their statistics for the store, labelled with the
    owners the database gives them; the ones it runs that are placed elsewhere are stopped there
    (``lbaas.failover.remove_strays``)."""
    with ctx.db.session() as session:
        owners = lb_health.owners_on(session, host_id)
        lb_health.apply_report(session, owners, lb.get("lb_health") or {})
        lb_bans.record_bans(session, host_id, owners, lb.get("lb_bans") or {})
        lb_failover.remove_strays(session, host_id, list(lb.get("lb_health") or {}))
    if ctx.monitoring is not None and lb.get("lb_metrics"):
        ctx.monitoring.record_lb(host_id, int(time.time() * 1000), lb["lb_metrics"], owners)


async def claim(ctx: Context, node: Principal, wait_s: float) -> list[dict[str, Any]]:
    """Long-poll: the host's operations as soon as one is queued, or none after ``wait_s``."""
    queued = hostops.queued_event(node.user_id)
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        queued.clear()  # before looking, so an operation queued meanwhile still wakes us
        ops = await anyio.to_thread.run_sync(hostops.claim, ctx, node.user_id)
        remaining = deadline - asyncio.get_running_loop().time()
        if ops or remaining <= 0:
            return ops
        await anyio.to_thread.run_sync(queued.wait, min(remaining, hostops.POLL_S))


def complete(
    ctx: Context,
    node: Principal,
    op_id: str,
    result: dict[str, Any] | None,
    error: str | None,
    spans: list[dict[str, Any]] | None = None,
) -> None:
    """The agent's answer to an operation it runs, with its spans of the operation's trace (stored
    first, so the trace is whole when the task that waited for the answer goes on)."""
    store = ctx.trace_store
    if spans and store is not None:
        trace_id = tracing.trace_id_of(hostops.running_traceparent(ctx, node.user_id, op_id))
        if trace_id is not None:
            store.ingest_agent_spans(spans, trace_id, node.username)
    if not hostops.complete(ctx, node.user_id, op_id, result, error):
        raise Conflict(f"Operation '{op_id}' is not running on this host.")


def progress(ctx: Context, node: Principal, op_id: str, detail: dict[str, Any]) -> bool:
    """A long operation's progress, shown on its task; True when the user asked to cancel it."""
    return hostops.progress(ctx, node.user_id, op_id, detail)


def _snapshot_asked(ctx: Context, host_id: str, image_id: str) -> bool:
    with ctx.db.read_session() as s:
        image = s.get(Image, image_id)
        ops = s.scalars(
            select(HostOperation).where(
                HostOperation.host_id == host_id,
                HostOperation.op == "snapshot",
                HostOperation.state == "running",
            )
        )
        wanted = any(op.payload.get("image_id") == image_id for op in ops)
        return wanted and image is not None and image.status == "importing"


async def receive_snapshot(
    ctx: Context, node: Principal, image_id: str, chunks: AsyncIterator[bytes], checksum: str
) -> None:
    """Store the flattened disk of a snapshot this host was asked to take (and only that one)."""
    if not await anyio.to_thread.run_sync(_snapshot_asked, ctx, node.user_id, image_id):
        detail = f"No snapshot of image '{image_id}' is being taken on this host."
        raise NotFound("snapshot", image_id, detail=detail)
    dest = storage.image_disk(ctx.settings, image_id)
    _, sha = await receive_upload(chunks, dest)
    if sha != checksum:
        dest.unlink(missing_ok=True)
        raise InvalidInput(
            "X-Checksum-SHA256", "the disk arrived corrupted (sha256 mismatch); send it again", part="header"
        )
