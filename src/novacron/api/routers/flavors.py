"""/v1/flavors: VM sizes, defined by administrators, readable by all."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.concurrency import set_etag
from novacron.api.deps import IdempotencyDep, service
from novacron.api.listing import Page, list_query
from novacron.api.routers.hosts import Trait
from novacron.compute.flavors import FlavorService, FlavorSpec
from novacron.db.listing import ListParams
from novacron.db.models import Flavor

router = APIRouter(prefix="/v1/flavors", tags=["flavors"])

FlavorReader = Annotated[FlavorService, Depends(service(FlavorService, "flavor:read", write=False))]
FlavorWriter = Annotated[FlavorService, Depends(service(FlavorService, "flavor:write"))]
FlavorList = Annotated[ListParams, Depends(list_query(("name", "created_at", "vcpus", "ram_mb"), "name"))]


class Hardware(BaseModel):
    """The machine of a flavor's or an image's VMs; a setting left out (null) is unset there."""

    model_config = ConfigDict(extra="forbid")
    machine: Literal["pc", "q35"] | None = Field(default=None, description="chipset (default pc)")
    firmware: Literal["bios", "uefi"] | None = Field(
        default=None, description="SeaBIOS or OVMF with the VM's own NVRAM (default bios)"
    )
    secure_boot: bool | None = Field(default=None, description="UEFI Secure Boot (needs uefi and q35)")
    tpm: bool | None = Field(default=None, description="a virtual TPM 2.0 (swtpm; CRB on q35, TIS on pc)")

    def settings(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class FlavorCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    vcpus: int = Field(ge=1, le=64)
    ram_mb: int = Field(ge=64, le=262144)
    disk_gb: int = Field(ge=0, le=16384)
    required_traits: list[Trait] = Field(
        default_factory=list,
        max_length=32,
        description="host traits a VM of this flavor needs (gpu, hw:avx512)",
    )
    forbidden_traits: list[Trait] = Field(
        default_factory=list, max_length=32, description="host traits a VM of this flavor must not land on"
    )
    hardware: Hardware = Field(default_factory=Hardware)


class FlavorOut(BaseModel):
    id: str
    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    required_traits: list[str]
    forbidden_traits: list[str]
    hardware: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, f: Flavor) -> FlavorOut:
        return cls(
            id=f.id,
            name=f.name,
            vcpus=f.vcpus,
            ram_mb=f.ram_mb,
            disk_gb=f.disk_gb,
            required_traits=list(f.required_traits or []),
            forbidden_traits=list(f.forbidden_traits or []),
            hardware=dict(f.hardware or {}),
            created_at=f.created_at,
        )


@router.get("", response_model=Page[FlavorOut])
def list_flavors(flavors: FlavorReader, page: FlavorList, name: str | None = None) -> Page[FlavorOut]:
    rows, nxt = flavors.list(page, name=name)
    return Page[FlavorOut](items=[FlavorOut.of(f) for f in rows], next_cursor=nxt)


@router.post("", status_code=201, response_model=FlavorOut)
def create_flavor(body: FlavorCreate, flavors: FlavorWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    flavor = flavors.create(
        FlavorSpec(**body.model_dump(exclude={"hardware"}), hardware=body.hardware.settings())
    )
    return idem.created(FlavorOut.of(flavor), flavor)


@router.get("/{flavor_id}", response_model=FlavorOut)
def get_flavor(flavor_id: str, response: Response, flavors: FlavorReader) -> FlavorOut:
    flavor = flavors.get(flavor_id)
    set_etag(response, flavor)
    return FlavorOut.of(flavor)


@router.delete("/{flavor_id}", status_code=204)
def delete_flavor(flavor_id: str, flavors: FlavorWriter) -> Response:
    flavors.delete(flavor_id)
    return Response(status_code=204)
