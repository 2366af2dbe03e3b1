"""/v1/cluster/rebalance: plan (and optionally start) the live migrations that even out host load."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.deps import IdempotencyDep, ReadIdempotencyDep, service
from novacron.compute import rebalance
from novacron.compute.cluster import ClusterService, RebalanceSpec

router = APIRouter(prefix="/v1/cluster", tags=["cluster"])

Rebalancer = Annotated[ClusterService, Depends(service(ClusterService, "cluster:rebalance"))]

FIGURES = (
    "cpu: measured CPU use of the host's VMs (mean of the last 60 s of agent samples; a VM without "
    "samples counts its vCPUs) over physical cores; vcpu: allocated vCPUs over cpus x "
    "cpu_allocation_ratio; ram: allocated RAM over ram_mb x ram_allocation_ratio; load: the largest "
    "of the three; imbalance: root mean square of the three standard deviations over hosts that are up"
)


class MoveIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    vm: str = Field(max_length=64, description="VM id")
    source: str | None = Field(
        default=None, alias="from", max_length=128, description="host id the VM must still be on"
    )
    to: str = Field(max_length=128, description="target host id or name")


class RebalanceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dry_run: bool = Field(default=True, description="only plan and simulate; change nothing")
    max_moves: int = Field(default=10, ge=1, le=100, description="at most this many migrations")
    threshold: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="a VM moves only to a host at least this much less loaded (default: server setting)",
    )
    moves: list[MoveIn] | None = Field(
        default=None,
        max_length=100,
        description="apply exactly these moves (a reviewed dry run) instead of planning anew",
    )


class LoadOut(BaseModel):
    cpu: float
    vcpu: float
    ram: float
    load: float
    vms: int

    @classmethod
    def of(cls, h: rebalance.HostLoad) -> LoadOut:
        r = 4
        return cls(
            cpu=round(h.cpu, r), vcpu=round(h.vcpu, r), ram=round(h.ram, r), load=round(h.load, r), vms=h.vms
        )


class HostLoadOut(BaseModel):
    host_id: str
    name: str
    before: LoadOut
    after: LoadOut


class MoveOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    vm: str
    vm_name: str
    source: str = Field(serialization_alias="from")
    source_name: str = Field(serialization_alias="from_name")
    to: str
    to_name: str
    reason: str


class RebalanceOut(BaseModel):
    dry_run: bool
    moves: list[MoveOut]
    hosts: list[HostLoadOut]
    imbalance_before: float
    imbalance_after: float
    #: max - min of the hosts' load
    spread_before: float
    spread_after: float
    threshold: float
    cooldown_s: float
    #: VMs left alone, by reason
    skipped: dict[str, int]
    figures: str = FIGURES
    #: the live-migration tasks created (empty on a dry run)
    task_ids: list[str] = []


def _out(
    plan: rebalance.Plan, options: rebalance.Options, dry_run: bool, task_ids: list[str]
) -> RebalanceOut:
    names = {h.host_id: h.name for h in plan.before}
    after = {h.host_id: h for h in plan.after}
    return RebalanceOut(
        dry_run=dry_run,
        moves=[
            MoveOut(
                vm=m.vm_id,
                vm_name=m.vm_name,
                source=m.source,
                source_name=names.get(m.source, m.source),
                to=m.target,
                to_name=names.get(m.target, m.target),
                reason=m.reason,
            )
            for m in plan.moves
        ],
        hosts=[
            HostLoadOut(
                host_id=h.host_id, name=h.name, before=LoadOut.of(h), after=LoadOut.of(after[h.host_id])
            )
            for h in plan.before
        ],
        imbalance_before=round(plan.imbalance_before, 4),
        imbalance_after=round(plan.imbalance_after, 4),
        spread_before=round(plan.spread_before, 4),
        spread_after=round(plan.spread_after, 4),
        threshold=options.threshold,
        cooldown_s=options.cooldown_s,
        skipped=plan.skipped,
        task_ids=task_ids,
    )


@router.post("/rebalance", response_model=RebalanceOut, responses={202: {"model": RebalanceOut}})
def rebalance_cluster(
    cluster: Rebalancer,
    early: ReadIdempotencyDep,
    idem: IdempotencyDep,
    body: RebalanceRequest | None = None,
) -> Response:
    """Plan live migrations that even out CPU and RAM load across hosts; with ``dry_run: false``
    start them. Every placement filter holds in the plan (ratios, traits, aggregates, server groups,
    maintenance); recently moved and busy VMs stay; nothing moves on a balanced cluster."""
    body = body or RebalanceRequest()
    spec = RebalanceSpec(
        max_moves=body.max_moves,
        threshold=body.threshold,
        moves=None if body.moves is None else tuple((m.vm, m.source, m.to) for m in body.moves),
    )
    key_body = body.model_dump(mode="json")
    # a retry is answered before planning anew, without the write lock (planning reads only)
    if not body.dry_run and (replay := early.replay(key_body)) is not None:
        return replay
    plan, options = cluster.plan_rebalance(spec)
    if body.dry_run:
        return JSONResponse(_out(plan, options, True, []).model_dump(mode="json", by_alias=True))
    if (replay := idem.replay(key_body)) is not None:  # the same request, committed meanwhile
        return replay
    tasks = cluster.start_rebalance(plan)
    payload = _out(plan, options, False, [t.id for t in tasks]).model_dump(mode="json", by_alias=True)
    idem.remember(202, payload)
    return JSONResponse(payload, status_code=202)
