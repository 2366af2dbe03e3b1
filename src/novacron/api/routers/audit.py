"""/v1/audit: the audit log, newest first (what is recorded: ``identity/audit.py``); its
verification against the hash chain and signed checkpoints, on-demand checkpoints, and export."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from novacron.api.deps import service
from novacron.api.listing import Page
from novacron.db.listing import MAX_LIMIT
from novacron.identity.audit import AuditLog, AuditQuery
from novacron.identity.audit_chain import AuditChain

router = APIRouter(prefix="/v1/audit", tags=["audit"])

AuditReader = Annotated[AuditLog, Depends(service(AuditLog, "audit:read", write=False))]


class AuditOut(BaseModel):
    id: int
    time: datetime
    actor_id: str | None
    actor_name: str | None
    tenant_id: str | None
    action: str
    method: str
    path: str
    resource_id: str | None
    source_ip: str | None
    status_code: int
    outcome: str
    #: JSON of what the handler decided (the policy engine's decisions on a create), if anything
    detail: str | None = None


def audit_query(  # noqa: PLR0913  (a FastAPI dependency: each query parameter is an argument)
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    cursor: str | None = None,
    sort: Literal["time", "-time"] = "-time",
    actor: str | None = Query(None, description="actor id or username"),
    action: str | None = None,
    outcome: Literal["success", "denied", "failed"] | None = None,
    tenant_id: str | None = None,
    resource_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> AuditQuery:
    """The audit list's query parameters (its cursor is a record id: ids grow with time)."""
    return AuditQuery(limit, cursor, sort, actor, action, outcome, tenant_id, resource_id, since, until)


@router.get("", response_model=Page[AuditOut])
def list_audit(log: AuditReader, query: Annotated[AuditQuery, Depends(audit_query)]) -> Page[AuditOut]:
    """The audit log, newest first: a tenant-admin sees its tenant's records, an admin all."""
    rows, nxt = log.list(query)
    return Page[AuditOut](
        items=[AuditOut.model_validate(r, from_attributes=True) for r in rows], next_cursor=nxt
    )


AuditProver = Annotated[AuditChain, Depends(service(AuditChain, "audit:verify", write=False))]
AuditSigner = Annotated[AuditChain, Depends(service(AuditChain, "audit:verify"))]


class AuditProblemOut(BaseModel):
    #: edited, deleted, inserted, truncated or checkpoint
    kind: str
    detail: str
    #: the record concerned (None for missing positions and checkpoints without one)
    record_id: int | None
    #: the chain position concerned
    seq: int | None


class CheckpointOut(BaseModel):
    id: int
    count: int
    head_hash: str
    time: datetime
    kid: str


class AuditVerificationOut(BaseModel):
    #: no problem found: no record edited, deleted or inserted, no tail cut, every checkpoint sound
    ok: bool
    #: records in the chain walked
    records: int
    #: what the chain's head row says
    head_count: int
    head_hash: str
    #: checkpoints whose signature verified
    checkpoints: int
    last_checkpoint: CheckpointOut | None
    #: records written after the last checkpoint (chained; no signature covers them yet)
    unsigned: int
    problems: list[AuditProblemOut]


@router.get("/verify", response_model=AuditVerificationOut)
def verify_audit(chain: AuditProver) -> AuditVerificationOut:
    """Walk the audit log's hash chain and its signed checkpoints; name every record edited,
    deleted or inserted, and a cut tail (administrators). 200 with ``ok: false`` on tampering."""
    report = chain.verify()
    return AuditVerificationOut(
        ok=report.ok,
        records=report.records,
        head_count=report.head_count,
        head_hash=report.head_hash,
        checkpoints=report.checkpoints,
        last_checkpoint=CheckpointOut.model_validate(last) if (last := report.last_checkpoint) else None,
        unsigned=report.unsigned,
        problems=[AuditProblemOut.model_validate(p, from_attributes=True) for p in report.problems],
    )


@router.post("/checkpoints", status_code=201, response_model=CheckpointOut | None)
def sign_audit_checkpoint(chain: AuditSigner) -> CheckpointOut | None:
    """Sign the chain's head now with the platform's signing key (administrators); null when the
    last checkpoint already covers it. Repeating it is harmless: no Idempotency-Key needed."""
    point = chain.checkpoint()
    return CheckpointOut.model_validate(point, from_attributes=True) if point else None


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/jsonl": {}, "text/plain": {}}}},
)
def export_audit(log: AuditReader, format: Literal["jsonl", "syslog"] = "jsonl") -> StreamingResponse:  # noqa: A002
    """The audit log, oldest first, as JSON lines or RFC 5424 syslog lines, streamed: a
    tenant-admin gets its tenant's records (platform administrators' ones marked), an admin all."""
    # Starlette adds "; charset=utf-8" to text/plain itself; the document lists the types named here
    media = "application/jsonl" if format == "jsonl" else "text/plain"
    return StreamingResponse(log.export(format), media_type=media)
