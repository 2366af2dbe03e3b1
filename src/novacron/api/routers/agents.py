"""Node agents: join tokens for operators, and the calls agents make over HTTPS."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, PlainTextResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from novacron.agent.control import facts_of
from novacron.api.audit import READ_ONLY_KEY, audit_detail, audit_hint
from novacron.api.deps import CtxDep, require, service
from novacron.api.errors import Problem
from novacron.api.transport import body_limit
from novacron.compute import agentcalls, nodes
from novacron.compute.imagesvc import ImageService
from novacron.compute.nodes import JoinGrant, NodeService
from novacron.identity.principal import Principal

#: a host's report lists every VM of the host with its samples: larger than a user's document
AGENT_BODY_LIMIT = 16 << 20

router = APIRouter(tags=["agents"])

NodeWriter = Annotated[NodeService, Depends(service(NodeService, "host:write"))]
IsAgent = Annotated[Principal, Depends(require("agent"))]
ImageReader = Annotated[ImageService, Depends(service(ImageService, "image:read", write=False))]
NAME = r"^[a-z0-9]([a-z0-9.-]{0,126}[a-z0-9])?$"


class JoinTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ttl_s: int = Field(default=3600, ge=60, le=7 * 24 * 3600, description="how long the token may be used")


class JoinTokenOut(BaseModel):
    join_token: str
    expires_at: datetime
    ca_fingerprint: str
    command: str
    #: set on a re-key token: the only host it can join as
    host_id: str | None = None

    @classmethod
    def of(cls, grant: JoinGrant) -> JoinTokenOut:
        return cls(
            join_token=grant.join_token,
            expires_at=grant.expires_at,
            ca_fingerprint=grant.ca_fingerprint,
            command=grant.command,
            host_id=grant.host_id,
        )


class JoinRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    join_token: str = Field(min_length=8, max_length=200)
    name: str = Field(pattern=NAME, description="the host's name, unique in the cluster")


class JoinOut(BaseModel):
    host_id: str
    credential: str


def _finite(value: Any) -> Any:
    # JSON bodies may carry NaN and Infinity (Python's parser takes them); stored, they would make
    # a tenant's task or metrics unreadable (no JSON answer can carry them back out)
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        raise ValueError("numbers must be finite (no NaN or Infinity)") from None
    return value


Finite = AfterValidator(_finite)


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    driver: Literal["qemu", "simulated"]
    facts: dict[str, Any]


class ReportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    power_states: dict[str, str] = Field(default_factory=dict)
    samples: Annotated[dict[str, dict[str, Any]], Finite] = Field(default_factory=dict)
    age_s: float = Field(default=0.0, ge=0, le=3600, description="how long ago the observation began")
    host: Annotated[dict[str, Any] | None, Finite] = Field(
        default=None, description="the host's own sample (CPU by mode, memory, load, disk, NICs)"
    )
    lb_health: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description='members by load balancer: {lb id: {"<pool id>/<member id>": UP|DOWN|MAINT|NO_CHECK}}',
    )
    lb_bans: Annotated[dict[str, list[dict[str, Any]]], Finite] = Field(
        default_factory=dict, description="the abuse guard's bans since the last report, by load balancer"
    )
    lb_metrics: Annotated[dict[str, list[tuple[str, dict[str, str], float]]], Finite] = Field(
        default_factory=dict,
        description="statistics by load balancer: [series, labels, value] from HAProxy's exporter",
        max_length=10_000,
    )
    guest_info: Annotated[dict[str, dict[str, Any]], Finite] = Field(
        default_factory=dict,
        description="what changed of each guest's own account (qemu-guest-agent); {}: no agent answers now",
        max_length=10_000,
    )
    dhcp_leases: dict[str, str] = Field(
        default_factory=dict,
        description="MAC -> IPv4 leased by the DHCP servers on this host",
        max_length=100_000,
    )


class ClaimRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    wait_s: float = Field(default=0, ge=0, le=30)


class CompleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(max_length=120)
    result: Annotated[dict[str, Any] | None, Finite] = None
    error: str | None = Field(default=None, max_length=4000)
    #: the agent's finished spans of the operation's trace (``tracing.record_of``); only those of
    #: that trace are kept
    spans: Annotated[list[dict[str, Any]] | None, Finite] = Field(default=None, max_length=2000)


@router.post("/v1/hosts/join-tokens", status_code=201, response_model=JoinTokenOut, tags=["hosts"])
def create_join_token(body: JoinTokenRequest, hosts: NodeWriter) -> JoinTokenOut:
    return JoinTokenOut.of(hosts.join_token(body.ttl_s))


@router.post("/v1/hosts/{host_id}/rejoin-token", status_code=201, response_model=JoinTokenOut, tags=["hosts"])
def create_rejoin_token(host_id: str, body: JoinTokenRequest, hosts: NodeWriter) -> JoinTokenOut:
    """A one-time token that re-keys this host (after a reinstall): the agent joining with it gets
    the host's identity and a new credential, and the old credential stops working at once."""
    return JoinTokenOut.of(hosts.rejoin_token(host_id, body.ttl_s))


