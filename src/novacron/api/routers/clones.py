"""Clones and templates: /v1/vms/{id}/clone, /v1/vms/{id}/template and /v1/images/{id}/template."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.audit import audit_detail
from novacron.api.deps import IdempotencyDep, service
from novacron.api.routers.images import ImageOut
from novacron.api.routers.vms import NAME, Accepted, SnapshotAccepted, VMOut, accepted
from novacron.compute.clones import CloneService, TemplateImages
from novacron.quota.policy import Decisions

router = APIRouter(tags=["vms"])

Cloner = Annotated[CloneService, Depends(service(CloneService, "vm:create"))]
Templater = Annotated[CloneService, Depends(service(CloneService, "vm:snapshot"))]
ImageTemplater = Annotated[TemplateImages, Depends(service(TemplateImages, "image:write"))]


class CloneRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME, description="the clone's name, unique in the source's project")
    mode: Literal["full", "linked"] | None = Field(
        default=None,
        description="full (the default without 'snapshot'): an independent copy of the disk (running or "
        "stopped source, or with 'snapshot' a standalone copy of what that snapshot holds); linked (the "
        "default with 'snapshot'): an overlay on one of the VM's snapshots (or create a VM from a "
        "template image)",
    )
    snapshot: str | None = Field(
        default=None,
        max_length=128,
        description="one of the VM's snapshots (id or name): a linked clone of it, or a full copy of it "
        "with mode 'full'",
    )
    user_data: str | None = Field(default=None, description="the clone's user-data (default: the source's)")


class TemplateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image_name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", description="the template's name")


class TemplateMark(BaseModel):
    model_config = ConfigDict(extra="forbid")
    template: bool = Field(default=True, description="false: an ordinary image again (no VM may use it)")


@router.post("/v1/vms/{vm_id}/clone", status_code=202, response_model=Accepted)
def clone_vm(vm_id: str, body: CloneRequest, request: Request, vms: Cloner, idem: IdempotencyDep) -> Response:
    """Clone a VM into a new one in its project, charged to the quota as a create."""
    if (replay := idem.replay({"clone": vm_id, **body.model_dump()})) is not None:
        return replay
    decisions = Decisions()
    audit_detail(request, decisions.items)
    vm, task = vms.clone(vm_id, body.name, body.mode, body.snapshot, body.user_data, decisions)
    return accepted(idem, task, Accepted(task_id=task.id, vm=VMOut.of(vm), warnings=decisions.warnings))


@router.post("/v1/vms/{vm_id}/template", status_code=202, response_model=SnapshotAccepted)
def template_vm(vm_id: str, body: TemplateRequest, vms: Templater, idem: IdempotencyDep) -> Response:
    """Turn a stopped VM into a template image; the VM is removed once its disk is the template's."""
    if (replay := idem.replay({"template": vm_id, **body.model_dump()})) is not None:
        return replay
    image, task = vms.to_template(vm_id, body.image_name)
    return accepted(idem, task, SnapshotAccepted(task_id=task.id, image_id=image.id))


@router.post("/v1/images/{image_id}/template", response_model=ImageOut, tags=["images"])
def mark_template(
    image_id: str, body: TemplateMark, images: ImageTemplater, idem: IdempotencyDep
) -> Response:
    """Mark an active image as a template (or unmark one no VM uses)."""
    if (replay := idem.replay({"image": image_id, **body.model_dump()})) is not None:
        return replay
    out = ImageOut.of(images.mark(image_id, body.template)).model_dump(mode="json")
    idem.remember(200, out)
    return JSONResponse(out)
