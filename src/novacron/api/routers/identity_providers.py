"""/v1/identity-providers: a tenant's identity providers for single sign-on (``identity/sso_providers.py``).

The client secret is write-only: accepted on create and change, sealed at rest, never answered
(``client_secret_set`` says whether one is stored). A create or a change of the issuer is checked
at the issuer (discovery) before anything is stored; a refusal names the field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.deps import IdempotencyDep, service
from novacron.api.listing import Page, list_query
from novacron.db.listing import ListParams
from novacron.db.models import IdentityProvider
from novacron.identity.sso_providers import ProviderService, ProviderSpec

router = APIRouter(prefix="/v1/identity-providers", tags=["identity-providers"])

Reader = Annotated[ProviderService, Depends(service(ProviderService, "user:read", write=False))]
Writer = Annotated[ProviderService, Depends(service(ProviderService, "user:write"))]
Listing = Annotated[ListParams, Depends(list_query(("name", "created_at"), "name"))]
Claim = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
Scope = Annotated[str, Field(pattern=r"^[\x21\x23-\x5b\x5d-\x7e]{1,128}$")]


class GroupRole(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: a value of the provider's groups claim
    group: str = Field(min_length=1, max_length=255)
    role: str = Field(min_length=1, max_length=32)


class ProviderChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    display_name: str | None = Field(None, min_length=1, max_length=64)
    #: the OpenID issuer (https://...); Google's and GitHub's are filled in by their presets
    issuer: str | None = Field(None, min_length=8, max_length=512, pattern=r"^https?://")
    client_id: str | None = Field(None, min_length=1, max_length=255)
    #: write-only: sealed at rest, never answered
    client_secret: str | None = Field(None, min_length=1, max_length=1024)
    scopes: list[Scope] | None = Field(None, min_length=1, max_length=20)
    #: the claim naming the user (the preset's default: preferred_username, email or login)
    username_claim: Claim | None = None
    email_claim: Claim | None = None
    #: the claim listing the user's groups ("" for none)
    groups_claim: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{0,64}$")] | None = None
    #: a user gets the most powerful role among its groups'
    group_roles: list[GroupRole] | None = Field(None, max_length=100)
    #: the role of a user in none of the mapped groups; null: such a user may not sign in
    default_role: str | None = Field(None, max_length=32)
    enabled: bool | None = None

    def spec(self) -> ProviderSpec:
        return ProviderSpec(
            display_name=self.display_name,
            issuer=self.issuer,
            client_id=self.client_id,
            client_secret=self.client_secret,
            scopes=self.scopes,
            username_claim=self.username_claim,
            email_claim=self.email_claim,
            groups_claim=self.groups_claim,
            group_roles=[m.model_dump() for m in self.group_roles] if self.group_roles is not None else None,
            default_role=self.default_role,
            default_role_set="default_role" in self.model_fields_set,
            enabled=self.enabled,
        )


class ProviderCreate(ProviderChange):
    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", description="1-64 lowercase letters, digits, . _ -"
    )
    preset: Literal["oidc", "google", "entra", "github"] = "oidc"
    client_id: str = Field(min_length=1, max_length=255)
    client_secret: str = Field(min_length=1, max_length=1024)
    #: platform administrators name the tenant
    tenant_id: str | None = Field(None, max_length=64)


class ProviderOut(BaseModel):
    id: str
    tenant_id: str
    name: str
    display_name: str
    preset: str
    issuer: str
    client_id: str
    client_secret_set: bool
    scopes: list[str]
    username_claim: str
    email_claim: str
    groups_claim: str
    group_roles: list[GroupRole]
    default_role: str | None
    enabled: bool
    created_at: datetime

    @classmethod
    def of(cls, p: IdentityProvider) -> ProviderOut:
        return cls(
            id=p.id,
            tenant_id=p.tenant_id,
            name=p.name,
            display_name=p.display_name,
            preset=p.preset,
            issuer=p.issuer,
            client_id=p.client_id,
            client_secret_set=bool(p.client_secret),
            scopes=list(p.scopes),
            username_claim=p.username_claim,
            email_claim=p.email_claim,
            groups_claim=p.groups_claim,
            group_roles=[GroupRole(**m) for m in p.group_roles],
            default_role=p.default_role,
            enabled=p.enabled,
            created_at=p.created_at,
        )


@router.post("", status_code=201, response_model=ProviderOut)
def create_identity_provider(body: ProviderCreate, providers: Writer, idem: IdempotencyDep) -> Response:
    """Add an identity provider (checked at its issuer first)."""
    if (replay := idem.replay(body)) is not None:
        return replay
    spec = body.spec()
    spec = ProviderSpec(
        **{**spec.__dict__, "name": body.name, "preset": body.preset, "tenant_id": body.tenant_id}
    )
    out = ProviderOut.of(providers.create(spec)).model_dump(mode="json")
    idem.remember(201, out)
    return JSONResponse(out, status_code=201)


@router.get("", response_model=Page[ProviderOut])
def list_identity_providers(providers: Reader, page: Listing) -> Page[ProviderOut]:
    rows, nxt = providers.list(page)
    return Page[ProviderOut](items=[ProviderOut.of(p) for p in rows], next_cursor=nxt)


@router.get("/{ref}", response_model=ProviderOut)
def get_identity_provider(ref: str, providers: Reader) -> ProviderOut:
    return ProviderOut.of(providers.get(ref))


@router.patch("/{ref}", response_model=ProviderOut)
def update_identity_provider(ref: str, body: ProviderChange, providers: Writer) -> ProviderOut:
    """Change a provider (the secret only when given; a new issuer is checked at it)."""
    return ProviderOut.of(providers.update(ref, body.spec()))


@router.delete("/{ref}", status_code=204)
def delete_identity_provider(ref: str, providers: Writer) -> Response:
    """Delete a provider: its users can no longer sign in with it, and their sessions end at
    their next refresh."""
    providers.delete(ref)
    return Response(status_code=204)
