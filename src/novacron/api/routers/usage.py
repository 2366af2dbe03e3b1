"""/v1/reservations (advance booking), /v1/prices, /v1/budgets and /v1/usage (metering, report)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from novacron.api.concurrency import Idempotency, set_etag
from novacron.api.deps import ReadSessionDep, SessionDep, require
from novacron.api.errors import invalid, not_found
from novacron.api.listing import Page
from novacron.compute.scope import get_visible, resolve_project, scoped
from novacron.db.base import new_id, utcnow
from novacron.db.listing import ListParams, paginate
from novacron.db.models import Budget, CapacityReservation, Price, Project, Tenant
from novacron.identity.principal import Principal
from novacron.quota import billing, reservations, tree
from novacron.quota.registry import RESOURCES

router = APIRouter()

CanReservationRead = Annotated[Principal, Depends(require("reservation:read"))]
CanReservationWrite = Annotated[Principal, Depends(require("reservation:write"))]
CanUsageRead = Annotated[Principal, Depends(require("usage:read"))]
CanBudgetWrite = Annotated[Principal, Depends(require("budget:write"))]
CanPriceWrite = Annotated[Principal, Depends(require("price:write"))]
CanMeter = Annotated[Principal, Depends(require("quota:admin"))]

#: years 1900-2999: year 0 or 9999-12 has no month bounds in Python (the answer was a 500)
MONTH = r"^(19|2\d)\d{2}-(0[1-9]|1[0-2])$"


# -- reservations ---------------------------------------------------------------------------------


class ReservationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$")
    project_id: str | None = Field(None, max_length=40)
    vcpus: int = Field(ge=1, le=100_000)
    ram_mb: int = Field(ge=1, le=1 << 30)
    starts_at: datetime
    ends_at: datetime
    host: str | None = Field(None, max_length=128, description="book on this host (admins; id or name)")


class ReservationOut(BaseModel):
    id: str
    name: str
    tenant_id: str
    project_id: str
    host_id: str
    vcpus: int
    ram_mb: int
    vcpus_used: int
    ram_mb_used: int
    starts_at: datetime
    ends_at: datetime
    status: str
    created_at: datetime
    version: int


def _res_out(r: CapacityReservation) -> ReservationOut:
    return ReservationOut.model_validate(r, from_attributes=True)


@router.get("/v1/reservations", response_model=Page[ReservationOut], tags=["reservations"])
def list_reservations(
    session: ReadSessionDep,
    principal: CanReservationRead,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
    sort: str = "starts_at",
    project_id: str | None = None,
    status: str | None = None,
) -> Page[ReservationOut]:
    stmt = scoped(select(CapacityReservation), CapacityReservation, principal)
    for col, value in ((CapacityReservation.project_id, project_id), (CapacityReservation.status, status)):
        if value is not None:
            stmt = stmt.where(col == value)
    rows, nxt = paginate(
        session,
        stmt,
        CapacityReservation,
        ListParams(limit, cursor, sort, ("starts_at", "created_at", "name")),
    )
    return Page[ReservationOut](items=[_res_out(r) for r in rows], next_cursor=nxt)


@router.post("/v1/reservations", status_code=201, response_model=ReservationOut, tags=["reservations"])
def create_reservation(
    body: ReservationIn, request: Request, session: SessionDep, principal: CanReservationWrite
) -> Response:
    """Book capacity for a window; refused (409) with each host's reason when it conflicts."""
    idem = Idempotency(request, principal, session, body)
    if (replay := idem.replay()) is not None:
        return replay
    if body.host is not None and not principal.is_global:
        raise invalid("body.host", "only platform administrators choose the host", 403)
    for field, value in (("starts_at", body.starts_at), ("ends_at", body.ends_at)):
        if value.tzinfo is None:
            raise invalid(f"body.{field}", "give a time zone (e.g. 2026-11-30T09:00:00Z)")
    project = resolve_project(session, principal, body.project_id)
    res = reservations.book(
        session,
        project,
        body.name,
        body.vcpus,
        body.ram_mb,
        body.starts_at,
        body.ends_at,
        body.host,
        detailed=principal.is_global,
    )
    payload = _res_out(res).model_dump(mode="json")
    idem.remember(201, payload)
    return JSONResponse(payload, status_code=201, headers={"Location": f"/v1/reservations/{res.id}"})


@router.get("/v1/reservations/{reservation_id}", response_model=ReservationOut, tags=["reservations"])
def get_reservation(
    reservation_id: str, response: Response, session: ReadSessionDep, principal: CanReservationRead
) -> ReservationOut:
    res = get_visible(session, CapacityReservation, reservation_id, principal, "reservation")
    set_etag(response, res)
    return _res_out(res)


@router.delete("/v1/reservations/{reservation_id}", response_model=ReservationOut, tags=["reservations"])
def delete_reservation(
    reservation_id: str, session: SessionDep, principal: CanReservationWrite
) -> ReservationOut:
    """Cancel a booking: its unused room is free at once; VMs placed through it keep running."""
    res = get_visible(session, CapacityReservation, reservation_id, principal, "reservation")
    if res.status in ("pending", "active"):
        reservations.end(session, res, "cancelled")
        session.flush()
    return _res_out(res)


