"""Files an agent sends back to the control plane: the disk of a snapshot taken on its host."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response

from novacron.api.deps import CtxDep, require
from novacron.api.transport import streamed_body
from novacron.compute import agentcalls
from novacron.identity.principal import Principal

router = APIRouter(tags=["agents"])

IsAgent = Annotated[Principal, Depends(require("agent"))]
OCTET_STREAM = {
    "requestBody": {
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        "required": True,
    }
}


@router.put("/v1/agent/snapshots/{image_id}", status_code=204, openapi_extra=OCTET_STREAM)
@streamed_body
async def upload_snapshot(
    image_id: str,
    request: Request,
    ctx: CtxDep,
    node: IsAgent,
    checksum: Annotated[str, Header(alias="X-Checksum-SHA256", pattern="^[0-9a-f]{64}$")],
) -> Response:
    """The flattened disk of a snapshot this host was asked to take (and only that one)."""
    await agentcalls.receive_snapshot(ctx, node, image_id, request.stream(), checksum)
    return Response(status_code=204)
