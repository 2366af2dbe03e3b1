"""Identity API: tokens, signing keys, tenants, projects, users, the audit log.

Scoping: a caller without the ``global`` permission sees only its own tenant; anything of
another tenant answers 404, exactly like something that does not exist.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy import Select, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from novacron.api.concurrency import Idempotency, check_if_match, set_etag
from novacron.api.deps import CtxDep, PrincipalDep, ReadSessionDep, SessionDep, require
from novacron.api.errors import Problem, invalid, not_found
from novacron.api.listing import Page
from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate
from novacron.db.models import VM, AuditRecord, Project, Tenant, User
from novacron.identity.audit import audit_hint
from novacron.identity.clientaddr import client_address
from novacron.identity.keys import SUPPORTED_ALGS
from novacron.identity.login import LoginBusy, LoginRefused
from novacron.identity.lookup import name_taken
from novacron.identity.passwords import PasswordPolicyError
from novacron.identity.permissions import ROLES, SEPARATED, permissions_of
from novacron.identity.principal import Principal
from novacron.identity.tokens import Owner, RefreshRefused, unauthorized
from novacron.quota.tree import MAX_DEPTH, forget_project, project_ancestry

if TYPE_CHECKING:
    from novacron.context import Context

router = APIRouter()

# callers holding one permission (aliases keep signatures short and type-checkable)
CanAuditRead = Annotated[Principal, Depends(require("audit:read"))]
CanKeyRotate = Annotated[Principal, Depends(require("key:rotate"))]
CanProjectRead = Annotated[Principal, Depends(require("project:read"))]
CanProjectWrite = Annotated[Principal, Depends(require("project:write"))]
CanTenantRead = Annotated[Principal, Depends(require("tenant:read"))]
CanTenantWrite = Annotated[Principal, Depends(require("tenant:write"))]
CanUserRead = Annotated[Principal, Depends(require("user:read"))]
CanUserWrite = Annotated[Principal, Depends(require("user:write"))]

NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"
USERNAME = r"^[a-z0-9][a-z0-9._@-]{0,63}$"
Role = Literal["admin", "tenant-admin", "member", "viewer", "compliance"]
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _forbidden(detail: str, field: str | None = None) -> Problem:
    errors = [{"field": field, "reason": detail}] if field else None
    return Problem(403, "Forbidden", detail, errors=errors)


def _duplicate(field: str, value: str, kind: str) -> Problem:
    return Problem(
        409,
        "Conflict",
        f"A {kind} with {field.split('.')[-1]} '{value}' already exists.",
        errors=[{"field": field, "reason": "already used"}],
    )


def _flush_unique(session: Session, field: str, value: str, kind: str) -> None:
    """Flush; a unique-constraint race becomes 409 naming the field, never a 500."""
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise _duplicate(field, value, kind) from exc


def _created(idem: Idempotency, out: dict[str, Any]) -> JSONResponse:
    idem.remember(201, out)
    return JSONResponse(out, status_code=201)


# ------------------------------------------------------------------------------------------
# tokens
# ------------------------------------------------------------------------------------------


def _unicode(value: str) -> str:
    # JSON may carry lone surrogates ("\ud800"): they cannot be hashed or stored, so 422, not 500
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogate code points)") from None
    return value


Text = Annotated[str, AfterValidator(_unicode)]


class PasswordGrant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grant_type: Literal["password"] = "password"
    username: Text = Field(min_length=1, max_length=64)
    password: Text = Field(min_length=1, max_length=1024)
    #: your tenant (name or id), unless you are a platform user or in tenant "default"; or write
    #: the username as name@tenant (identity/lookup.py)
    tenant: Text | None = Field(None, min_length=1, max_length=64)


class RefreshGrant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refresh_token: str = Field(min_length=1, max_length=256)


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"
    #: seconds until the access token expires
    expires_in: int


class WhoAmI(BaseModel):
    user_id: str
    username: str
    role: str
    tenant_id: str | None
    tenant_name: str | None
    permissions: list[str]
    token_id: str
    expires_at: datetime | None


def _token_response(access: str, refresh: str, expires_in: int) -> JSONResponse:
    out = TokenOut(access_token=access, refresh_token=refresh, expires_in=expires_in)
    return JSONResponse(out.model_dump(), headers=NO_STORE)


def _login_refused(request: Request, exc: LoginRefused) -> Problem:
    """The answer to a refused login; the audit record names the account (if it exists) so its
    tenant-admin sees its failed logins. Nothing the caller sees depends on that."""
    if exc.account is not None:
        audit_hint(request, actor_id=exc.account.id, tenant_id=exc.account.tenant_id)
    if exc.status == 429:
        return Problem(429, "Too Many Requests", exc.detail, headers={"Retry-After": str(exc.retry_after)})
    if exc.status == 401:
        return unauthorized(exc.detail)
    return invalid("body.current_password", exc.detail, exc.status)


def _audit_owner(request: Request, owner: Owner) -> None:
    hints = {"actor_id": owner.user_id, "actor_name": owner.username, "resource_id": owner.user_id}
    audit_hint(request, tenant_id=owner.tenant_id, **hints)


def _login_busy() -> Problem:
    return Problem(
        503,
        "Service Unavailable",
        "Too many logins are being checked right now; retry in a second.",
        headers={"Retry-After": str(LoginBusy.retry_after)},
    )


@router.post("/v1/tokens", response_model=TokenOut, tags=["tokens"])
async def create_token(body: PasswordGrant, request: Request, ctx: CtxDep) -> JSONResponse:
    """Log in with username and password; returns an access token and a refresh token.

    A user of a tenant other than ``default`` names it: ``tenant`` (its name or id), or the
    username written ``name@tenant``. Without either, only platform users and users of tenant
    ``default`` are looked at; an unknown tenant is answered like an unknown user.

    Failed logins are throttled per account and per client address: after a few, each further
    try must wait longer (429 with ``Retry-After``), whether or not the password is right."""
    audit_hint(request, actor_name=body.username[:64])
    try:
        done = await ctx.tokens.logins.login(
            body.username, body.password, client_address(request), tenant=body.tenant
        )
    except LoginRefused as exc:
        raise _login_refused(request, exc) from None
    except LoginBusy:
        raise _login_busy() from None
    account = done.account
    audit_hint(request, actor_id=account.id, tenant_id=account.tenant_id, resource_id=account.id)
    return _token_response(done.access_token, done.refresh_token, done.expires_in)


@router.post("/v1/tokens/refresh", response_model=TokenOut, tags=["tokens"])
def refresh_token(body: RefreshGrant, request: Request, ctx: CtxDep) -> JSONResponse:
    """Trade a refresh token (single use) for a new access token and a new refresh token.

    Presenting a refresh token that was already used ends its login session (not the user's
    others) and is recorded as a security event naming the user."""
    try:
        done = ctx.tokens.refresh(body.refresh_token)
    except RefreshRefused as exc:
        if exc.owner is not None:
            _audit_owner(request, exc.owner)
        raise
    _audit_owner(request, done.owner)
    return _token_response(done.access_token, done.refresh_token, done.expires_in)


@router.get("/v1/tokens/current", response_model=WhoAmI, tags=["tokens"])
def whoami(principal: PrincipalDep, session: SessionDep) -> WhoAmI:
    """Who the token belongs to, with its role, tenant and permissions."""
    tenant_name = session.scalar(select(Tenant.name).where(Tenant.id == principal.tenant_id))
    exp = principal.extra.get("exp")
    return WhoAmI(
        user_id=principal.user_id,
        username=principal.username,
        role=principal.role,
        tenant_id=principal.tenant_id,
        tenant_name=tenant_name,
        permissions=sorted(principal.permissions),
        token_id=principal.token_id,
        expires_at=datetime.fromtimestamp(int(exp), UTC) if exp else None,
    )


@router.delete("/v1/tokens/current", status_code=204, tags=["tokens"])
def logout(principal: PrincipalDep, session: SessionDep, ctx: CtxDep) -> Response:
    """Sign out: the access token is refused from now on and its session's refresh token is deleted.

    A node's credential is not a session: it stays valid until an administrator revokes it
    (``POST /v1/hosts/{id}/revoke``), so it is refused here instead of answering 204 and working on."""
    if principal.kind == "node":
        raise Problem(
            403,
            "Forbidden",
            "A node credential is not signed out: it works until an administrator revokes it with "
            f"POST /v1/hosts/{principal.user_id}/revoke (the host goes down; a rejoin token re-keys it).",
        )
    exp = int(principal.extra.get("exp") or 0)
    ctx.tokens.revoke_access(principal.token_id, exp, session=session)
    if sid := principal.extra.get("sid"):
        ctx.tokens.revoke_session(sid, session=session)
    return Response(status_code=204)


@router.get("/.well-known/jwks.json", tags=["tokens"])
def jwks_well_known(ctx: CtxDep, session: SessionDep) -> JSONResponse:
    """The public keys that verify NovaCron access tokens (RFC 7517)."""
    return JSONResponse(ctx.tokens.keys.jwks(session), headers={"Cache-Control": "public, max-age=300"})


@router.get("/v1/jwks", tags=["tokens"])
def jwks(ctx: CtxDep, session: SessionDep) -> JSONResponse:
    """Same as ``/.well-known/jwks.json``."""
    return jwks_well_known(ctx, session)


class RotateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alg: Literal["ES256", "RS256"] = "ES256"


class SigningKeyOut(BaseModel):
    kid: str
    alg: str
    created_at: datetime


@router.post("/v1/signing-keys/rotate", status_code=201, response_model=SigningKeyOut, tags=["tokens"])
def rotate_keys(
    session: SessionDep, ctx: CtxDep, principal: CanKeyRotate, body: RotateRequest | None = None
) -> SigningKeyOut:
    """New tokens are signed with a new key; the old key keeps verifying until its tokens expire."""
    alg = body.alg if body else "ES256"
    assert alg in SUPPORTED_ALGS
    key = ctx.tokens.keys.rotate(session, alg)
    return SigningKeyOut(kid=key.kid, alg=key.alg, created_at=key.created_at)


# ------------------------------------------------------------------------------------------
# roles
# ------------------------------------------------------------------------------------------


class RoleOut(BaseModel):
    name: str
    permissions: list[str]


@router.get("/v1/roles", response_model=list[RoleOut], tags=["roles"])
def list_roles(principal: PrincipalDep) -> list[RoleOut]:
    """The roles a user can hold and the permissions each grants (the same for every caller)."""
    return [RoleOut(name=name, permissions=sorted(perms)) for name, perms in ROLES.items()]


# ------------------------------------------------------------------------------------------
# tenants
# ------------------------------------------------------------------------------------------


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    description: str = Field("", max_length=255)


class TenantUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, pattern=NAME)
    description: str | None = Field(None, max_length=255)


class TenantOut(BaseModel):
    id: str
    name: str
    description: str
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, t: Tenant) -> TenantOut:
        return cls(
            id=t.id,
            name=t.name,
            description=t.description,
            created_at=t.created_at,
            updated_at=t.updated_at,
            version=t.version,
        )


def _get_tenant(session: Session, principal: Principal, tenant_id: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(or_(Tenant.id == tenant_id, Tenant.name == tenant_id)))
    if tenant is None or not principal.sees_tenant(tenant.id):
        raise not_found("tenant", tenant_id)
    return tenant


@router.get("/v1/tenants", response_model=Page[TenantOut], tags=["tenants"])
def list_tenants(
    session: SessionDep,
    principal: CanTenantRead,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
    sort: str = "name",
    name: str | None = None,
) -> Page[TenantOut]:
    stmt: Select[Any] = select(Tenant)
    if not principal.is_global:
        stmt = stmt.where(Tenant.id == principal.tenant_id)
    if name is not None:
        stmt = stmt.where(Tenant.name == name)
    rows, nxt = paginate(session, stmt, Tenant, ListParams(limit, cursor, sort, ("name", "created_at")))
    return Page[TenantOut](items=[TenantOut.of(t) for t in rows], next_cursor=nxt)


@router.post("/v1/tenants", status_code=201, response_model=TenantOut, tags=["tenants"])
def create_tenant(
    body: TenantCreate, request: Request, session: SessionDep, principal: CanTenantWrite
) -> Response:
    idem = Idempotency(request, principal, session, body)
    if (replay := idem.replay()) is not None:
        return replay
    if session.scalar(select(Tenant.id).where(Tenant.name == body.name)):
        raise _duplicate("body.name", body.name, "tenant")
    tenant = Tenant(id=new_id("tenant"), name=body.name, description=body.description)
    session.add(tenant)
    _flush_unique(session, "body.name", body.name, "tenant")
    return _created(idem, TenantOut.of(tenant).model_dump(mode="json"))


@router.get("/v1/tenants/{tenant_id}", response_model=TenantOut, tags=["tenants"])
def get_tenant(
    tenant_id: str, response: Response, session: SessionDep, principal: CanTenantRead
) -> TenantOut:
    tenant = _get_tenant(session, principal, tenant_id)
    set_etag(response, tenant)
    return TenantOut.of(tenant)


@router.patch("/v1/tenants/{tenant_id}", response_model=TenantOut, tags=["tenants"])
def update_tenant(
    tenant_id: str,
    body: TenantUpdate,
    request: Request,
    response: Response,
    session: SessionDep,
    principal: CanTenantWrite,
) -> TenantOut:
    tenant = _get_tenant(session, principal, tenant_id)
    check_if_match(request, tenant)
    if body.name is not None and body.name != tenant.name:
        if session.scalar(select(Tenant.id).where(Tenant.name == body.name)):
            raise _duplicate("body.name", body.name, "tenant")
        tenant.name = body.name
    if body.description is not None:
        tenant.description = body.description
    _flush_unique(session, "body.name", body.name or "", "tenant")
    set_etag(response, tenant)
    return TenantOut.of(tenant)


@router.delete("/v1/tenants/{tenant_id}", status_code=204, tags=["tenants"])
def delete_tenant(tenant_id: str, session: SessionDep, principal: CanTenantWrite) -> Response:
    tenant = _get_tenant(session, principal, tenant_id)
    if session.scalar(select(Project.id).where(Project.tenant_id == tenant.id).limit(1)):
        raise Problem(409, "Conflict", f"Tenant '{tenant.name}' still has projects; delete them first.")
    if principal.tenant_id == tenant.id:
        raise Problem(409, "Conflict", "You cannot delete your own tenant.")
    session.delete(tenant)
    return Response(status_code=204)


# ------------------------------------------------------------------------------------------
# projects
# ------------------------------------------------------------------------------------------


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    description: str = Field("", max_length=255)
    #: required for platform administrators; others create in their own tenant
    tenant_id: str | None = Field(None, max_length=64)
    #: a sub-project: its quota nests inside the parent's (same tenant)
    parent_id: str | None = Field(None, max_length=40)


class ProjectUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, pattern=NAME)
    description: str | None = Field(None, max_length=255)


class ProjectOut(BaseModel):
    id: str
    tenant_id: str
    name: str
    description: str
    parent_id: str | None = None
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, p: Project) -> ProjectOut:
        return cls(
            id=p.id,
            tenant_id=p.tenant_id,
            parent_id=p.parent_id,
            name=p.name,
            description=p.description,
            created_at=p.created_at,
            updated_at=p.updated_at,
            version=p.version,
        )


def _get_project(session: Session, principal: Principal, project_id: str) -> Project:
    project = session.get(Project, project_id)
    if project is None and not principal.is_global and principal.tenant_id:
        # by name within the caller's tenant
        project = session.scalar(
            select(Project).where(Project.tenant_id == principal.tenant_id, Project.name == project_id)
        )
    if project is None or not principal.sees_tenant(project.tenant_id):
        raise not_found("project", project_id)
    return project


def _target_tenant(session: Session, principal: Principal, tenant_id: str | None) -> str:
    """The tenant a create lands in: the caller's own, or (admins) the one named."""
    if tenant_id is None:
        if principal.tenant_id is None:
            raise invalid("body.tenant_id", "required for platform administrators, who belong to no tenant")
        return principal.tenant_id
    tenant = session.scalar(select(Tenant).where(or_(Tenant.id == tenant_id, Tenant.name == tenant_id)))
    if tenant is None or not principal.sees_tenant(tenant.id):
        raise Problem(
            404,
            "Not Found",
            f"No tenant '{tenant_id}' exists or it is not visible to you.",
            errors=[{"field": "body.tenant_id", "reason": "no such tenant"}],
        )
    return tenant.id


