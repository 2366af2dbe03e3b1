"""The capacity reservations a caller books, reads and cancels (``reservations.py`` places them)."""

from __future__ import annotations

from sqlalchemy import select

from novacron.compute.scope import resolve_project
from novacron.db.listing import ListParams, paginate
from novacron.db.models import CapacityReservation
from novacron.db.resolve import resolve, scoped
from novacron.errors import Forbidden, InvalidInput, on_field
from novacron.quota import reservations
from novacron.quota.reservations import ReservationSpec
from novacron.service import Service


class ReservationService(Service):
    """Book capacity for a window, list and read bookings, cancel them."""

    def list(
        self, params: ListParams, *, project_id: str | None = None, status: str | None = None
    ) -> tuple[list[CapacityReservation], str | None]:
        """One page of the caller's bookings, optionally of one project or status."""
        stmt = scoped(select(CapacityReservation), CapacityReservation, self.principal)
        if project_id is not None:
            stmt = stmt.where(CapacityReservation.project_id == project_id)
        if status is not None:
            stmt = stmt.where(CapacityReservation.status == status)
        return paginate(self.session, stmt, CapacityReservation, params)

    def create(self, spec: ReservationSpec) -> CapacityReservation:
        """Book the window on a host that holds it; refused with each host's reason otherwise."""
        if spec.host is not None and not self.principal.is_global:
            raise on_field(Forbidden, "host", "only platform administrators choose the host")
        for name, value in (("starts_at", spec.starts_at), ("ends_at", spec.ends_at)):
            if value.tzinfo is None:
                raise InvalidInput(name, "give a time zone (e.g. 2026-11-30T09:00:00Z)")
        project = resolve_project(self.session, self.principal, spec.project_id)
        # other tenants' bookings and VMs are behind a refusal's numbers: only administrators see them
        return reservations.book(self.session, project, spec, detailed=self.principal.is_global)

    def get(self, ref: str) -> CapacityReservation:
        """The booking of this id or name, among the caller's."""
        return resolve(self.session, self.principal, CapacityReservation, ref)

    def cancel(self, ref: str) -> CapacityReservation:
        """Cancel a booking: its unused room is free at once; VMs placed through it keep running."""
        res = self.get(ref)
        if res.status in ("pending", "active"):
            reservations.end(self.session, res, "cancelled")
            self.session.flush()
        return res