@router.post("/v1/hosts/{host_id}/revoke", status_code=204, tags=["hosts"])
def revoke_host(host_id: str, hosts: NodeWriter) -> Response:
    hosts.revoke(host_id)
    return Response(status_code=204)


@router.get("/v1/agents/ca", response_class=PlainTextResponse)
def platform_ca(ctx: CtxDep) -> PlainTextResponse:
    """The platform CA (public); agents check it against the fingerprint printed with their join token."""
    if ctx.agent_listener is None:
        raise Problem(404, "Not Found", "This server has no agent listener (HTTPS) configured.")
    return PlainTextResponse(ctx.agent_listener.tls.ca_cert.read_text(), media_type="application/x-pem-file")


@router.post("/v1/agents/join", response_model=JoinOut)
def join(body: JoinRequest, request: Request, ctx: CtxDep) -> JoinOut:
    """Spend a join token. A plain token adds a new host only (an existing host's name is refused
    with 409); a re-key token from 'POST /v1/hosts/{id}/rejoin-token' replaces that host's credential."""
    token_id = nodes.token_id_of(body.join_token)
    audit_hint(request, actor_name=f"join-token:{token_id}" if token_id else "join-token")
    try:
        host_id, credential = nodes.join(ctx.db, body.join_token, body.name)
    except nodes.JoinRefused as exc:
        audit_hint(request, resource_id=exc.host_id)
        audit_detail(request, {"name": body.name, "reason": exc.detail})
        raise
    audit_hint(request, resource_id=host_id)
    return JoinOut(host_id=host_id, credential=credential)


@router.post("/v1/agent/register")
@body_limit(AGENT_BODY_LIMIT)
def register(body: RegisterRequest, ctx: CtxDep, node: IsAgent) -> dict[str, str]:
    try:
        facts = facts_of(body.facts)
    except (KeyError, ValueError, TypeError) as exc:
        raise Problem(
            422, "Invalid request", f"body.facts: {exc}", errors=[{"field": "body.facts", "reason": str(exc)}]
        ) from exc
    return {"host_id": agentcalls.register(ctx, node, body.driver, facts)}


def _heartbeat(request: Request) -> None:
    """Reports and claims are a host's heartbeat, not changes: not audited (a refused credential
    still is). Every audited request moves the one audit-chain head; at 200 hosts the heartbeats
    were 120 records a second waiting 410 ms each on that row (bench/bench_scale.py)."""
    request.scope.setdefault("state", {})[READ_ONLY_KEY] = True


@router.post("/v1/agent/report", dependencies=[Depends(_heartbeat)])
@body_limit(AGENT_BODY_LIMIT)
def report(body: ReportRequest, ctx: CtxDep, node: IsAgent) -> dict[str, Any]:
    """The answer names the instances the host keeps and renews its self-fencing lease: the agent
    hard-stops its VMs if no report is accepted within ``lease_s`` (0: not armed, no HA VM here)."""
    lb = {"lb_health": body.lb_health, "lb_bans": body.lb_bans, "lb_metrics": body.lb_metrics}
    lb |= {"guest_info": body.guest_info, "dhcp_leases": body.dhcp_leases}
    answer = agentcalls.report(ctx, node, body.power_states, body.samples, body.age_s, body.host, lb)
    return {"keep": sorted(answer.keep), "lease_s": answer.lease_s}


@router.post("/v1/agent/claim", dependencies=[Depends(_heartbeat)])
async def claim(body: ClaimRequest, ctx: CtxDep, node: IsAgent) -> dict[str, list[dict[str, Any]]]:
    """Long-poll: answers as soon as an operation is queued for the host, or after ``wait_s``."""
    return {"operations": await agentcalls.claim(ctx, node, body.wait_s)}


@router.post("/v1/agent/complete", status_code=204)
@body_limit(AGENT_BODY_LIMIT)
def complete(body: CompleteRequest, ctx: CtxDep, node: IsAgent) -> Response:
    agentcalls.complete(ctx, node, body.id, body.result, body.error, body.spans)
    return Response(status_code=204)


class ProgressRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(max_length=120)
    detail: Annotated[dict[str, Any], Finite] = Field(default_factory=dict)


@router.post("/v1/agent/progress")
def progress(body: ProgressRequest, ctx: CtxDep, node: IsAgent) -> dict[str, bool]:
    """A long operation's progress, shown on its task; the answer says whether to cancel it."""
    return {"cancel": agentcalls.progress(ctx, node, body.id, body.detail)}


@router.get("/v1/images/{image_id}/{part}", response_class=FileResponse, tags=["images"])
def download_image(
    image_id: str, part: Literal["file", "kernel", "initrd"], images: ImageReader
) -> FileResponse:
    """The image's disk (or kernel/initrd): agents fetch what their VMs need; tenants their own."""
    return FileResponse(images.part_file(image_id, part), media_type="application/octet-stream")