@router.get("/v1/projects", response_model=Page[ProjectOut], tags=["projects"])
def list_projects(
    session: SessionDep,
    principal: CanProjectRead,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
    sort: str = "name",
    name: str | None = None,
    tenant_id: str | None = None,
) -> Page[ProjectOut]:
    stmt: Select[Any] = select(Project)
    if not principal.is_global:
        stmt = stmt.where(Project.tenant_id == principal.tenant_id)
    if name is not None:
        stmt = stmt.where(Project.name == name)
    if tenant_id is not None:
        stmt = stmt.where(Project.tenant_id == tenant_id)
    rows, nxt = paginate(session, stmt, Project, ListParams(limit, cursor, sort, ("name", "created_at")))
    return Page[ProjectOut](items=[ProjectOut.of(p) for p in rows], next_cursor=nxt)


@router.post("/v1/projects", status_code=201, response_model=ProjectOut, tags=["projects"])
def create_project(
    body: ProjectCreate, request: Request, session: SessionDep, principal: CanProjectWrite
) -> Response:
    idem = Idempotency(request, principal, session, body)
    if (replay := idem.replay()) is not None:
        return replay
    tenant_id = _target_tenant(session, principal, body.tenant_id)
    if session.scalar(select(Project.id).where(Project.tenant_id == tenant_id, Project.name == body.name)):
        raise _duplicate("body.name", body.name, "project in this tenant")
    if body.parent_id is not None:
        parent = session.get(Project, body.parent_id)
        if parent is None or parent.tenant_id != tenant_id:
            raise invalid("body.parent_id", f"no project '{body.parent_id}' in this tenant", 404)
        if len(project_ancestry(session, parent)) + 2 > MAX_DEPTH:
            raise invalid("body.parent_id", f"sub-projects nest at most {MAX_DEPTH - 2} deep")
    project = Project(
        id=new_id("project"),
        tenant_id=tenant_id,
        name=body.name,
        description=body.description,
        parent_id=body.parent_id,
    )
    session.add(project)
    _flush_unique(session, "body.name", body.name, "project in this tenant")
    return _created(idem, ProjectOut.of(project).model_dump(mode="json"))