# -- prices and budgets ---------------------------------------------------------------------------


class PriceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    per_hour: float = Field(ge=0, le=1e9, description="price of one billing unit for one hour")


@router.get("/v1/prices", tags=["usage"])
def list_prices(session: ReadSessionDep, principal: CanUsageRead) -> dict[str, Any]:
    found = billing.prices(session)
    return {
        "items": [
            {"resource": r.name, "billing_unit": r.billing_unit, "per_hour": found.get(r.name, 0.0)}
            for r in sorted(RESOURCES.values(), key=lambda r: r.name)
        ]
    }


@router.put("/v1/prices/{resource}", tags=["usage"])
def set_price(resource: str, body: PriceIn, session: SessionDep, principal: CanPriceWrite) -> dict[str, Any]:
    if resource not in RESOURCES:
        raise invalid("path.resource", f"unknown resource; registered: {', '.join(sorted(RESOURCES))}", 404)
    row = session.get(Price, resource)
    if row is None:
        session.add(Price(resource=resource, per_hour=body.per_hour))
    else:
        row.per_hour = body.per_hour
    return {"resource": resource, "per_hour": body.per_hour}


class BudgetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant_id: str | None = Field(None, max_length=40)
    project_id: str | None = Field(None, max_length=40)
    month: str | None = Field(None, pattern=MONTH, description="YYYY-MM; absent: every month")
    amount: float = Field(ge=0, le=1e12)


class BudgetOut(BaseModel):
    id: str
    node_id: str
    tenant_id: str
    month: str | None
    amount: float
    spent: float
    version: int


def _budget_out(session: Any, b: Budget) -> BudgetOut:
    month = b.month or billing.month_of(utcnow())
    return BudgetOut(
        id=b.id,
        node_id=b.node_id,
        tenant_id=b.tenant_id,
        month=b.month,
        amount=b.amount,
        spent=round(billing.spent(session, b.node_id, month), 6),
        version=b.version,
    )


@router.get("/v1/budgets", response_model=Page[BudgetOut], tags=["usage"])
def list_budgets(
    session: ReadSessionDep,
    principal: CanUsageRead,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
) -> Page[BudgetOut]:
    rows, nxt = paginate(
        session,
        scoped(select(Budget), Budget, principal),
        Budget,
        ListParams(limit, cursor, "created_at", ("created_at",)),
    )
    return Page[BudgetOut](items=[_budget_out(session, b) for b in rows], next_cursor=nxt)


@router.put("/v1/budgets", response_model=BudgetOut, tags=["usage"])
def set_budget(body: BudgetIn, session: SessionDep, principal: CanBudgetWrite) -> BudgetOut:
    """Set the monthly budget of a tenant (platform admins) or a project (its tenant's admins)."""
    if (body.tenant_id is None) == (body.project_id is None):
        raise invalid("body.project_id", "name exactly one of tenant_id and project_id")
    if body.project_id is not None:
        project = session.get(Project, body.project_id)
        if project is None or not principal.sees_tenant(project.tenant_id):
            raise invalid("body.project_id", f"no project '{body.project_id}' is visible to you", 404)
        node_id, tenant_id = tree.node_for_ref(session, project_id=project.id), project.tenant_id
    else:
        assert body.tenant_id is not None
        if not principal.is_global:
            raise invalid("body.tenant_id", "only platform administrators set a tenant's budget", 403)
        if session.get(Tenant, body.tenant_id) is None:
            raise invalid("body.tenant_id", f"no tenant '{body.tenant_id}'", 404)
        node_id, tenant_id = tree.node_for_ref(session, tenant_id=body.tenant_id), body.tenant_id
    budget = session.scalar(
        select(Budget).where(
            Budget.node_id == node_id, Budget.month == body.month if body.month else Budget.month.is_(None)
        )
    )
    if budget is None:
        budget = Budget(
            id=new_id("budget"), node_id=node_id, tenant_id=tenant_id, month=body.month, amount=body.amount
        )
        session.add(budget)
    else:
        budget.amount = body.amount
    session.flush()
    return _budget_out(session, budget)


# -- usage ----------------------------------------------------------------------------------------


@router.get("/v1/usage", tags=["usage"])
def usage_report(
    session: ReadSessionDep,
    principal: CanUsageRead,
    tenant_id: str | None = Query(None, max_length=40),
    month: str | None = Query(None, pattern=MONTH),
) -> dict[str, Any]:
    """Metered consumption and cost of a tenant's projects in a month (default: this month)."""
    ref = tenant_id or principal.tenant_id
    if ref is None:
        raise invalid("query.tenant_id", "required for platform administrators")
    t = session.get(Tenant, ref) or session.scalar(select(Tenant).where(Tenant.name == ref))
    if t is None or not principal.sees_tenant(t.id):
        raise not_found("tenant", ref)
    return billing.report(session, t.id, month or billing.month_of(utcnow()))


@router.post("/v1/usage/meter", tags=["usage"])
def meter_now(session: SessionDep, principal: CanMeter) -> dict[str, Any]:
    """Meter now instead of at the next hourly run (the ledger covers the time since the last run)."""
    return billing.meter(session)
