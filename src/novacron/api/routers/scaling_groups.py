"""/v1/scaling-groups: groups of identical VMs kept at a desired count, with their members and
activity history.

A create or a new desired count answers at once; the group's ``scalinggroup.scale`` task does the
work and its activity (``/activities``) says why and how it ended.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.concurrency import check_if_match, set_etag
from novacron.api.deps import IdempotencyDep, service
from novacron.api.listing import Page, list_query
from novacron.api.routers.hosts import Labels
from novacron.autoscaling.groups import (
    MAX_GROUP_SIZE,
    GroupChange,
    GroupSpec,
    GroupView,
    NicTemplate,
    PoolRef,
    ScalingGroupService,
)
from novacron.autoscaling.lifecycle import ActionView, HookSpec, LifecycleHookService
from novacron.db.listing import ListParams
from novacron.db.models import ScalingActivity, ScalingGroupMember, ScalingLifecycleHook

router = APIRouter(prefix="/v1/scaling-groups", tags=["scaling groups"])

Reader = Annotated[
    ScalingGroupService, Depends(service(ScalingGroupService, "scaling-group:read", write=False))
]
Writer = Annotated[ScalingGroupService, Depends(service(ScalingGroupService, "scaling-group:write"))]
HookReader = Annotated[
    LifecycleHookService, Depends(service(LifecycleHookService, "scaling-group:read", write=False))
]
HookWriter = Annotated[LifecycleHookService, Depends(service(LifecycleHookService, "scaling-group:write"))]
GroupList = Annotated[ListParams, Depends(list_query(("created_at", "name")))]
ActivityList = Annotated[ListParams, Depends(list_query(("started_at",), default_sort="-started_at"))]

#: DNS-style and short: a member VM is named ``<group>-<6 hex>``
NAME = r"^[a-z0-9]([a-z0-9-]{0,46}[a-z0-9])?$"
Size = Annotated[int, Field(ge=0, le=MAX_GROUP_SIZE)]
Seconds = Annotated[int, Field(ge=0, le=86400)]
#: a leaving member's sessions may keep it in its pools at most this long (HAProxy's own bound)
DrainSeconds = Annotated[int, Field(ge=0, le=3600)]
Termination = Literal["oldest", "newest", "spread"]


class NicIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    network: str = Field(min_length=1, max_length=64, description="network id or name")
    security_groups: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=16, description="default: 'default'"
    )


class PoolIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pool_id: str = Field(min_length=1, max_length=64, description="a pool of one of your load balancers")
    protocol_port: int = Field(ge=1, le=65535, description="the port members serve on")


class ScalingGroupCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME, description="unique in the project; members are named <name>-<hex>")
    project_id: str | None = Field(default=None, max_length=40)
    image: str = Field(min_length=1, max_length=128, description="image id or name")
    flavor: str = Field(min_length=1, max_length=64, description="flavor id or name")
    networks: list[NicIn] = Field(default_factory=list, max_length=8)
    user_data: str = Field(default="", max_length=65536, description="cloud-init user-data")
    labels: Labels = Field(default_factory=dict, max_length=32)
    min_size: Size = 0
    max_size: Size
    desired: Size
    lb_pools: list[PoolIn] = Field(default_factory=list, max_length=8)
    termination_policy: Termination = "oldest"
    cooldown_s: Seconds = 300
    warmup_s: Seconds = 120
    drain_timeout_s: DrainSeconds = 30


class ScalingGroupUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_size: Size | None = None
    max_size: Size | None = None
    desired: Size | None = None
    termination_policy: Termination | None = None
    cooldown_s: Seconds | None = None
    warmup_s: Seconds | None = None
    drain_timeout_s: DrainSeconds | None = None
    reason: str | None = Field(default=None, max_length=500, description="recorded in the activity")
    honor_cooldown: bool = Field(default=False, description="refuse a new desired count while cooling down")
    image: str | None = Field(default=None, min_length=1, max_length=128, description="template: image")
    flavor: str | None = Field(default=None, min_length=1, max_length=64, description="template: flavor")
    networks: list[NicIn] | None = Field(default=None, max_length=8, description="template: NICs")
    user_data: str | None = Field(default=None, max_length=65536, description="template: user-data")
    labels: Labels | None = Field(default=None, max_length=32, description="template: labels")


class RefreshIn(BaseModel):
    """Start an instance refresh, after changing the template fields given (each optional)."""

    model_config = ConfigDict(extra="forbid")
    max_surge: int = Field(default=1, ge=0, le=MAX_GROUP_SIZE, description="VMs above desired allowed")
    max_unavailable: int = Field(
        default=0, ge=0, le=MAX_GROUP_SIZE, description="members in service that may be missing below desired"
    )
    image: str | None = Field(default=None, min_length=1, max_length=128)
    flavor: str | None = Field(default=None, min_length=1, max_length=64)
    networks: list[NicIn] | None = Field(default=None, max_length=8)
    user_data: str | None = Field(default=None, max_length=65536)
    labels: Labels | None = Field(default=None, max_length=32)


class ProtectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    protected: bool = Field(description="true: never chosen by a scale-in")


class ScalingGroupOut(BaseModel):
    id: str
    name: str
    project_id: str
    tenant_id: str
    template: dict[str, Any]
    min_size: int
    max_size: int
    desired: int
    lb_pools: list[dict[str, Any]]
    termination_policy: str
    cooldown_s: int
    warmup_s: int
    drain_timeout_s: int
    server_group_id: str | None
    status: str
    #: the scale or refresh task in flight, or the last one
    task_id: str | None
    #: raised by each template change; members of an older one are replaced by a refresh
    template_version: int
    #: members per state: launching, in_service, leaving
    members: dict[str, int]
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, view: GroupView) -> ScalingGroupOut:
        g = view.group
        fields = {n: getattr(g, n) for n in cls.model_fields if n != "members"}
        return cls(**fields, members=view.counts)


class WaitOut(BaseModel):
    """The lifecycle action a member waits on (its token goes to the hook's receiver only)."""

    hook: str
    transition: str
    started_at: str
    deadline: datetime | None
    delivered: bool
    attempts: int
    delivery_error: str | None


class MemberOut(BaseModel):
    vm_id: str
    #: launching, pending_launch, in_service, leaving, pending_terminate
    state: str
    protected_from_scale_in: bool
    #: the group's template version its VM was launched from
    template_version: int
    launched_at: datetime
    health: str
    health_reason: str | None
    #: while pending_launch / pending_terminate: the hook awaited
    waiting_on: WaitOut | None = None

    @classmethod
    def of(cls, m: ScalingGroupMember) -> MemberOut:
        fields = {n: getattr(m, n) for n in cls.model_fields if n != "waiting_on"}
        waiting = None
        if m.state.startswith("pending_") and m.action.get("hook"):
            a = m.action
            waiting = WaitOut(
                hook=a["hook"], transition=a.get("transition", ""), started_at=a.get("started_at", ""),
                deadline=m.action_deadline, delivered=bool(a.get("delivered")),
                attempts=int(a.get("attempts", 0)), delivery_error=a.get("delivery_error"),
            )  # fmt: skip
        return cls(**fields, waiting_on=waiting)


class HookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME, description="unique in the group; hooks are called in name order")
    transition: Literal["launching", "terminating"] = Field(
        description="launching: after the VM runs, before it joins the pools; terminating: after the drain"
    )
    url: str = Field(min_length=1, max_length=2048, description="http(s), must pass the egress guard")
    secret: str = Field(
        min_length=16, max_length=256, description="HMAC key of the NovaCron-Signature header; write-only"
    )
    timeout_s: int = Field(default=300, ge=1, le=7200, description="how long the group waits for an answer")
    default_result: Literal["continue", "abandon"] = Field(
        default="continue", description="what applies when no answer came in time"
    )


