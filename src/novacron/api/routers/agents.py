"""Node agents: join tokens for operators, and the calls agents make over HTTPS."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, PlainTextResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from novacron.agent.control import facts_of
from novacron.api.audit import audit_detail, audit_hint
from novacron.api.deps import CtxDep, ReadSessionDep, SessionDep, require
from novacron.api.errors import Problem, not_found
from novacron.api.transport import body_limit
from novacron.compute import hostops, nodes, reports, storage
from novacron.compute.scope import get_visible
from novacron.db.models import Host, Image, NodeCredential
from novacron.identity.principal import Principal

if TYPE_CHECKING:
    from novacron.context import Context

#: a host's report lists every VM of the host with its samples: larger than a user's document
AGENT_BODY_LIMIT = 16 << 20

router = APIRouter(tags=["agents"])

CanHostWrite = Annotated[Principal, Depends(require("host:write"))]
IsAgent = Annotated[Principal, Depends(require("agent"))]
CanImageRead = Annotated[Principal, Depends(require("image:read"))]
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


class ClaimRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    wait_s: float = Field(default=0, ge=0, le=30)


class CompleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(max_length=120)
    result: Annotated[dict[str, Any] | None, Finite] = None
    error: str | None = Field(default=None, max_length=4000)


def _join_token_out(
    ctx: Context, user_id: str, ttl_s: int, host_id: str | None = None, name: str = ""
) -> JoinTokenOut:
    """A join token (bound to ``host_id`` when re-keying it) and the command that spends it."""
    token, row = nodes.create_join_token(ctx.db, user_id, timedelta(seconds=ttl_s), host_id)
    fingerprint = ctx.extras.get("ca_fingerprint", "")
    server = ctx.extras.get("agent_url", "https://<server>:8443")
    named = f" --name {name}" if name else ""
    return JoinTokenOut(
        join_token=token,
        expires_at=row.expires_at,
        ca_fingerprint=fingerprint,
        command=f"novacron agent --server {server}{named} --join-token {token} "
        f"--ca-fingerprint {fingerprint}",
        host_id=host_id,
    )


@router.post("/v1/hosts/join-tokens", status_code=201, response_model=JoinTokenOut, tags=["hosts"])
def create_join_token(body: JoinTokenRequest, ctx: CtxDep, principal: CanHostWrite) -> JoinTokenOut:
    return _join_token_out(ctx, principal.user_id, body.ttl_s)


@router.post("/v1/hosts/{host_id}/rejoin-token", status_code=201, response_model=JoinTokenOut, tags=["hosts"])
def create_rejoin_token(
    host_id: str, body: JoinTokenRequest, ctx: CtxDep, session: SessionDep, principal: CanHostWrite
) -> JoinTokenOut:
    """A one-time token that re-keys this host (after a reinstall): the agent joining with it gets
    the host's identity and a new credential, and the old credential stops working at once."""
    host = session.scalar(select(Host).where((Host.id == host_id) | (Host.name == host_id)))
    if host is None:
        raise not_found("host", host_id)
    if session.get(NodeCredential, host.id) is None:
        # the embedded agent runs inside the server and has no credential to replace: a token for
        # its host would let a remote process pose as it
        raise Problem(
            409, "Conflict", f"Host '{host.name}' has no agent credential (the embedded agent has none)."
        )
    hid, name = host.id, host.name
    session.close()
    return _join_token_out(ctx, principal.user_id, body.ttl_s, hid, name)


@router.post("/v1/hosts/{host_id}/revoke", status_code=204, tags=["hosts"])
def revoke_host(host_id: str, ctx: CtxDep, session: SessionDep, principal: CanHostWrite) -> Response:
    host = session.scalar(select(Host).where((Host.id == host_id) | (Host.name == host_id)))
    if host is None:
        raise not_found("host", host_id)
    hid = host.id
    session.close()
    if not nodes.revoke(ctx.db, hid):
        raise Problem(
            409, "Conflict", f"Host '{host_id}' has no agent credential (the embedded agent has none)."
        )
    return Response(status_code=204)