@router.get("/v1/projects/{project_id}", response_model=ProjectOut, tags=["projects"])
def get_project(
    project_id: str, response: Response, session: SessionDep, principal: CanProjectRead
) -> ProjectOut:
    project = _get_project(session, principal, project_id)
    set_etag(response, project)
    return ProjectOut.of(project)


@router.patch("/v1/projects/{project_id}", response_model=ProjectOut, tags=["projects"])
def update_project(
    project_id: str,
    body: ProjectUpdate,
    request: Request,
    response: Response,
    session: SessionDep,
    principal: CanProjectWrite,
) -> ProjectOut:
    project = _get_project(session, principal, project_id)
    check_if_match(request, project)
    if body.name is not None and body.name != project.name:
        taken = session.scalar(
            select(Project.id).where(Project.tenant_id == project.tenant_id, Project.name == body.name)
        )
        if taken:
            raise _duplicate("body.name", body.name, "project in this tenant")
        project.name = body.name
    if body.description is not None:
        project.description = body.description
    _flush_unique(session, "body.name", body.name or "", "project in this tenant")
    set_etag(response, project)
    return ProjectOut.of(project)


@router.delete("/v1/projects/{project_id}", status_code=204, tags=["projects"])
def delete_project(project_id: str, session: SessionDep, principal: CanProjectWrite) -> Response:
    project = _get_project(session, principal, project_id)
    if session.scalar(select(VM.id).where(VM.project_id == project.id).limit(1)):
        raise Problem(409, "Conflict", f"Project '{project.name}' still has VMs; delete them first.")
    if session.scalar(select(Project.id).where(Project.parent_id == project.id).limit(1)):
        raise Problem(409, "Conflict", f"Project '{project.name}' has sub-projects; delete them first.")
    forget_project(session, project.id)
    session.delete(project)
    return Response(status_code=204)


