"""GraphQL images and flavors: the REST routes' reads (``ImageService``, ``FlavorService``).

An image is the caller's tenant's or a public one (``image:read``); flavors are the platform's, seen
by every caller with ``flavor:read``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import strawberry
from strawberry.scalars import JSON

from novacron.api.graphql.context import Info
from novacron.api.graphql.limits import DEFAULT_FIRST
from novacron.api.graphql.pages import Page, absent, page_params
from novacron.compute.flavors import FlavorService
from novacron.compute.imagesvc import ImageService
from novacron.db.models import Flavor, Image


@strawberry.type(name="Image")
class ImageNode:
    """A disk image (``/v1/images``)."""

    id: strawberry.ID
    name: str
    project_id: str
    status: str
    disk_format: str | None
    size_bytes: float
    virtual_size_bytes: float
    checksum_sha256: str | None
    public: bool
    template: bool
    hardware: JSON
    error: str | None
    created_at: datetime

    @classmethod
    def of(cls, i: Image) -> ImageNode:
        return cls(
            id=strawberry.ID(i.id),
            name=i.name,
            project_id=i.project_id,
            status=i.status,
            disk_format=i.disk_format,
            size_bytes=float(i.size_bytes),
            virtual_size_bytes=float(i.virtual_size_bytes),
            checksum_sha256=i.checksum_sha256,
            public=i.public,
            template=i.template,
            hardware=cast(Any, dict(i.hardware or {})),
            error=i.error,
            created_at=i.created_at,
        )


@strawberry.type(name="Flavor")
class FlavorNode:
    """A VM size (``/v1/flavors``)."""

    id: strawberry.ID
    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    required_traits: list[str]
    forbidden_traits: list[str]
    hardware: JSON
    created_at: datetime

    @classmethod
    def of(cls, f: Flavor) -> FlavorNode:
        return cls(
            id=strawberry.ID(f.id),
            name=f.name,
            vcpus=f.vcpus,
            ram_mb=f.ram_mb,
            disk_gb=f.disk_gb,
            required_traits=list(f.required_traits or []),
            forbidden_traits=list(f.forbidden_traits or []),
            hardware=cast(Any, dict(f.hardware or {})),
            created_at=f.created_at,
        )


@strawberry.type
class CatalogQuery:
    """Images and flavors."""

    @strawberry.field(description="the images the caller sees (its tenant's and the public ones)")
    def images(
        self,
        info: Info,
        first: int = DEFAULT_FIRST,
        after: str | None = None,
        name: str | None = None,
        status: str | None = None,
    ) -> Page[ImageNode] | None:
        c = info.context
        c.require("image:read")
        params = page_params(first, after, ("created_at", "name", "size_bytes"), "created_at")
        rows, nxt = ImageService(c.db, c.principal, c.ctx).list(params, name=name, status=status)
        return Page(items=[ImageNode.of(i) for i in rows], next_cursor=nxt)

    @strawberry.field(description="an image by id or name; null if the caller does not see it")
    def image(self, info: Info, id: strawberry.ID) -> ImageNode | None:
        c = info.context
        c.require("image:read")
        found = absent(lambda: ImageService(c.db, c.principal, c.ctx).get(str(id)))
        return ImageNode.of(found) if found else None

    @strawberry.field(description="the flavors, by name")
    def flavors(
        self, info: Info, first: int = DEFAULT_FIRST, after: str | None = None, name: str | None = None
    ) -> Page[FlavorNode] | None:
        c = info.context
        c.require("flavor:read")
        params = page_params(first, after, ("name", "created_at", "vcpus", "ram_mb"), "name")
        rows, nxt = FlavorService(c.db, c.principal, c.ctx).list(params, name=name)
        return Page(items=[FlavorNode.of(f) for f in rows], next_cursor=nxt)

    @strawberry.field(description="a flavor by id or name; null if there is none")
    def flavor(self, info: Info, id: strawberry.ID) -> FlavorNode | None:
        c = info.context
        c.require("flavor:read")
        found = absent(lambda: FlavorService(c.db, c.principal, c.ctx).get(str(id)))
        return FlavorNode.of(found) if found else None