class HookOut(BaseModel):
    id: str
    group_id: str
    name: str
    transition: str
    #: without user:password or query (the URL is sealed at rest, as a credential may be in it)
    url: str
    timeout_s: int
    default_result: str
    created_at: datetime

    @classmethod
    def of(cls, h: ScalingLifecycleHook) -> HookOut:
        fields = {n: getattr(h, n) for n in cls.model_fields if n != "url"}
        return cls(**fields, url=h.safe_url)


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=64, description="the token of the event the hook received")
    result: Literal["continue", "abandon"]


class ActionOut(BaseModel):
    vm_id: str
    hook: str
    transition: str
    result: str
    #: the member's state now
    state: str

    @classmethod
    def of(cls, a: ActionView) -> ActionOut:
        return cls(vm_id=a.vm_id, hook=a.hook, transition=a.transition, result=a.result, state=a.state)


class ActivityOut(BaseModel):
    id: str
    action: str
    reason: str
    policy: str | None
    numbers: dict[str, Any]
    task_id: str | None
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    detail: str | None

    @classmethod
    def of(cls, a: ScalingActivity) -> ActivityOut:
        return cls(**{n: getattr(a, n) for n in cls.model_fields})


def _nics(body: list[NicIn]) -> tuple[NicTemplate, ...]:
    return tuple(
        NicTemplate(n.network, tuple(n.security_groups) if n.security_groups is not None else None)
        for n in body
    )


def _change(body: ScalingGroupUpdate | RefreshIn) -> GroupChange:
    fields = body.model_dump(exclude={"networks", "max_surge", "max_unavailable"})
    nics = _nics(body.networks) if body.networks is not None else None
    return GroupChange(**fields, networks=nics)


def _spec(body: ScalingGroupCreate) -> GroupSpec:
    fields = body.model_dump(exclude={"networks", "lb_pools"})
    nics = _nics(body.networks)
    pools = tuple(PoolRef(p.pool_id, p.protocol_port) for p in body.lb_pools)
    return GroupSpec(**fields, networks=nics, lb_pools=pools)