# ------------------------------------------------------------------------------------------
# users
# ------------------------------------------------------------------------------------------


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(pattern=USERNAME)
    #: at least 12 characters, not a common or breached password, not easy to guess (zxcvbn)
    password: Text = Field(min_length=12, max_length=1024)
    role: Role = "member"
    #: required for platform administrators creating tenant users; must be null for role admin
    tenant_id: str | None = Field(None, max_length=64)


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role | None = None
    disabled: bool | None = None


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: at least 12 characters, not a common or breached password, not easy to guess (zxcvbn)
    password: Text = Field(min_length=12, max_length=1024)
    #: required when changing your own password
    current_password: Text | None = Field(None, max_length=1024)


class UserOut(BaseModel):
    id: str
    username: str
    role: str
    tenant_id: str | None
    disabled: bool
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, u: User) -> UserOut:
        return cls(
            id=u.id,
            username=u.username,
            role=u.role,
            tenant_id=u.tenant_id,
            disabled=u.disabled,
            created_at=u.created_at,
            updated_at=u.updated_at,
            version=u.version,
        )


def _get_user(session: Session, principal: Principal, user_id: str) -> User:
    # by name only among the users the caller may see: names are unique per tenant only
    user = session.get(User, user_id) or _user_named(session, principal, user_id)
    visible = user is not None and (
        principal.is_global
        or user.id == principal.user_id
        or (user.tenant_id is not None and user.tenant_id == principal.tenant_id)
    )
    if user is None or not visible:
        raise not_found("user", user_id)
    return user


