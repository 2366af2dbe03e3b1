"""Flavors: the VM sizes administrators define and everyone reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from novacron import events
from novacron.compute import hardware
from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate
from novacron.db.models import VM, Flavor
from novacron.db.resolve import resolve
from novacron.errors import Conflict, InvalidInput, NameTaken
from novacron.service import Service


@dataclass(frozen=True)
class FlavorSpec:
    """A flavor to create, as the caller asked for it (already checked for shape by the API)."""

    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    required_traits: list[str] = field(default_factory=list)
    forbidden_traits: list[str] = field(default_factory=list)
    #: machine, firmware, secure_boot, tpm of its VMs (compute.hardware); an image may set them too
    hardware: dict[str, Any] = field(default_factory=dict)


class FlavorService(Service):
    """Create, read and delete flavors; a flavor in use by a VM stays."""

    def list(self, params: ListParams, *, name: str | None = None) -> tuple[list[Flavor], str | None]:
        """One page of flavors, optionally only the one of this name."""
        stmt = select(Flavor)
        if name is not None:
            stmt = stmt.where(Flavor.name == name)
        return paginate(self.session, stmt, Flavor, params)

    def get(self, ref: str) -> Flavor:
        """The flavor of this id or name."""
        return resolve(self.session, self.principal, Flavor, ref)

    def create(self, spec: FlavorSpec) -> Flavor:
        """A new flavor; its name is unique on the platform, a trait can't be required and forbidden."""
        if self.session.scalar(select(Flavor.id).where(Flavor.name == spec.name)):
            raise NameTaken("flavor", spec.name, "name", scope="in this platform")
        both = set(spec.required_traits) & set(spec.forbidden_traits)
        if both:
            raise InvalidInput("forbidden_traits", f"also required: {', '.join(sorted(both))}")
        machine = hardware.validated(spec.hardware)
        flavor = Flavor(
            id=new_id("flv"),
            name=spec.name,
            vcpus=spec.vcpus,
            ram_mb=spec.ram_mb,
            disk_gb=spec.disk_gb,
            required_traits=sorted(set(spec.required_traits)),
            forbidden_traits=sorted(set(spec.forbidden_traits)),
            hardware=machine,
        )
        self.session.add(flavor)
        self.session.flush()
        events.publish(self.session, "flavor.created", "flavor", flavor.id, tenant_id=None, name=flavor.name)
        return flavor

    def delete(self, ref: str) -> None:
        """Delete a flavor no VM uses."""
        flavor = self.get(ref)
        if self.session.scalar(select(VM.id).where(VM.flavor_id == flavor.id).limit(1)):
            raise Conflict(f"Flavor '{flavor.name}' is used by VMs; resize or delete them first.")
        events.publish(self.session, "flavor.deleted", "flavor", flavor.id, tenant_id=None, name=flavor.name)
        self.session.delete(flavor)
