"""/v1/security/blocks: the sources threat detection blocked (identity/threats.py), and lifting one."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from novacron.api.deps import service
from novacron.db.models import SecurityBlock
from novacron.identity.threats import SecurityService

router = APIRouter(tags=["security"])
SecurityReader = Annotated[SecurityService, Depends(service(SecurityService, None, write=False))]
SecurityWriter = Annotated[SecurityService, Depends(service(SecurityService, None))]


class BlockOut(BaseModel):
    id: str
    source: str
    kind: str
    reason: str
    created_at: datetime
    expires_at: datetime
    lifted_at: datetime | None
    lifted_by: str | None

    @classmethod
    def of(cls, b: SecurityBlock) -> BlockOut:
        return cls(
            id=b.id,
            source=b.source,
            kind=b.kind,
            reason=b.reason,
            created_at=b.created_at,
            expires_at=b.expires_at,
            lifted_at=b.lifted_at,
            lifted_by=b.lifted_by,
        )


class BlockList(BaseModel):
    items: list[BlockOut]


@router.get("/v1/security/blocks", response_model=BlockList)
def list_blocks(security: SecurityReader, active: bool = True) -> BlockList:
    """Blocks in force (``active=false``: the latest 500, lifted and expired ones too); administrators."""
    return BlockList(items=[BlockOut.of(b) for b in security.blocks(active_only=active)])


@router.delete("/v1/security/blocks/{block_id}", response_model=BlockOut)
def lift_block(block_id: str, security: SecurityWriter) -> BlockOut:
    """Lift a block now (idempotent: a lifted block is answered as it is); administrators."""
    return BlockOut.of(security.lift(block_id))