def _user_named(session: Session, principal: Principal, username: str) -> User | None:
    stmt = select(User).where(User.username == username)
    if not principal.is_global:
        stmt = stmt.where(User.tenant_id == principal.tenant_id)
    found = list(session.scalars(stmt.limit(2)))
    if len(found) > 1:
        raise Problem(
            409, "Conflict", f"Several tenants have a user named '{username}'; name the user by its id."
        )
    return found[0] if found else None


def _check_role_grant(principal: Principal, role: str) -> None:
    """Nobody grants a role with permissions they do not hold themselves (no escalation)."""
    # separated duties (legal holds) are granted by admins who do not hold them themselves
    held = principal.permissions | (SEPARATED if principal.can("tenant:write") else frozenset())
    if not permissions_of(role) <= held:
        raise _forbidden(f"Your role '{principal.role}' cannot grant the role '{role}'.", "body.role")


def _new_hash(ctx: Context, password: str, username: str) -> str:
    """The hash of a new password that passes the policy, else 422 naming ``body.password``.
    Called before the handler's transaction starts: hashing must not hold the write lock."""
    try:
        return ctx.tokens.logins.hash_new(password, username=username)
    except PasswordPolicyError as exc:
        raise invalid("body.password", str(exc)) from exc
    except LoginBusy:
        raise _login_busy() from None


