"""/v1/scaling-groups/{id}/policies: the rules that set a group's desired count from its metrics,
a forecast or the clock, evaluated on the server (``autoscaling/evaluate.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.concurrency import check_if_match, set_etag
from novacron.api.deps import IdempotencyDep, service
from novacron.autoscaling.group_policies import PolicyChange, PolicySpec, ScalingPolicyService
from novacron.db.models import ScalingPolicy

router = APIRouter(prefix="/v1/scaling-groups/{group_id}/policies", tags=["scaling groups"])

Reader = Annotated[
    ScalingPolicyService, Depends(service(ScalingPolicyService, "scaling-group:read", write=False))
]
Writer = Annotated[ScalingPolicyService, Depends(service(ScalingPolicyService, "scaling-group:write"))]

NAME = r"^[a-z0-9]([a-z0-9-]{0,46}[a-z0-9])?$"
Kind = Literal["target_tracking", "step", "scheduled", "predictive"]
Cooldown = Annotated[int, Field(ge=0, le=86400)]
PARAMS_HELP = (
    "target_tracking: {metric: cpu|requests_per_member, target}; step: {metric, steps: [{lower, "
    "upper, change}]}; scheduled: {actions: [{at: 'HH:MM' UTC, desired, min_size, max_size (any of "
    "the three), days: [0-6]}]}; predictive: "
    "{metric, target, boot_delay_s, max_mase, max_width, max_width_vms, history_s, step_s}; any: "
    "max_cost_per_hour"
)


class PolicyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME, description="unique in the group")
    kind: Kind
    params: dict[str, Any] = Field(description=PARAMS_HELP)
    enabled: bool = True
    cooldown_s: Cooldown | None = Field(default=None, description="before a scale-in (default: the group's)")


class PolicyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    params: dict[str, Any] | None = Field(default=None, description="replaces the parameters")
    enabled: bool | None = None
    cooldown_s: Cooldown | None = None


class PolicyOut(BaseModel):
    id: str
    group_id: str
    tenant_id: str
    name: str
    kind: str
    params: dict[str, Any]
    enabled: bool
    cooldown_s: int | None
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, p: ScalingPolicy) -> PolicyOut:
        return cls(**{n: getattr(p, n) for n in cls.model_fields})


@router.get("", response_model=list[PolicyOut])
def list_policies(group_id: str, policies: Reader) -> list[PolicyOut]:
    return [PolicyOut.of(p) for p in policies.list(policies.group(group_id))]


@router.post("", status_code=201, response_model=PolicyOut)
def create_policy(group_id: str, body: PolicyCreate, policies: Writer, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    spec = PolicySpec(**body.model_dump())
    policy = policies.create(policies.group(group_id), spec)
    return idem.created(PolicyOut.of(policy), policy)


@router.get("/{policy_id}", response_model=PolicyOut)
def get_policy(group_id: str, policy_id: str, response: Response, policies: Reader) -> PolicyOut:
    policy = policies.get(policies.group(group_id), policy_id)
    set_etag(response, policy)
    return PolicyOut.of(policy)


@router.patch("/{policy_id}", response_model=PolicyOut)
def update_policy(
    group_id: str, policy_id: str, body: PolicyUpdate, request: Request, response: Response, policies: Writer
) -> PolicyOut:
    group = policies.group(group_id)
    policy = policies.get(group, policy_id)
    check_if_match(request, policy)
    policies.update(group, policy, PolicyChange(**body.model_dump()))
    set_etag(response, policy)
    return PolicyOut.of(policy)


@router.delete("/{policy_id}", status_code=204)
def delete_policy(group_id: str, policy_id: str, request: Request, policies: Writer) -> Response:
    group = policies.group(group_id)
    policy = policies.get(group, policy_id)
    check_if_match(request, policy)
    policies.delete(group, policy)
    return Response(status_code=204)
