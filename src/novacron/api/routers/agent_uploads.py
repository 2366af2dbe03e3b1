"""Files an agent sends back to the control plane: the disk of a snapshot taken on its host."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from novacron.api.deps import CtxDep, require
from novacron.api.errors import Problem, invalid
from novacron.api.transport import streamed_body
from novacron.compute import storage
from novacron.compute.images import ImageTooLarge, write_stream
from novacron.db.models import HostOperation, Image
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

    def asked() -> bool:
        with ctx.db.read_session() as s:
            image = s.get(Image, image_id)
            ops = s.scalars(
                select(HostOperation).where(
                    HostOperation.host_id == node.user_id,
                    HostOperation.op == "snapshot",
                    HostOperation.state == "running",
                )
            )
            wanted = any(op.payload.get("image_id") == image_id for op in ops)
            return wanted and image is not None and image.status == "importing"

    if not await run_in_threadpool(asked):
        raise Problem(404, "Not Found", f"No snapshot of image '{image_id}' is being taken on this host.")
    dest = storage.image_disk(ctx.settings, image_id)
    try:
        _, sha = await write_stream(request.stream(), dest)
    except ImageTooLarge as exc:
        raise invalid("body", str(exc), 413) from exc
    if sha != checksum:
        dest.unlink(missing_ok=True)
        raise invalid(
            "header.X-Checksum-SHA256", "the disk arrived corrupted (sha256 mismatch); send it again"
        )
    return Response(status_code=204)