@router.get("/v1/users", response_model=Page[UserOut], tags=["users"])
def list_users(
    session: SessionDep,
    principal: CanUserRead,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
    sort: str = "username",
    username: str | None = None,
    role: str | None = None,
    tenant_id: str | None = None,
    disabled: bool | None = None,
) -> Page[UserOut]:
    stmt: Select[Any] = select(User)
    if not principal.is_global:
        stmt = stmt.where(User.tenant_id == principal.tenant_id)
    if username is not None:
        stmt = stmt.where(User.username == username)
    if role is not None:
        stmt = stmt.where(User.role == role)
    if tenant_id is not None:
        stmt = stmt.where(User.tenant_id == tenant_id)
    if disabled is not None:
        stmt = stmt.where(User.disabled == disabled)
    rows, nxt = paginate(
        session, stmt, User, ListParams(limit, cursor, sort, ("username", "created_at", "role"))
    )
    return Page[UserOut](items=[UserOut.of(u) for u in rows], next_cursor=nxt)


@router.post("/v1/users", status_code=201, response_model=UserOut, tags=["users"])
def create_user(
    body: UserCreate, request: Request, session: SessionDep, ctx: CtxDep, principal: CanUserWrite
) -> Response:
    password_hash = _new_hash(ctx, body.password, body.username)  # before the transaction starts
    idem = Idempotency(request, principal, session, body)
    if (replay := idem.replay()) is not None:
        return replay
    _check_role_grant(principal, body.role)
    if body.role == "admin":
        if body.tenant_id is not None:
            raise invalid("body.tenant_id", "platform administrators belong to no tenant; omit it")
        tenant_id: str | None = None
    else:
        tenant_id = _target_tenant(session, principal, body.tenant_id)
    # unique in its tenant only: another tenant's names are neither refused nor revealed
    if name_taken(session, body.username, tenant_id):
        raise _duplicate("body.username", body.username, "user")
    user = User(
        id=new_id("user"),
        username=body.username,
        password_hash=password_hash,
        role=body.role,
        tenant_id=tenant_id,
    )
    session.add(user)
    _flush_unique(session, "body.username", body.username, "user")
    return _created(idem, UserOut.of(user).model_dump(mode="json"))