@router.get("", response_model=Page[ScalingGroupOut])
def list_groups(
    groups: Reader, page: GroupList, name: str | None = None, project_id: str | None = None
) -> Page[ScalingGroupOut]:
    rows, nxt = groups.list(page, name=name, project_id=project_id)
    return Page[ScalingGroupOut](items=[ScalingGroupOut.of(v) for v in rows], next_cursor=nxt)


@router.post("", status_code=201, response_model=ScalingGroupOut)
def create_group(body: ScalingGroupCreate, groups: Writer, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    group = groups.create(_spec(body))
    return idem.created(ScalingGroupOut.of(groups.view(group)), group)


@router.get("/{group_id}", response_model=ScalingGroupOut)
def get_group(group_id: str, response: Response, groups: Reader) -> ScalingGroupOut:
    group = groups.get(group_id)
    set_etag(response, group)
    return ScalingGroupOut.of(groups.view(group))


@router.patch("/{group_id}", response_model=ScalingGroupOut)
def update_group(
    group_id: str, body: ScalingGroupUpdate, request: Request, response: Response, groups: Writer
) -> ScalingGroupOut:
    group = groups.get(group_id)
    check_if_match(request, group)
    groups.update(group, _change(body))
    set_etag(response, group)
    return ScalingGroupOut.of(groups.view(group))


@router.post("/{group_id}/refresh", status_code=202, response_model=ActivityOut)
def refresh_group(
    group_id: str, body: RefreshIn, request: Request, groups: Writer, idem: IdempotencyDep
) -> Response:
    """Change the template fields given, then replace every member of an older template version in
    batches within ``max_surge`` / ``max_unavailable``; the answer is the refresh activity (its
    ``task_id`` follows the progress). 409 while the group has a task in flight."""
    if (replay := idem.replay(body)) is not None:
        return replay
    group = groups.get(group_id)
    check_if_match(request, group)
    out = ActivityOut.of(groups.refresh(group, _change(body), body.max_surge, body.max_unavailable))
    payload = out.model_dump(mode="json")
    idem.remember(202, payload)
    location = f"/v1/tasks/{out.task_id}"
    return JSONResponse(payload, status_code=202, headers={"Location": location})


@router.delete("/{group_id}", status_code=202, response_model=ActivityOut)
def delete_group(group_id: str, request: Request, groups: Writer) -> ActivityOut:
    """Scale to zero (draining the pools first), then the group goes; the answer is the activity."""
    group = groups.get(group_id)
    check_if_match(request, group)
    return ActivityOut.of(groups.delete(group))


@router.get("/{group_id}/members", response_model=list[MemberOut])
def list_members(group_id: str, groups: Reader) -> list[MemberOut]:
    return [MemberOut.of(m) for m in groups.members(groups.get(group_id))]


@router.put("/{group_id}/members/{vm_id}/protection", response_model=MemberOut)
def set_protection(group_id: str, vm_id: str, body: ProtectionIn, groups: Writer) -> MemberOut:
    """Set or clear the member's scale-in protection (PUT: the same body twice is the same state)."""
    return MemberOut.of(groups.protect(groups.get(group_id), vm_id, body.protected))


@router.get("/{group_id}/activities", response_model=Page[ActivityOut])
def list_activities(group_id: str, groups: Reader, page: ActivityList) -> Page[ActivityOut]:
    rows, nxt = groups.activities(groups.get(group_id), page)
    return Page[ActivityOut](items=[ActivityOut.of(a) for a in rows], next_cursor=nxt)


@router.get("/{group_id}/lifecycle-hooks", response_model=list[HookOut])
def list_hooks(group_id: str, hooks: HookReader) -> list[HookOut]:
    """The group's lifecycle hooks (their secrets are never shown)."""
    return [HookOut.of(h) for h in hooks.list(group_id)]


@router.post("/{group_id}/lifecycle-hooks", status_code=201, response_model=HookOut)
def create_hook(group_id: str, body: HookIn, hooks: HookWriter, idem: IdempotencyDep) -> Response:
    """A webhook called, signed, on each launch or termination of a member; the group waits for its
    answer (``/lifecycle-actions``) up to ``timeout_s``, then applies ``default_result``."""
    if (replay := idem.replay(body)) is not None:
        return replay
    hook = hooks.create(group_id, HookSpec(**body.model_dump()))
    return idem.created(HookOut.of(hook), hook)


@router.delete("/{group_id}/lifecycle-hooks/{hook_id}", status_code=204)
def delete_hook(group_id: str, hook_id: str, hooks: HookWriter) -> Response:
    hooks.delete(group_id, hook_id)
    return Response(status_code=204)


@router.post("/{group_id}/lifecycle-actions", response_model=ActionOut)
def complete_action(group_id: str, body: ActionIn, hooks: HookWriter, idem: IdempotencyDep) -> Response:
    """Answer a lifecycle action with the token its event carried: continue or abandon (the same
    answer twice is one answer; another answer to a decided action is a 409)."""
    if (replay := idem.replay(body)) is not None:
        return replay
    payload = ActionOut.of(hooks.complete(group_id, body.token, body.result)).model_dump(mode="json")
    idem.remember(200, payload)
    return JSONResponse(payload)