@router.get("/v1/agents/ca", response_class=PlainTextResponse)
def platform_ca(ctx: CtxDep) -> PlainTextResponse:
    """The platform CA (public); agents check it against the fingerprint printed with their join token."""
    tls = ctx.extras.get("tls")
    if tls is None:
        raise Problem(404, "Not Found", "This server has no agent listener (HTTPS) configured.")
    return PlainTextResponse(tls.ca_cert.read_text(), media_type="application/x-pem-file")


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
    host_id = reports.register_host(ctx.db, node.username, body.driver, facts)
    hostops.requeue_unanswered(ctx, host_id)
    return {"host_id": host_id}


@router.post("/v1/agent/report")
@body_limit(AGENT_BODY_LIMIT)
def report(body: ReportRequest, ctx: CtxDep, node: IsAgent) -> dict[str, Any]:
    """The answer names the instances the host keeps and renews its self-fencing lease: the agent
    hard-stops its VMs if no report is accepted within ``lease_s`` (0: not armed, no HA VM here)."""
    answer = reports.apply_report(
        ctx.db,
        ctx.metrics,
        node.user_id,
        body.power_states,
        body.samples,
        body.age_s,
        lease_s=ctx.settings.ha_lease_s,
    )
    return {"keep": sorted(answer.keep), "lease_s": answer.lease_s}


@router.post("/v1/agent/claim")
async def claim(body: ClaimRequest, ctx: CtxDep, node: IsAgent) -> dict[str, list[dict[str, Any]]]:
    """Long-poll: answers as soon as an operation is queued for the host, or after ``wait_s``."""
    queued = hostops.queued_event(node.user_id)
    deadline = asyncio.get_running_loop().time() + body.wait_s
    while True:
        queued.clear()  # before looking, so an operation queued meanwhile still wakes us
        ops = await run_in_threadpool(hostops.claim, ctx, node.user_id)
        remaining = deadline - asyncio.get_running_loop().time()
        if ops or remaining <= 0:
            return {"operations": ops}
        await run_in_threadpool(queued.wait, min(remaining, hostops.POLL_S))


@router.post("/v1/agent/complete", status_code=204)
@body_limit(AGENT_BODY_LIMIT)
def complete(body: CompleteRequest, ctx: CtxDep, node: IsAgent) -> Response:
    if not hostops.complete(ctx, node.user_id, body.id, body.result, body.error):
        raise Problem(409, "Conflict", f"Operation '{body.id}' is not running on this host.")
    return Response(status_code=204)


class ProgressRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(max_length=120)
    detail: Annotated[dict[str, Any], Finite] = Field(default_factory=dict)


@router.post("/v1/agent/progress")
def progress(body: ProgressRequest, ctx: CtxDep, node: IsAgent) -> dict[str, bool]:
    """A long operation's progress, shown on its task; the answer says whether to cancel it."""
    return {"cancel": hostops.progress(ctx, node.user_id, body.id, body.detail)}


@router.get("/v1/images/{image_id}/{part}", response_class=FileResponse, tags=["images"])
def download_image(
    image_id: str,
    part: Literal["file", "kernel", "initrd"],
    ctx: CtxDep,
    session: ReadSessionDep,
    principal: CanImageRead,
) -> FileResponse:
    """The image's disk (or kernel/initrd): agents fetch what their VMs need; tenants their own."""
    if principal.kind == "node":
        # a host's agent reads the images of its own VMs only; any other looks unknown
        image = session.get(Image, image_id)
        if image is None or not hostops.host_needs_image(session, principal.user_id, image):
            raise not_found("image", image_id)
    else:
        image = get_visible(session, Image, image_id, principal, "image")
    path = {"file": storage.image_disk, "kernel": storage.image_kernel, "initrd": storage.image_initrd}[part](
        ctx.settings, image.id
    )
    if not path.exists():
        raise Problem(404, "Not Found", f"Image '{image.name}' has no {part} uploaded.")
    return FileResponse(path, media_type="application/octet-stream")