@router.get("/v1/users/{user_id}", response_model=UserOut, tags=["users"])
def get_user(user_id: str, response: Response, session: SessionDep, principal: CanUserRead) -> UserOut:
    user = _get_user(session, principal, user_id)
    set_etag(response, user)
    return UserOut.of(user)


@router.patch("/v1/users/{user_id}", response_model=UserOut, tags=["users"])
def update_user(
    user_id: str,
    body: UserUpdate,
    request: Request,
    response: Response,
    session: SessionDep,
    ctx: CtxDep,
    principal: CanUserWrite,
) -> UserOut:
    user = _get_user(session, principal, user_id)
    check_if_match(request, user)
    _check_role_grant(principal, user.role)  # a tenant-admin cannot touch an admin
    if body.role is not None and body.role != user.role:
        _check_role_grant(principal, body.role)
        if (body.role == "admin") != (user.tenant_id is None):
            raise invalid("body.role", "admins belong to no tenant and tenant users cannot become admins")
        if user.id == principal.user_id:
            raise _forbidden("You cannot change your own role.", "body.role")
        user.role = body.role
    if body.disabled is not None and body.disabled != user.disabled:
        if user.id == principal.user_id:
            raise _forbidden("You cannot disable yourself.", "body.disabled")
        user.disabled = body.disabled
        if body.disabled:
            ctx.tokens.revoke_user_sessions(user.id, session=session)
    session.flush()
    set_etag(response, user)
    return UserOut.of(user)


