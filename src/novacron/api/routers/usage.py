"""/v1/reservations (advance booking), /v1/prices, /v1/budgets and /v1/usage (metering, report)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.concurrency import set_etag
from novacron.api.deps import IdempotencyDep, service
from novacron.api.listing import Page, list_query
from novacron.db.listing import ListParams
from novacron.db.models import CapacityReservation
from novacron.quota.bookings import ReservationService
from novacron.quota.reservations import ReservationSpec
from novacron.quota.usage import BudgetService, BudgetSpec, BudgetState, UsageService

router = APIRouter()

ReservationReader = Annotated[
    ReservationService, Depends(service(ReservationService, "reservation:read", write=False))
]
ReservationWriter = Annotated[ReservationService, Depends(service(ReservationService, "reservation:write"))]
UsageReader = Annotated[UsageService, Depends(service(UsageService, "usage:read", write=False))]
PriceWriter = Annotated[UsageService, Depends(service(UsageService, "price:write"))]
Meter = Annotated[UsageService, Depends(service(UsageService, "quota:admin"))]
BudgetReader = Annotated[BudgetService, Depends(service(BudgetService, "usage:read", write=False))]
BudgetWriter = Annotated[BudgetService, Depends(service(BudgetService, "budget:write"))]
ReservationList = Annotated[ListParams, Depends(list_query(("starts_at", "created_at", "name"), "starts_at"))]
BudgetList = Annotated[ListParams, Depends(list_query(("created_at",), "created_at"))]

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

    @classmethod
    def of(cls, r: CapacityReservation) -> ReservationOut:
        return cls.model_validate(r, from_attributes=True)


@router.get("/v1/reservations", response_model=Page[ReservationOut], tags=["reservations"])
def list_reservations(
    bookings: ReservationReader,
    page: ReservationList,
    project_id: str | None = None,
    status: str | None = None,
) -> Page[ReservationOut]:
    rows, nxt = bookings.list(page, project_id=project_id, status=status)
    return Page[ReservationOut](items=[ReservationOut.of(r) for r in rows], next_cursor=nxt)


@router.post("/v1/reservations", status_code=201, response_model=ReservationOut, tags=["reservations"])
def create_reservation(body: ReservationIn, bookings: ReservationWriter, idem: IdempotencyDep) -> Response:
    """Book capacity for a window; refused (409) with each host's reason when it conflicts."""
    if (replay := idem.replay(body)) is not None:
        return replay
    res = bookings.create(ReservationSpec(**body.model_dump()))
    payload = ReservationOut.of(res).model_dump(mode="json")
    idem.remember(201, payload)
    return JSONResponse(payload, status_code=201, headers={"Location": f"/v1/reservations/{res.id}"})


@router.get("/v1/reservations/{reservation_id}", response_model=ReservationOut, tags=["reservations"])
def get_reservation(reservation_id: str, response: Response, bookings: ReservationReader) -> ReservationOut:
    res = bookings.get(reservation_id)
    set_etag(response, res)
    return ReservationOut.of(res)


@router.delete("/v1/reservations/{reservation_id}", response_model=ReservationOut, tags=["reservations"])
def delete_reservation(reservation_id: str, bookings: ReservationWriter) -> ReservationOut:
    """Cancel a booking: its unused room is free at once; VMs placed through it keep running."""
    return ReservationOut.of(bookings.cancel(reservation_id))


# -- prices and budgets ---------------------------------------------------------------------------


class PriceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    per_hour: float = Field(ge=0, le=1e9, description="price of one billing unit for one hour")


@router.get("/v1/prices", tags=["usage"])
def list_prices(usage: UsageReader) -> dict[str, Any]:
    return {"items": usage.prices()}


@router.put("/v1/prices/{resource}", tags=["usage"])
def set_price(resource: str, body: PriceIn, usage: PriceWriter) -> dict[str, Any]:
    usage.set_price(resource, body.per_hour)
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

    @classmethod
    def of(cls, state: BudgetState) -> BudgetOut:
        b = state.budget
        return cls(
            id=b.id,
            node_id=b.node_id,
            tenant_id=b.tenant_id,
            month=b.month,
            amount=b.amount,
            spent=state.spent,
            version=b.version,
        )


@router.get("/v1/budgets", response_model=Page[BudgetOut], tags=["usage"])
def list_budgets(budgets: BudgetReader, page: BudgetList) -> Page[BudgetOut]:
    states, nxt = budgets.list(page)
    return Page[BudgetOut](items=[BudgetOut.of(s) for s in states], next_cursor=nxt)


@router.put("/v1/budgets", response_model=BudgetOut, tags=["usage"])
def set_budget(body: BudgetIn, budgets: BudgetWriter) -> BudgetOut:
    """Set the monthly budget of a tenant (platform admins) or a project (its tenant's admins)."""
    return BudgetOut.of(budgets.set(BudgetSpec(**body.model_dump())))


# -- usage ----------------------------------------------------------------------------------------


@router.get("/v1/usage", tags=["usage"])
def usage_report(
    usage: UsageReader,
    tenant_id: str | None = Query(None, max_length=40),
    month: str | None = Query(None, pattern=MONTH),
) -> dict[str, Any]:
    """Metered consumption and cost of a tenant's projects in a month (default: this month)."""
    return usage.report(tenant_id, month)


@router.post("/v1/usage/meter", tags=["usage"])
def meter_now(usage: Meter) -> dict[str, Any]:
    """Meter now instead of at the next hourly run (the ledger covers the time since the last run)."""
    return usage.meter()