@router.delete("/v1/users/{user_id}", status_code=204, tags=["users"])
def delete_user(user_id: str, session: SessionDep, principal: CanUserWrite) -> Response:
    user = _get_user(session, principal, user_id)
    _check_role_grant(principal, user.role)
    if user.id == principal.user_id:
        raise Problem(409, "Conflict", "You cannot delete yourself.")
    session.delete(user)
    return Response(status_code=204)


@router.post("/v1/users/{user_id}/password", status_code=204, tags=["users"])
def change_password(
    user_id: str,
    body: PasswordChange,
    request: Request,
    session: ReadSessionDep,
    ctx: CtxDep,
    principal: PrincipalDep,
) -> Response:
    """Set a new password; every session of the user ends (log in again with the new one).

    Proving your current password goes through the login throttle (429 + ``Retry-After``)."""
    user = _get_user(session, principal, user_id)
    if user.id != principal.user_id:
        if not principal.can("user:write"):
            raise _forbidden(f"Your role '{principal.role}' lacks the permission 'user:write'.")
        _check_role_grant(principal, user.role)
    else:
        try:
            ctx.tokens.logins.check_current(
                user.id, user.username, body.current_password, client_address(request)
            )
        except LoginRefused as exc:
            raise _login_refused(request, exc) from None
        except LoginBusy:
            raise _login_busy() from None
    ctx.tokens.logins.set_password(user.id, _new_hash(ctx, body.password, user.username))
    return Response(status_code=204)


# ------------------------------------------------------------------------------------------
# audit log
# ------------------------------------------------------------------------------------------


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


def _audit_cursor(record_id: int) -> str:
    return base64.urlsafe_b64encode(str(record_id).encode()).decode().rstrip("=")


def _audit_after(cursor: str) -> int:
    try:
        return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except ValueError as exc:
        raise invalid("query.cursor", "not a cursor this API returned", 400) from exc


@router.get("/v1/audit", response_model=Page[AuditOut], tags=["audit"])
def list_audit(
    session: SessionDep,
    principal: CanAuditRead,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
    sort: Literal["time", "-time"] = "-time",
    actor: str | None = Query(None, description="actor id or username"),
    action: str | None = None,
    outcome: Literal["success", "denied", "failed"] | None = None,
    tenant_id: str | None = None,
    resource_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Page[AuditOut]:
    """The audit log, newest first: a tenant-admin sees its tenant's records, an admin all."""
    stmt = select(AuditRecord)
    if not principal.is_global:
        stmt = stmt.where(AuditRecord.tenant_id == principal.tenant_id)
    if actor is not None:
        stmt = stmt.where(or_(AuditRecord.actor_id == actor, AuditRecord.actor_name == actor))
    for column, value in (
        (AuditRecord.action, action),
        (AuditRecord.outcome, outcome),
        (AuditRecord.tenant_id, tenant_id),
        (AuditRecord.resource_id, resource_id),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if since is not None:
        stmt = stmt.where(AuditRecord.time >= since)
    if until is not None:
        stmt = stmt.where(AuditRecord.time < until)
    desc = sort == "-time"
    if cursor:
        after = _audit_after(cursor)
        stmt = stmt.where(AuditRecord.id < after if desc else AuditRecord.id > after)
    # ids grow with time, so ordering by id is ordering by time (and uses the primary key)
    stmt = stmt.order_by(AuditRecord.id.desc() if desc else AuditRecord.id.asc()).limit(limit + 1)
    rows = list(session.scalars(stmt))
    nxt = None
    if len(rows) > limit:
        rows = rows[:limit]
        nxt = _audit_cursor(rows[-1].id)
    return Page[AuditOut](
        items=[AuditOut.model_validate(r, from_attributes=True) for r in rows], next_cursor=nxt
    )
